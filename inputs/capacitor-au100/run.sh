#!/usr/bin/env bash
# Au(100) capacitor with i-PI + the lesmd electrode driver (unix socket /tmp/ipi_lesmd-capacitor).
# Options: PYTHON=python (needs lesmd importable), CONFIG=electrode.toml (or electrode_finite_field.toml).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python}
CONFIG=${CONFIG:-electrode.toml}
[ -f init.xyz ] || $PYTHON run_ase.py
rm -f /tmp/ipi_lesmd-capacitor
i-pi input.xml > ipi.log &
IPI=$!
for _ in $(seq 60); do [ -S /tmp/ipi_lesmd-capacitor ] && break; sleep 1; done
i-pi-py_driver -m custom -P ../../drivers/electrode.py -u -a lesmd-capacitor -o template=init.xyz,config=$CONFIG
wait $IPI
echo "electrode charges per step (e): capacitor.qel_0"; tail -n 2 capacitor.qel_0
