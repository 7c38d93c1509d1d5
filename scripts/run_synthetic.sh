#!/usr/bin/env bash
# Runs every method's synthetic config (the configs of configs/synthetic, scripts/methods.py), then draws the
# Fig. 3 layout (docs/fig3.png, docs/fig3.md). METHODS="mtl sequential_reptile" runs only those.
# Extra arguments go to every run, e.g. `bash scripts/run_synthetic.sh --model.model.init_args.init [15,15]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ROOT=${ROOT:-logs}
METHODS=${METHODS:-$("$PY" scripts/methods.py synthetic)}
for method in $METHODS; do
  "$PY" train.py fit --config "configs/synthetic/$method.yaml" --trainer.default_root_dir "$ROOT" \
    --trainer.enable_progress_bar false "$@"
done
"$PY" scripts/fig3.py --runs "$ROOT/synthetic" --out "${OUT:-docs/fig3.png}" --table "${TABLE:-docs/fig3.md}"
