#!/usr/bin/env bash
# 64 H2O under an AC field with i-PI eda-nvt; the client returns dipoles and BECs (--extras dipole,BEC).
# Options: MODEL=path/to/model.pt, LESMD="python -m lesmd.cli", EPSINF=1.78 (√ε∞ scaling of BECs).
set -euo pipefail
cd "$(dirname "$0")"
LESMD=${LESMD:-lesmd}
MODEL_ARG=${MODEL:+--model $MODEL}
ADDRESS=${ADDRESS:-lesmd-water-driven}  # must match <address> in input.xml
i-pi input.xml > ipi.log &
IPI=$!
$LESMD serve $MODEL_ARG --template init.xyz --unix "$ADDRESS" --extras dipole,BEC \
  --epsilon-inf "${EPSINF:-1.0}" --reconnect 60
wait $IPI
