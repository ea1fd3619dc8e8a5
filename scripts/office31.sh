#!/usr/bin/env bash
# Office-31: the 6 tasks x METHODS (finetune = ERM, dann, cdan) x MODES x SEEDS with TLlib's protocol (ResNet-50,
# batch 32+32; DANN/CDAN 20 epochs x 1000 iterations, ERM 5 x 500), then the report. Settings: see scripts/lib.sh;
# ROOT defaults to data/office31, LOG to logs/office31.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/office31}"
LOG="${LOG:-logs/office31}"
sweep_da office31 20 A:W D:W W:D A:D D:A W:A -- -a resnet50
summarise "$LOG"
