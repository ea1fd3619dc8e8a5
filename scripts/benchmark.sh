#!/usr/bin/env bash
# One model's training step in every BN mode and against Tune's peers; figures under logs/benchmark/.
# Settings come from the environment (MODEL BATCH RES DTYPE DEVICE REPS WARMUP); extra arguments go to the
# benchmark, e.g. `DEVICE=cuda bash scripts/benchmark.sh --optimizer-step`. Peers: pip install -r requirements-peers.txt
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
MODEL="${MODEL:-resnet50}"
BATCH="${BATCH:-16}"
RES="${RES:-160}"
DTYPE="${DTYPE:-float32}"
DEVICE="${DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
REPS="${REPS:-30}"
WARMUP="${WARMUP:-3}"
OUT="logs/benchmark/${MODEL//:/-}_b${BATCH}_${RES}px_${DTYPE}_${DEVICE}"
mkdir -p logs/benchmark
python -m benchmarks --model "$MODEL" --batch-size "$BATCH" --resolution "$RES" --dtype "$DTYPE" \
  --device "$DEVICE" --reps "$REPS" --warmup "$WARMUP" --json "$OUT.json" --png "$OUT.png" "$@" | tee "$OUT.txt"
