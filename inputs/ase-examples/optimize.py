"""Geometry optimisation: relax positions (BFGS), then positions and cell (FrechetCellFilter) of 32 H2O.

    python optimize.py [model.pt]

Writes relaxed.extxyz with the final energy, forces, stress, charges and dipole.
"""

import sys

from ase.filters import FrechetCellFilter
from ase.io import write
from ase.optimize import BFGS

from lesmd.calculator import LESCalculator
from lesmd.structures import water_box

model = sys.argv[1] if len(sys.argv) > 1 else None
atoms = water_box(32, seed=1)
atoms.calc = LESCalculator(model)
print(f"start: E = {atoms.get_potential_energy():.4f} eV")
BFGS(atoms, trajectory="opt_positions.traj").run(fmax=0.05, steps=300)
print(f"positions relaxed: E = {atoms.get_potential_energy():.4f} eV")
BFGS(FrechetCellFilter(atoms), trajectory="opt_cell.traj").run(fmax=0.05, steps=300)
print(f"cell relaxed: E = {atoms.get_potential_energy():.4f} eV, V = {atoms.get_volume():.2f} Å³, "
      f"dipole = {atoms.get_dipole_moment().round(4)} e·Å")
atoms.get_stress()
write("relaxed.extxyz", atoms)
