#!/usr/bin/env bash
# The offline comparison: every method of configs/offline, one fit + one test per seed, then the report.
#   bash scripts/run_offline_comparison.sh            # seeds 0 1 2, all methods, one run at a time
#   JOBS=2 bash scripts/run_offline_comparison.sh     # two runs at once, nproc / 2 threads each
#   SEEDS="0" METHODS="mtl sequential_reptile" bash scripts/run_offline_comparison.sh
#   FIT_ARGS="--trainer configs/offline/_trainer_tradeoff.yaml" ...  # more fit arguments, given after --config
# The methods are the configs of configs/offline (scripts/methods.py), in the report's order.
# Runs land in $ROOT/seed<S>/offline/<method>/version_0; a run whose test finished is skipped, so the script can
# be stopped and started again. Jobs go seed by seed (every method of seed 0 first), so a stopped comparison has
# whole seeds. The test evaluates the best-validation checkpoint (best-*.ckpt) on 500 verses per language; the
# report (scripts/report.py) reads the test scores into $OUT/table.md and draws the figures.
# KEEP_CHECKPOINTS=0 deletes a run's checkpoints (~1.4 GB: last.ckpt and best-*.ckpt) once it is tested.
set -euo pipefail
cd "$(dirname "$0")/.."
export PY=${PYTHON:-.venv/bin/python}
export ROOT=${ROOT:-logs/comparison}
OUT=${OUT:-docs/offline}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-$("$PY" scripts/methods.py offline)}
JOBS=${JOBS:-1}
export FIT_ARGS=${FIT_ARGS:-}
export KEEP_CHECKPOINTS=${KEEP_CHECKPOINTS:-1}

run_one() {  # explicit `|| return`: set -e does not apply inside a function called from `&&` / `||`
  local seed=$1 method=$2
  local run="$ROOT/seed$seed/offline/$method/version_0"
  [[ -f "$run/test.done" ]] && return 0
  rm -rf "$run"
  echo "== $method seed $seed ($(date +%T))"
  # shellcheck disable=SC2086  # FIT_ARGS is a list of arguments
  "$PY" train.py fit --config "configs/offline/$method.yaml" $FIT_ARGS --seed_everything "$seed" \
    --trainer.default_root_dir "$ROOT/seed$seed" --trainer.enable_progress_bar false || return
  local best
  best=$(ls -t "$run"/checkpoints/best-*.ckpt 2>/dev/null | head -n 1)
  [[ -n "$best" ]] || { echo "no best-*.ckpt in $run/checkpoints" >&2; return 1; }
  "$PY" train.py test --config "$run/config.yaml" --ckpt_path "$best" --trainer.enable_progress_bar false || return
  touch "$run/test.done"
  [[ "$KEEP_CHECKPOINTS" == 0 ]] && rm -f "$run"/checkpoints/*.ckpt
  echo "== $method seed $seed done ($(date +%T))"
}
export -f run_one

mkdir -p "$ROOT"
jobs=()
for seed in $SEEDS; do
  for method in $METHODS; do jobs+=("$seed $method"); done
done
if [[ "$JOBS" == 1 ]]; then
  for job in "${jobs[@]}"; do run_one $job; done
else
  # Each run gets nproc / JOBS threads: the single-threaded parts of runs (start-up, evaluation, checkpoints)
  # overlap.
  threads=$(($(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1))
  printf '%s\n' "${jobs[@]}" | OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
    xargs -P "$JOBS" -L 1 bash -c '[[ -f "$ROOT/seed$0/offline/$1/version_0/test.done" ]] && exit 0
      run_one "$0" "$1" > "$ROOT/run-seed$0-$1.log" 2>&1 && echo "== $1 seed $0 ok" || { echo "== $1 seed $0 FAILED (see $ROOT/run-seed$0-$1.log)"; exit 255; }'
fi
"$PY" scripts/report.py "$ROOT" --out "$OUT" --metric accuracy,macro_f1 --versus sequential_reptile
