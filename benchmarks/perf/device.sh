#!/usr/bin/env bash
# Every perf script of benchmarks/perf/ on the accelerator in at most 8 minutes, one table.
#
#   benchmarks/perf/device.sh            # on a GPU/TPU machine: GPU-sized runs, <= 8 min
#   benchmarks/perf/device.sh --tiny     # the CPU path: each script at its smallest (CI test)
#   benchmarks/perf/device.sh --cpu      # no accelerator needed: the CPU-sized defaults
#   BUDGET=300 benchmarks/perf/device.sh # another total budget in seconds
#
# Each script runs under its own timeout (its share of the budget); a script that fails
# or runs out of time is a row marked so, never the end of the table. Without an
# accelerator (and without --tiny/--cpu) it says so and exits 0: the figures of this
# script are accelerator figures. Full outputs go to $OUT (default: a temporary folder).
# GPU targets (issue 20): UCB1 >= 1e9 pulls/s (bandits.py), the slate simulator >= 1e8
# user-steps/s (slate_sim.py). Install the accelerator build with: pip install -e ".[cuda]"
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODE=gpu
case "${1:-}" in
  --tiny) MODE=tiny ;;
  --cpu) MODE=cpu ;;
  "") ;;
  *) echo "usage: $0 [--tiny|--cpu]" >&2; exit 2 ;;
esac
BUDGET="${BUDGET:-480}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
BACKEND="$("$PY" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
if [ "$MODE" = gpu ] && [ "$BACKEND" != gpu ] && [ "$BACKEND" != tpu ]; then
  echo "device.sh: no accelerator here (JAX backend: $BACKEND); nothing to measure."
  echo "device.sh: run it on a GPU machine after pip install -e \".[cuda]\", or use --tiny / --cpu."
  exit 0
fi

# Arguments of each script per mode; a script not listed runs with its defaults (gpu, cpu)
# or is skipped (tiny), so a new perf script is never silently left out of a GPU run.
args() {  # script mode
  case "$1:$2" in
    bandits.py:gpu) echo "--runs 100000 --steps 10000 --algos UCB1,TS --repeats 2 --mabwiser-pulls 0 --numpy-steps 100" ;;
    bandits.py:tiny) echo "--runs 8 --steps 200 --algos UCB1 --repeats 1 --mabwiser-pulls 0 --numpy-steps 50 --cpu-devices 1" ;;
    beta_sampler.py:gpu) echo "--runs 100000 --steps 2000 --repeats 2" ;;
    beta_sampler.py:tiny) echo "--runs 8 --steps 50 --repeats 1" ;;
    gymnasium_adapter.py:gpu) echo "--users 1000 100000 --steps 2000 --vector-steps 100 --repeats 1 --recsim-steps 0" ;;
    gymnasium_adapter.py:tiny) echo "--users 8 --steps 50 --vector-steps 5 --repeats 1 --recsim-steps 0" ;;
    linear.py:gpu) echo "--runs 10000 --steps 10000 --numpy-steps 50 --mabwiser-steps 0" ;;
    linear.py:tiny) echo "--runs 8 --steps 100 --numpy-steps 10 --mabwiser-steps 0 --algorithms LinUCB" ;;
    loop.py:gpu) echo "--seeds 100000 --steps 10000 --numpy-steps 100" ;;
    loop.py:tiny) echo "--seeds 8 --steps 200 --numpy-steps 20" ;;
    meta.py:gpu) echo "--tasks 4096 --repeats 2" ;;
    meta.py:tiny) echo "--tasks 4 --steps 80 --epochs 1 --repeats 1 --hidden 8" ;;
    sasrec_epoch.py:gpu) echo "--device gpu --steps 5" ;;
    sasrec_epoch.py:tiny) echo "--steps 1 --strides 50 --batch 8" ;;
    slate_sim.py:gpu) echo "--users 1000 100000 1000000 --user-steps 100000000 --recsim-steps 0" ;;
    slate_sim.py:tiny) echo "--users 8 --user-steps 2000 --recsim-steps 0" ;;
    scaling.py:gpu) echo "--quick" ;;
    scaling.py:tiny) echo "--quick" ;;
    *:tiny) echo "SKIP" ;;
    *) echo "" ;;
  esac
}

SCRIPTS=()
for f in "$HERE"/*.py; do
  name="$(basename "$f")"
  [ "$name" = timing.py ] && continue
  [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]] && continue
  SCRIPTS+=("$name")
done
START=$(date +%s)
ROWS=()
left=${#SCRIPTS[@]}
for name in "${SCRIPTS[@]}"; do
  a="$(args "$name" "$MODE")"
  if [ "$a" = SKIP ]; then
    ROWS+=("| $name | skipped (no tiny arguments) | 0 | |"); left=$((left - 1)); continue
  fi
  [ "$MODE" = cpu ] && a=""
  spent=$(( $(date +%s) - START ))
  share=$(( (BUDGET - spent) / left ))
  left=$((left - 1))
  if [ "$share" -lt 5 ]; then
    ROWS+=("| $name | not run (budget of ${BUDGET} s spent) | 0 | |"); continue
  fi
  t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout "$share" "$PY" "$HERE/$name" $a > "$OUT/$name.txt" 2>&1
  rc=$?
  dt=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124) status="timed out (${share} s)" ;;
    *) status="failed (exit $rc)" ;;
  esac
  # The script's headline: its last line with a rate (…/s, s/epoch) or a ratio row,
  # else its last table row, else its last line.
  head="$(grep -E '[0-9].*(/s|/epoch|s/epoch|ratio)' "$OUT/$name.txt" | grep -v '^(' | tail -n 1)"
  [ -z "$head" ] && head="$(grep '^|' "$OUT/$name.txt" | grep -v '^|---' | tail -n 1)"
  [ -z "$head" ] && head="$(grep -v '^\s*$' "$OUT/$name.txt" | grep -v '^(' | tail -n 1)"
  head="$(echo "$head" | tr '|' '/' | cut -c1-160)"
  ROWS+=("| $name | $status | $dt | $head |")
done
echo
echo "perf scripts on $BACKEND ($MODE mode, $(( $(date +%s) - START )) s of a ${BUDGET} s budget; full outputs in $OUT)"
echo
echo "| script | status | seconds | last result line |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
