#!/usr/bin/env bash
# Fine-tuning (the paper's TLlib table): DATASETS (cub200 aircraft cars) x MODES x SEEDS with ResNet-50, batch 48,
# lr 0.01 (backbone 0.1x), wd 5e-4, 20 epochs x 500 iterations, lr x0.1 at epoch 12, RandomResizedCrop (scale 0.2-1)
# of the original image, then the report. Settings: see scripts/lib.sh; each dataset lives in $ROOT/<dataset> (ROOT
# defaults to data).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data}"
LOG="${LOG:-logs/finetune}"
for dataset in ${DATASETS:-cub200 aircraft cars}; do
  for mode in $MODES; do
    for seed in $SEEDS; do
      run_experiment finetune "$LOG/$dataset/finetune/$mode/seed$seed" "$ROOT/$dataset" -d "$dataset" \
        --bn-mode "$mode" --seed "$seed" -a resnet50 -b 48 --lr 0.01 --wd 5e-4 --lr-decay-epochs 12 --lr-gamma 0.1 \
        --epochs "${EPOCHS:-20}" -i "${ITERS:-500}" --scale 0.2 1 --train-resizing inc.crop
    done
  done
done
summarise "$LOG"
