#!/usr/bin/env bash
# 64 H2O PIMD, 8 beads, with i-PI and two `lesmd serve` clients on /tmp/ipi_lesmd-water-pimd.
# Each client evaluates whichever bead i-PI hands it; start more clients (here or on other machines with
# mode="inet") to go faster. Options: MODEL=path/to/model.pt, LESMD="python -m lesmd.cli", THREADS=1.
set -euo pipefail
cd "$(dirname "$0")"
LESMD=${LESMD:-lesmd}
MODEL_ARG=${MODEL:+--model $MODEL}
ADDRESS=${ADDRESS:-lesmd-water-pimd}  # must match <address> in input.xml
i-pi input.xml > ipi.log &
IPI=$!
for k in 1 2; do
  $LESMD serve $MODEL_ARG --template init.xyz --unix "$ADDRESS" --extras dipole --reconnect 60 \
    --threads "${THREADS:-1}" > "client$k.log" 2>&1 &
done
wait $IPI
wait
