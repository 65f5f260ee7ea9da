"""64 H2O at 300 K with ASE Langevin dynamics and the embedded LES water model (0.5 fs, 1 ps).

    python nvt.py [model.pt] [--steps 2000]

Writes nvt.traj (positions, velocities, energy, forces, charges, dipole) and prints a per-step log.
The same as `lesmd md --steps 2000 --out nvt.traj`, spelled out in Python.
"""

import argparse

from lesmd.calculator import LESCalculator
from lesmd.md import run_md
from lesmd.structures import equilibrated_water64

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", default=None, help="model file or name (default: the water model)")
parser.add_argument("--steps", type=int, default=2000)
args = parser.parse_args()
atoms = equilibrated_water64()  # 64 H2O equilibrated at 300 K with the shipped model (velocities included)
calc = LESCalculator(args.model)
run_md(atoms, calc, ensemble="nvt", steps=args.steps, timestep=0.5, temperature=300.0, friction=0.01,
       log_interval=10, out="nvt.traj")
