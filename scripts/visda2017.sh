#!/usr/bin/env bash
# VisDA-2017 Synthetic -> Real x METHODS x MODES x SEEDS with TLlib's protocol (ResNet-101, center crop for
# training too, mean per-class accuracy; DANN/CDAN 30 epochs x 1000 iterations, ERM 5 x 500), then the report.
# Settings: see scripts/lib.sh; ROOT defaults to data/visda2017.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/visda2017}"
LOG="${LOG:-logs/visda2017}"
sweep_da visda2017 30 Synthetic:Real -- -a resnet101 --train-resizing cen.crop
summarise "$LOG"
