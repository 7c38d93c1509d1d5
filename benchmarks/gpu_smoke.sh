#!/usr/bin/env bash
# The template on one GPU in about ten minutes, nothing downloaded: step time and peak memory per method and
# precision of an mBERT-base-shaped encoder, the precision cases' checks and an exact-resume check. Exits 1 when a
# check fails. Options go to benchmarks/gpu_smoke.py (--steps, --batch, --seq, --inner-steps, --resume-precision);
# `--device cpu --tiny` checks the script on a machine without a GPU. The report is also written to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_smoke.txt}
"${PYTHON:-python}" benchmarks/gpu_smoke.py "$@" 2>&1 | tee "$OUT"
