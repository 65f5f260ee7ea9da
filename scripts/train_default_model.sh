#!/usr/bin/env bash
# Reproduce the embedded default water model lesmd/pretrained/water_les.pt and its card.
# Data: ../shared/data/water_rpbe_d3_bec_100.xyz (RPBE-D3, 100 frames x 192 atoms), energies and forces only,
# the last 20 frames held out for validation. One training thread; the cosine learning-rate schedule runs over
# 150 epochs or over --max-minutes of wall time, whichever comes first (the embedded model: 46 min wall on the
# shared, heavily loaded 2-core machine, about 125 epochs).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/water_rpbe_d3_bec_100.xyz}
OUT=${OUT:-lesmd/pretrained/water_les.pt}
PYTHON=${PYTHON:-python}
PYTHONPATH=. "$PYTHON" -m lesmd.cli train "$DATA" -o "$OUT" --valid-last 20 --epochs 150 --batch-size 1 \
    --lr 4e-3 --lr-min 2e-5 --threads 1 --les-accuracy 1e-4 --max-minutes 46 --hidden 128,128 --energy-weight 300 \
    --seed 0 --overwrite
# extrapolation guards outside the data (core repulsion, data walls, latent-charge bound); unchanged on the data
PYTHONPATH=. "$PYTHON" scripts/add_model_guards.py --model "$OUT" --data "$DATA"
PYTHONPATH=. "$PYTHON" scripts/evaluate_default_model.py --model "$OUT" --data "$DATA"
