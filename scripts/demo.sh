#!/usr/bin/env bash
# The README's main job: the digits sweep of scripts/digits.sh (MNIST <-> UCI digits, finetune/dann/cdan x train/
# eval/tune, a DTN pretrained on each source domain, the interleaved benchmark, the report) at demo length, a few
# minutes on 2 CPU cores: two runs at a time, each on one core with one thread and no data-loading workers; the
# benchmark then runs alone. TensorBoard logs go to $LOG (tensorboard --logdir logs/demo); the report is written to
# $LOG/runs/report.md with its figures. Any setting of scripts/digits.sh can be overridden from the environment.
# One thread per process: on 2 shared cores, OpenMP threads spin-waiting on each other cost far more than they gain.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export LOG="${LOG:-logs/demo}" JOBS="${JOBS:-2}" WORKERS="${WORKERS:-0}"
export PRETRAIN_ITERS="${PRETRAIN_ITERS:-300}" EPOCHS="${EPOCHS:-8}" ITERS="${ITERS:-20}"
export PRINT_FREQ="${PRINT_FREQ:-$ITERS}"  # one logging window per epoch
export BATCH="${BATCH:-16}" BENCH_REPS="${BENCH_REPS:-30}"
exec bash "$(dirname "${BASH_SOURCE[0]}")/digits.sh"
