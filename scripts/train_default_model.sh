#!/usr/bin/env bash
# Reproduce the embedded default water model lesmd/pretrained/water_les.pt and its card.
# Data: ../shared/data/water_rpbe_d3_bec_100.xyz (RPBE-D3, 100 frames x 192 atoms), energies and forces only,
# the last 20 frames held out for validation. Takes <= 30 min on 2 idle cores (one training thread; the schedule
# is cosine over 60 epochs, or over --max-minutes wall time if the machine is slower than that).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/water_rpbe_d3_bec_100.xyz}
OUT=${OUT:-lesmd/pretrained/water_les.pt}
PYTHON=${PYTHON:-python}
PYTHONPATH=. "$PYTHON" -m lesmd.cli train "$DATA" -o "$OUT" --valid-last 20 --epochs 60 --batch-size 1 \
    --lr 4e-3 --lr-min 2e-5 --threads 1 --les-accuracy 1e-4 --max-minutes 70 --seed 0
PYTHONPATH=. "$PYTHON" scripts/evaluate_default_model.py --model "$OUT" --data "$DATA"
