"""64 H2O at 300 K with ASE Langevin dynamics and the embedded LES water model (0.5 fs, 1 ps).

    python nvt.py [model.pt]

Writes nvt.traj (positions, velocities, energy, forces, charges, dipole) and prints a per-step log.
The same as `lesmd md --steps 2000 --out nvt.traj`, spelled out in Python.
"""

import sys

from lesmd.calculator import LESCalculator
from lesmd.md import run_md
from lesmd.structures import water_box

model = sys.argv[1] if len(sys.argv) > 1 else None  # None: the embedded default water model
atoms = water_box(64, seed=0)
calc = LESCalculator(model)
run_md(atoms, calc, ensemble="nvt", steps=2000, timestep=0.5, temperature=300.0, friction=0.01,
       log_interval=10, out="nvt.traj")
