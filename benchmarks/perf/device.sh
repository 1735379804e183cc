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
# user-steps/s (slate_sim.py), the Chapelle & Li rows at T = 10^7 in minutes (last rows). Install the accelerator build with: pip install -e ".[cuda]"
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
# The two Chapelle & Li rows at the end get their shares too.
if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",chapelle_li,"* ]]; then left=$((left + 2)); fi
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
# The Chapelle & Li target (T = 10^7 in minutes): the UCB1 and Thompson-sampling rows
# of the table, 100 runs each, as `mtrlrec run` runs them (one compiled call per row).
if [ -z "${ONLY:-}" ] || [[ ",$ONLY," == *",chapelle_li,"* ]]; then
  if [ "$MODE" = tiny ]; then T=1_000; LOG=100; SEEDS=2; else T=10_000_000; LOG=100_000; SEEDS=100; fi
  for row in ucb1 ts; do
    spent=$(( $(date +%s) - START ))
    share=$(( (BUDGET - spent) / (left > 0 ? left : 1) ))
    left=$((left - 1))
    if [ "$share" -lt 5 ]; then
      ROWS+=("| chapelle_li $row, T = $T | not run (budget of ${BUDGET} s spent) | 0 | |"); continue
    fi
    t0=$(date +%s)
    timeout "$share" "$PY" -m mtrlrec run "$HERE/../../experiments/bandits/chapelle_li_$row.gin" \
      --gin_param "OnlineRunner.num_steps = $T" --gin_param "OnlineRunner.log_every = $LOG" \
      --seeds "$SEEDS" --no-progress --out "$OUT/chapelle_li_$row" > "$OUT/chapelle_li_$row.txt" 2>&1
    rc=$?
    dt=$(( $(date +%s) - t0 ))
    case $rc in 0) status=ok ;; 124) status="timed out (${share} s)" ;; *) status="failed (exit $rc)" ;; esac
    head="$(grep -E '^\| cumulative_regret' "$OUT/chapelle_li_$row.txt" | head -n 1 | tr '|' '/')"
    ROWS+=("| chapelle_li $row, T = $T, $SEEDS runs | $status | $dt | $head |")
  done
fi
echo
echo "perf scripts on $BACKEND ($MODE mode, $(( $(date +%s) - START )) s of a ${BUDGET} s budget; full outputs in $OUT)"
echo
echo "| script | status | seconds | last result line |"
echo "|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done
