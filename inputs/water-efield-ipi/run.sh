#!/usr/bin/env bash
# 64 H2O NVT with i-PI in a static field of 0.05 V/Å along z applied by the client (`lesmd serve --efield`).
# Options: MODEL=path/to/model.pt (default: embedded water model), LESMD="python -m lesmd.cli",
#          EFIELD=Ex,Ey,Ez (V/Å, default 0,0,0.05), PLUGIN=1 (use i-pi-py_driver + drivers/efield.py instead).
set -euo pipefail
cd "$(dirname "$0")"
LESMD=${LESMD:-lesmd}
EFIELD=${EFIELD:-0,0,0.05}
MODEL_ARG=${MODEL:+--model $MODEL}
i-pi input.xml > ipi.log &
IPI=$!
if [ "${PLUGIN:-0}" = 1 ]; then
  sleep 5  # i-pi-py_driver does not wait for the socket
  i-pi-py_driver -m custom -P ../../drivers/efield.py -u -a lesmd-water-efield \
    -o "template=init.xyz,efield=${EFIELD//,/;},extras=dipole${MODEL:+,model=$MODEL}"
else
  # the client waits up to 60 s for i-PI to open the socket, then serves until i-PI sends EXIT
  $LESMD serve $MODEL_ARG --template init.xyz --unix lesmd-water-efield --extras dipole --efield "$EFIELD" \
    --reconnect 60
fi
wait $IPI
python3 - <<'PY'
import numpy as np
from ase.io import read
BOHR = 0.529177210903
v = read("init.xyz").get_volume()
rows = [l.split() for l in open("water-efield.dipole_0") if l.strip() and not l.lstrip().startswith("#")]
mz = np.array([float(r[2]) for r in rows]) * BOHR  # e·Å
print(f"<M_z> (second half) = {mz[len(mz)//2:].mean():.3f} e·Å, <P_z> = {mz[len(mz)//2:].mean()/v:.3e} e/Å²")
PY
