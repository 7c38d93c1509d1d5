#!/usr/bin/env bash
# The offline comparison (issue 3): every method of configs/offline, one fit + one test per seed, then the report.
#   bash scripts/run_offline_comparison.sh            # seeds 0 1 2, all methods (~11 min per run on 2 CPU cores)
#   SEEDS="0" METHODS="mtl sequential_reptile" bash scripts/run_offline_comparison.sh
# Runs land in $ROOT/seed<S>/offline/<method>/version_0; a run whose test finished is skipped, so the script can
# be stopped and started again. The test evaluates the best-validation checkpoint (best-*.ckpt) on 500 verses per
# language; the report (scripts/report.py) reads the test scores into $OUT/table.md and draws the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${ROOT:-logs/comparison}
OUT=${OUT:-docs/offline}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-mtl recadam gradnorm pcgrad gradvac reptile sequential_reptile}
for seed in $SEEDS; do
  for method in $METHODS; do
    run="$ROOT/seed$seed/offline/$method/version_0"
    [[ -f "$run/test.done" ]] && continue
    rm -rf "$run"
    echo "== $method seed $seed ($(date +%T))"
    "$PY" train.py fit --config "configs/offline/$method.yaml" --seed_everything "$seed" \
      --trainer.default_root_dir "$ROOT/seed$seed" --trainer.enable_progress_bar false
    best=$(ls -t "$run"/checkpoints/best-*.ckpt | head -n 1)
    "$PY" train.py test --config "$run/config.yaml" --ckpt_path "$best" --trainer.enable_progress_bar false
    touch "$run/test.done"
  done
done
"$PY" scripts/report.py "$ROOT" --out "$OUT"
