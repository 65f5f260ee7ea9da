#!/usr/bin/env bash
# Water between Au(100) electrodes at ΔV = 1 V with i-PI + drivers/electrode.py (unix socket /tmp/ipi_lesmd-electrodes).
# Options: MODEL=path/to/model.pt (default: the embedded water model), PYTHON=python (needs lesmd importable).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
[ -f init.xyz ] || $PYTHON make_init.py
MODEL_OPT=${MODEL:+,model=$MODEL}
rm -f /tmp/ipi_lesmd-electrodes
i-pi input.xml > ipi.log &
IPI=$!
for _ in $(seq 60); do [ -S /tmp/ipi_lesmd-electrodes ] && break; sleep 1; done
i-pi-py_driver -m custom -P ../../drivers/electrode.py -u -a lesmd-electrodes \
    -o template=init.xyz,config=electrode.toml$MODEL_OPT
wait $IPI
echo "conserved energy, T: electrodes.out; electrode charges per step (e): electrodes.qel_0"
tail -n 2 electrodes.qel_0
