# Sourced by the sweep scripts: the environment (env.sh), the settings every sweep shares, one run (skipped when
# finished, resumed when interrupted, stopped with the script, only printed under DRY_RUN=1) and the closing report.
#
# Environment: ROOT (data folder), LOG (log folder), GPU (sets CUDA_VISIBLE_DEVICES), DEVICE (cuda, cpu, ...),
# EPOCHS and ITERS (override the protocol's schedule), METHODS, MODES, SEEDS (space-separated lists), ARGS (extra
# options for every run, e.g. "--resize-size 64 -j 0"), DRY_RUN=1 (print the commands, run nothing).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ -n "${GPU:-}" ]; then export CUDA_VISIBLE_DEVICES="$GPU"; fi
MODES="${MODES:-train eval tune}"
SEEDS="${SEEDS:-0}"
# shellcheck disable=SC2206  # word splitting wanted: ARGS is a list of options
COMMON=(${DEVICE:+--device "$DEVICE"} ${ARGS:-})

# run_experiment METHOD RUN_DIR OPTION...: python -m experiments.METHOD OPTION... --log RUN_DIR
run_experiment() {
  local method="$1" dir="$2"
  shift 2
  if [ -f "$dir/results.json" ]; then
    echo "finished already, skipped: $dir"
    return
  fi
  local cmd=(python -m "experiments.$method" "$@" "${COMMON[@]}" --log "$dir")
  [ -f "$dir/checkpoint.pt" ] && cmd+=(--resume "$dir")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "${cmd[*]}"
  else
    run_forwarding_signals "${cmd[@]}"
  fi
}

# run_forwarding_signals COMMAND...: run COMMAND and pass INT, TERM and HUP sent to this script on to it, then wait
# for it: a killed sweep takes its training run with it (which saves a checkpoint) instead of orphaning it, and
# stops with the run's status. The run gets a process group of its own (job control), so a terminal's Ctrl-C, which
# signals the script's group, reaches it once, through the script.
run_forwarding_signals() {
  local child status=0
  set -m
  "$@" &
  child=$!
  set +m
  trap 'kill -INT "$child" 2>/dev/null || true' INT
  trap 'kill -TERM "$child" 2>/dev/null || true' TERM HUP
  while true; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || break  # wait was cut short by a forwarded signal: the run is still saving
  done
  trap - INT TERM HUP
  return "$status"
}

# schedule METHOD DA_EPOCHS: --epochs/-i of the protocol (ERM: 5 x 500; DANN, CDAN: DA_EPOCHS x 1000)
schedule() {
  if [ "$1" = finetune ]; then
    echo "--epochs ${EPOCHS:-5} -i ${ITERS:-500}"
  else
    echo "--epochs ${EPOCHS:-$2} -i ${ITERS:-1000}"
  fi
}

# sweep_da DATASET DA_EPOCHS TASK... [-- OPTION...]: every TASK (SOURCE:TARGET) x METHODS x MODES x SEEDS
sweep_da() {
  local dataset="$1" epochs="$2" tasks=()
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do tasks+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local task method mode seed src tgt
  for task in "${tasks[@]}"; do
    src="${task%%:*}" tgt="${task#*:}"
    for method in ${METHODS:-finetune dann cdan}; do
      for mode in $MODES; do
        for seed in $SEEDS; do
          # shellcheck disable=SC2046  # schedule prints options to split
          run_experiment "$method" "$LOG/${src}2${tgt}/$method/$mode/seed$seed" "$ROOT" -d "$dataset" \
            -s "$src" -t "$tgt" --bn-mode "$mode" --seed "$seed" $(schedule "$method" "$epochs") "$@"
        done
      done
    done
  done
}

# Runs at a time for launch: JOBS (default 1; more only where cores are idle).
JOBS="${JOBS:-1}"
# launch NAME COMMAND...: run it; with JOBS > 1 in the background (at most JOBS at once), its lines prefixed by NAME.
# A failed run stops the sweep; on any exit, runs still going get SIGTERM, which makes them save a checkpoint.
launched=()
launch() {
  local name="$1"
  shift
  if [ "$JOBS" -le 1 ] || [ "${DRY_RUN:-0}" = 1 ]; then
    "$@"
    return
  fi
  set -m  # each background run in its own process group, so that SIGTERM reaches python through the pipe
  trap stop_runs EXIT
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  { "$@" 2>&1 | sed -u "s|^|[$name] |"; } &
  launched+=("$!")
}
# settle: wait for every launched run; the first failure stops the sweep.
settle() {
  local pid
  for pid in "${launched[@]}"; do wait "$pid"; done
  launched=()
}
stop_runs() {
  local pid
  for pid in $(jobs -rp); do kill -TERM -- "-$pid" 2>/dev/null || true; done
}

# summarise LOG: experiments.report's tables and plots
summarise() {
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "python -m experiments.report $1"
  else
    python -m experiments.report "$1"
  fi
}
