#!/usr/bin/env bash
# The GPU check, in one run of at most 8 minutes on an H200: the CUDA tests, then the benchmark of ResNet-50 at
# b64/224 (float32 and fp16 autocast) and b16/160 (float32) in every mode, the host-bound preset and a detector,
# each written to results/gpu_*.json, and one table of them all. It runs on the device machine's own python3
# (PyTorch preinstalled; nothing is installed), or $PYTHON. MMEngine is measured where it is importable.
#
#   bash scripts/gpu_check.sh                  # on a GPU machine
#   bash scripts/gpu_check.sh --device cpu     # the same steps at toy sizes on the CPU: checks the script itself
#   ONLY="host_bound detector" bash scripts/gpu_check.sh   # only the named benchmark runs
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
DEVICE=cuda
if [ "${1:-}" = --device ]; then DEVICE="$2"; fi
OUT="${OUT_DIR:-results}"
mkdir -p "$OUT"
if [ "$DEVICE" = cpu ]; then
  PREFIX=cpu_check  # toy sizes: every step of the script, in seconds
  BIG=(resnet18 2 32) SMALL=(resnet18 2 32) DETECTOR=(fasterrcnn_resnet50_fpn 1 64) REPS=(--reps 1 --warmup 0)
  COMPILED=(eval tune)  # compiling takes minutes on a CPU: tests/tune covers tune+compile there
  SLACK=20  # a shared CPU: the time limits stop hangs, not slow steps
else
  PREFIX=gpu
  BIG=(resnet50 64 224) SMALL=(resnet50 16 160) DETECTOR=(fasterrcnn_resnet50_fpn 2 512) REPS=(--reps 20 --warmup 3)
  COMPILED=(eval tune deploy compile tune+compile compile+inductor-convbn)
  SLACK=1
fi
EAGER=(train eval tune deploy mmengine)
failed=0

bench() {  # bench NAME SECONDS MODEL BATCH RES OPTION...: one benchmark run, stopped after SECONDS
  local name="$1" limit="$2" model="$3" batch="$4" res="$5"
  shift 5
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  echo "== $name: $model b$batch/${res}px $*"
  timeout "$((limit * SLACK))" "$PYTHON" -m benchmarks --device "$DEVICE" --model "$model" --batch-size "$batch" \
    --resolution "$res" "${REPS[@]}" --json "$OUT/${PREFIX}_$name.json" "$@" || { echo "== $name failed"; failed=1; }
}

echo "== CUDA tests"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/tune/test_cuda.py || failed=1
bench resnet50_b64_224_fp32 75 "${BIG[@]}" --dtype float32 --modes "${EAGER[@]}"
bench resnet50_b64_224_fp16 60 "${BIG[@]}" --dtype fp16 --modes "${EAGER[@]}"
bench resnet50_b16_160_fp32 60 "${SMALL[@]}" --dtype float32 --modes "${EAGER[@]}"
bench host_bound 45 resnet50_narrow 1 32 --modes eval tune deploy mmengine
bench detector 60 "${DETECTOR[@]}" --modes train eval tune deploy
bench compiled_b64_224_fp32 150 "${BIG[@]}" --dtype float32 --no-grad-check --modes "${COMPILED[@]}"
echo "== summary"
"$PYTHON" -m benchmarks.summary "$OUT/${PREFIX}"_*.json | tee "$OUT/${PREFIX}_summary.md"
exit "$failed"
