"""Reproduce the default water model's NVE extrapolation hole (open defect): 32 H2O, FIRE, 100 fs Langevin, NVE.

Prints the H-H/O-H distances of the molecule that collapses and the energies around the event (~115 fs of NVE).
"""

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from lesmd.calculator import LESCalculator
from lesmd.md import relax
from lesmd.structures import water_box

torch.set_num_threads(2)
atoms = water_box(32, seed=7)
atoms.calc = LESCalculator(dtype=torch.float64)
relax(atoms, atoms.calc, 100)
rng = np.random.default_rng(7)
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
Stationary(atoms)
Langevin(atoms, timestep=0.5*units.fs, temperature_K=300, friction=0.05/units.fs, rng=rng, fixcm=False).run(200)
dyn = VelocityVerlet(atoms, timestep=0.5*units.fs)
def log():
    d = atoms.get_distance(64, 65, mic=True)
    do1 = atoms.get_distance(63, 64, mic=True)
    do2 = atoms.get_distance(63, 65, mic=True)
    if dyn.nsteps % 10 == 0 or d < 1.0:
        print(dyn.nsteps, f"HH {d:.3f} OH {do1:.3f} {do2:.3f} Epot {atoms.get_potential_energy():.3f} "
              f"Etot {atoms.get_total_energy():.3f}", flush=True)
dyn.attach(log, interval=1)
try:
    dyn.run(600)
except ValueError as e:
    print("ERR", e)
