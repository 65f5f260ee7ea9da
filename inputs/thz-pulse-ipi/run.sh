#!/usr/bin/env bash
# 64 H2O hit by a THz pulse: i-PI driven_dynamics (eda-nve), BECs from `lesmd serve --extras dipole,BEC`.
# Options: MODEL=path/to/model.pt (default: embedded water model), LESMD="python -m lesmd.cli",
#          EPSINF=1.78 (√ε∞ scaling of charges/dipoles/BECs). Change the pulse with make_input.py.
set -euo pipefail
cd "$(dirname "$0")"
LESMD=${LESMD:-lesmd}
MODEL_ARG=${MODEL:+--model $MODEL}
i-pi input.xml > ipi.log &
IPI=$!
$LESMD serve $MODEL_ARG --template init.xyz --unix lesmd-thz --extras dipole,BEC \
  --epsilon-inf "${EPSINF:-1.0}" --reconnect 60
wait $IPI
python3 - <<'PY'
import numpy as np
BOHR = 0.529177210903
rows = [l.split() for l in open("thz.dipole_0") if l.strip() and not l.lstrip().startswith("#")]
mz = np.array([float(r[2]) for r in rows]) * BOHR
out = np.loadtxt("thz.out", ndmin=2)
print(f"M_z: start {mz[0]:.3f}, min {mz.min():.3f}, max {mz.max():.3f}, end {mz[-1]:.3f} e·Å")
print(f"kinetic energy (eV): first 100 fs {out[:50, 5].mean():.4f}, last 100 fs {out[-50:, 5].mean():.4f}")
PY
