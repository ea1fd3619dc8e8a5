#!/usr/bin/env bash
# The GPU check: the benchmarks that matter most first, each under its own time limit, then the CUDA tests and the
# compiled modes, about 8 minutes in all. Every step writes into OUT_DIR/gpu_check/ as it goes (a benchmark rewrites
# its JSON after every stage), and on exit, also when stopped by a signal or a time limit, that folder is packed
# into the one file OUT_DIR/gpu_check.tar.gz, so a remote run that returns only a few files loses nothing.
# It runs on the machine's own python3 (PyTorch preinstalled; nothing is installed), or $PYTHON.
#
#   OUT_DIR=/some/dir bash scripts/gpu_check.sh        # on a GPU machine
#   bash scripts/gpu_check.sh --device cpu             # the same steps at toy sizes on the CPU: checks the script
#   ONLY="host_bound detector" bash scripts/gpu_check.sh   # only the named steps
#   DONE=results/gpu_2026-12-05 bash scripts/gpu_check.sh  # a rerun: steps with a complete JSON there are copied
#
# Steps, in this order: resnet50_b64_224_{fp32,bf16,fp16}, detector, host_bound, attack_{fp32,bf16}, cuda_tests,
# compiled_b64_224_fp32. Results: <step>.json (python -m benchmarks), cuda_tests.log, summary.md, environment.txt.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
DEVICE=cuda
if [ "${1:-}" = --device ]; then DEVICE="$2"; fi
OUT="${OUT_DIR:-results}"
WORK="$OUT/gpu_check"
mkdir -p "$WORK"

pack() {  # one archive of everything measured so far; the folder goes once the archive is complete
  trap - EXIT INT TERM HUP
  if tar -czf "$OUT/.gpu_check.tar.gz.partial" -C "$OUT" gpu_check; then
    mv "$OUT/.gpu_check.tar.gz.partial" "$OUT/gpu_check.tar.gz" && rm -rf "$WORK"
    echo "== packed $OUT/gpu_check.tar.gz"
  fi
}
trap pack EXIT
trap 'echo "== stopped by a signal"; exit 130' INT TERM HUP

if [ "$DEVICE" = cpu ]; then
  BIG=(resnet18 2 32) DETECTOR=(fasterrcnn_resnet50_fpn 1 64) ATTACK=(resnet18 2 32) REPS=(--reps 1 --warmup 0)
  COMPILED=(eval tune)  # compiling takes minutes on a CPU: tests/tune covers tune+compile there
  SLACK=20  # a shared CPU: the time limits stop hangs, not slow steps
else
  BIG=(resnet50 64 224) DETECTOR=(fasterrcnn_resnet50_fpn 2 512) ATTACK=(resnet50 32 224) REPS=(--reps 20 --warmup 3)
  COMPILED=(eval tune deploy compile tune+compile compile+inductor-convbn)
  SLACK=1
fi
EAGER=(train eval tune deploy mmengine)
failed=0

wanted() {  # wanted NAME: whether ONLY (if set) names this step
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]
}

done_before() {  # done_before NAME: a complete result of an earlier run (DONE) is copied instead of measured again
  local previous="${DONE:-}/$1.json"
  [ -n "${DONE:-}" ] && [ -f "$previous" ] && grep -q '"complete": true' "$previous" && cp "$previous" "$WORK/" \
    && echo "== $1: complete in $DONE, copied"
}

bench() {  # bench NAME SECONDS MODEL BATCH RES OPTION...: one benchmark run, stopped after SECONDS
  local name="$1" limit="$2" model="$3" batch="$4" res="$5"
  shift 5
  wanted "$name" || return 0
  done_before "$name" && return 0
  echo "== $name: $model b$batch/${res}px $*"
  timeout "$((limit * SLACK))" "$PYTHON" -m benchmarks --device "$DEVICE" --model "$model" --batch-size "$batch" \
    --resolution "$res" "${REPS[@]}" --json "$WORK/$name.json" "$@" || { echo "== $name failed"; failed=1; }
}

{
  date -u
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)"
  command -v nvidia-smi >/dev/null && nvidia-smi
} > "$WORK/environment.txt" 2>&1

bench resnet50_b64_224_fp32 75 "${BIG[@]}" --dtype float32 --modes "${EAGER[@]}"
bench resnet50_b64_224_bf16 55 "${BIG[@]}" --dtype bf16 --modes "${EAGER[@]}"
bench resnet50_b64_224_fp16 55 "${BIG[@]}" --dtype fp16 --modes "${EAGER[@]}"
bench detector 60 "${DETECTOR[@]}" --modes train eval tune deploy
bench host_bound 40 resnet50_narrow 1 32 --modes eval tune deploy mmengine --threads 1
bench attack_fp32 35 "${ATTACK[@]}" --task attack --dtype float32 --modes eval tune deploy mmengine
bench attack_bf16 35 "${ATTACK[@]}" --task attack --dtype bf16 --modes eval tune deploy mmengine
if wanted cuda_tests; then
  echo "== cuda_tests"
  # SIGINT at the limit: pytest then still reports what failed and why (a KILL would lose its buffered output)
  timeout -s INT -k 15 "$((150 * SLACK))" "$PYTHON" -m pytest -q -rfE --tb=short -p no:cacheprovider \
    tests/tune/test_cuda.py \
    > "$WORK/cuda_tests.log" 2>&1 || { echo "== cuda_tests failed"; failed=1; }
  tail -n 5 "$WORK/cuda_tests.log"
fi
bench compiled_b64_224_fp32 90 "${BIG[@]}" --dtype float32 --no-grad-check --modes "${COMPILED[@]}"
echo "== summary"
shopt -s nullglob
results=("$WORK"/*.json)
if [ "${#results[@]}" -gt 0 ]; then
  "$PYTHON" -m benchmarks.summary "${results[@]}" | tee "$WORK/summary.md"
fi
exit "$failed"
