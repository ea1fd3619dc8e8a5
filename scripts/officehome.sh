#!/usr/bin/env bash
# Office-Home: the 12 tasks x METHODS x MODES x SEEDS with TLlib's protocol (ResNet-50; DANN/CDAN 30 epochs x 1000
# iterations, ERM 5 x 500), then the report. Settings: see scripts/lib.sh; ROOT defaults to data/officehome.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/officehome}"
LOG="${LOG:-logs/officehome}"
sweep_da officehome 30 Ar:Cl Ar:Pr Ar:Rw Cl:Ar Cl:Pr Cl:Rw Pr:Ar Pr:Cl Pr:Rw Rw:Ar Rw:Cl Rw:Pr -- -a resnet50
summarise "$LOG"
