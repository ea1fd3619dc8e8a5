#!/usr/bin/env bash
# Detection transfer on digit scenes (datasets/scenes.py: MNIST digits for M, UCI digits for U, composed onto 80-px
# canvases; nothing to download). Each detector of DETECTORS is first trained from scratch on M scenes with its
# backbone's BN in train mode, so the BN statistics are learned there ($LOG/pretrain/<detector>_<backbone>), then
# fine-tuned from those weights on U scenes with the backbone's BN in each of MODES
# ($LOG/runs/<detector>_<backbone>/<mode>/seed<seed>), mAP on U's test scenes after every epoch; the report
# ($LOG/runs/report.md) sets Eval against Tune (and Train, Frozen, Deploy where run) per detector and backbone.
#
# The defaults are the demo length (two runs at a time, one thread each; 621 s on 2 CPU cores shared with other jobs):
# DETECTORS="fasterrcnn:resnet18 fasterrcnn:resnet34", MODES="eval tune", pretraining PRETRAIN_ITERS=300 iterations
# at lr 0.02, fine-tuning EPOCHS=2 x ITERS=40 iterations at lr 0.01, batch BATCH=4, FPN of FPN_CHANNELS=64.
# Settings: see scripts/lib.sh (LOG, DEVICE, EPOCHS, ITERS, MODES, SEEDS, ARGS, DRY_RUN, JOBS), plus DETECTORS
# (detector:backbone pairs; detectors fasterrcnn, retinanet, fcos; backbones resnet18/34/50, mobilenet_v3_large),
# PRETRAIN_ITERS, BATCH, FPN_CHANNELS, WORKERS, PRINT_FREQ. MODES may name train, eval, tune, deploy and frozen.
# LOG defaults to logs/detection; ROOT is unused (the scenes come from the packages).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # on 2 shared cores, spin-waiting OpenMP threads cost more than they gain
export JOBS="${JOBS:-2}"
MODES="${MODES:-eval tune}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/scenes}"
LOG="${LOG:-logs/detection}"
DETECTORS="${DETECTORS:-fasterrcnn:resnet18 fasterrcnn:resnet34}"
SCENES=(-d scenes -b "${BATCH:-4}" --fpn-channels "${FPN_CHANNELS:-64}" -j "${WORKERS:-0}" -p "${PRINT_FREQ:-20}")

for pair in $DETECTORS; do
  detector="${pair%%:*}" backbone="${pair#*:}"
  launch "pretrain $detector $backbone" run_experiment detection "$LOG/pretrain/${detector}_$backbone" "$ROOT" \
    "${SCENES[@]}" -s M --detector "$detector" -a "$backbone" --scratch --bn-mode train --lr 0.02 --epochs 1 \
    -i "${PRETRAIN_ITERS:-300}"
done
settle
for pair in $DETECTORS; do
  detector="${pair%%:*}" backbone="${pair#*:}"
  for mode in $MODES; do
    for seed in $SEEDS; do
      launch "$detector $backbone $mode seed $seed" run_experiment detection \
        "$LOG/runs/${detector}_$backbone/$mode/seed$seed" "$ROOT" "${SCENES[@]}" -s U --detector "$detector" \
        -a "$backbone" --pretrained "$LOG/pretrain/${detector}_$backbone/checkpoint.pt" --bn-mode "$mode" \
        --seed "$seed" --lr 0.01 --epochs "${EPOCHS:-2}" -i "${ITERS:-40}"
    done
  done
done
settle
summarise "$LOG/runs"
