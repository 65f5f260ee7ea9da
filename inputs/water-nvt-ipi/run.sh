#!/usr/bin/env bash
# 64 H2O NVT with i-PI + one `lesmd serve` client (unix socket /tmp/ipi_lesmd-water-nvt).
# Options: MODEL=path/to/model.pt (default: the embedded water model), LESMD="python -m lesmd.cli".
set -euo pipefail
cd "$(dirname "$0")"
LESMD=${LESMD:-lesmd}
MODEL_ARG=${MODEL:+--model $MODEL}
ADDRESS=${ADDRESS:-lesmd-water-nvt}  # must match <address> in input.xml
i-pi input.xml > ipi.log &
IPI=$!
# the client waits up to 60 s for i-PI to open the socket, then serves until i-PI sends EXIT
$LESMD serve $MODEL_ARG --template init.xyz --unix "$ADDRESS" --extras dipole,charges --reconnect 60
wait $IPI
