#!/usr/bin/env bash
# Water IR spectrum and dielectric constant with the default lesmd water model:
# NVT equilibration (Langevin) -> NVE production -> `lesmd spectrum` -> summary next to experiment.
# Lengths (ps) and ε∞ can be changed through the environment, e.g.  EQUIL_PS=5 NVE_PS=20 ./run.sh
# Smoke test of the pipeline (minutes, meaningless numbers):  EQUIL_PS=0.1 NVE_PS=0.5 ./run.sh
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
REPO=$(cd ../.. && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

EQUIL_PS=${EQUIL_PS:-20}          # NVT equilibration length, ps
NVE_PS=${NVE_PS:-100}             # NVE production length, ps (IR: ≥ 50 ps; ε: ≥ 1 ns for ±10 %)
DT_FS=${DT_FS:-0.5}               # MD time step, fs
STRIDE=${STRIDE:-4}               # write every STRIDE steps -> frames DT_FS*STRIDE = 2 fs apart
EPS_INF=${EPS_INF:-1.78}          # ε∞ of water (scales latent charges/dipoles by √ε∞)
MODEL=${MODEL:-}                  # model file; empty = the embedded default water model
THREADS=${THREADS:-2}             # torch CPU threads
MAX_LAG_FS=${MAX_LAG_FS:-600}    # IR correlation length, fs (≈ 55 cm⁻¹ resolution; liquid bands are broader)
DIPOLE_SOURCE=${DIPOLE_SOURCE:-bec}  # M(t) from ∫ Σ Z*·v dt (stored BECs); "stored" = the model's Σ q r
MODEL_ARG=()
[ -n "$MODEL" ] && MODEL_ARG=(--model "$MODEL")
steps() { "$PY" -c "print(max(1, round($1 * 1000 / $DT_FS)))"; }

"$PY" -m lesmd.cli md "${MODEL_ARG[@]}" --ensemble nvt --temperature 300 --timestep "$DT_FS" \
    --steps "$(steps "$EQUIL_PS")" --epsilon-inf "$EPS_INF" --log-interval 200 --threads "$THREADS" \
    --out equil.traj | tail -n 3
"$PY" -m lesmd.cli md "${MODEL_ARG[@]}" --structure equil.traj --ensemble nve --timestep "$DT_FS" \
    --steps "$(steps "$NVE_PS")" --epsilon-inf "$EPS_INF" --log-interval "$STRIDE" --threads "$THREADS" --bec \
    --out nve.traj | tail -n 3
# no --temperature: the NVE kinetic temperature from the stored velocities is used (reported in dielectric.json)
"$PY" -m lesmd.cli spectrum nve.traj --timestep "$("$PY" -c "print($DT_FS * $STRIDE)")" \
    --epsilon-inf "$EPS_INF" --dipole-source "$DIPOLE_SOURCE" --quantum-correction harmonic --max-lag "$MAX_LAG_FS" \
    --out results
"$PY" summarize.py results
