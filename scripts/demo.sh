#!/usr/bin/env bash
# The README's main job: a small but complete sweep on the synthetic Office-31 stand-in, a few minutes on 2 CPU
# cores. A ResNet-18 is first trained from scratch on source domain A (standing in for ImageNet weights, which need
# a network); from it, finetune (ERM), dann and cdan transfer A -> W with the backbone's BN in each of MODES (train,
# eval, tune). TensorBoard logs go to $LOG (tensorboard --logdir logs/demo); the closing report compares accuracy,
# memory kept for backward, peak memory and time per iteration. Settings: see scripts/lib.sh (ITERS, EPOCHS,
# PRETRAIN_ITERS set the length; ROOT defaults to data/synthetic, LOG to logs/demo).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# One thread per process: on 2 shared cores, OpenMP threads spin-waiting on each other cost far more than they gain.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ROOT="${ROOT:-data/synthetic}"
LOG="${LOG:-logs/demo}"
TINY=(-d synthetic -s A -t W -a resnet18 --resize-size 64 -j 0 --print-freq 5)
run_experiment finetune "$LOG/pretrain" "$ROOT" "${TINY[@]}" --scratch --bn-mode train -b 32 --lr 0.05 \
  --scale 0.5 1 --epochs 1 -i "${PRETRAIN_ITERS:-100}"
for method in ${METHODS:-finetune dann cdan}; do
  for mode in $MODES; do
    for seed in $SEEDS; do
      run_experiment "$method" "$LOG/runs/A2W/$method/$mode/seed$seed" "$ROOT" "${TINY[@]}" -b 16 \
        --pretrained "$LOG/pretrain/checkpoint.pt" --bn-mode "$mode" --seed "$seed" --epochs "${EPOCHS:-2}" \
        -i "${ITERS:-10}"
    done
  done
done
summarise "$LOG/runs"
