"""Energy conservation check: 64 H2O, short Langevin start, then ASE VelocityVerlet NVE (0.5 fs, 2 ps).

    python nve.py [model.pt]

Prints the total-energy drift per atom (meV/atom) between the first and last 100 fs of the NVE run.
"""

import sys

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from lesmd.calculator import LESCalculator
from lesmd.structures import equilibrated_water64

model = sys.argv[1] if len(sys.argv) > 1 else None
atoms = equilibrated_water64()
atoms.calc = LESCalculator(model, dtype=torch.float64)
rng = np.random.default_rng(7)
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
Stationary(atoms)
Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300, friction=0.05 / units.fs, rng=rng, fixcm=False).run(200)

energies = []
dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs, trajectory="nve.traj", loginterval=20)
dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
dyn.attach(lambda: print(f"{dyn.nsteps * 0.5:8.1f} fs  Etot {energies[-1]:.6f} eV  T {atoms.get_temperature():6.1f} K"),
           interval=200)
dyn.run(4000)
e = np.array(energies) / len(atoms)
drift = abs(e[-20:].mean() - e[:20].mean())
print(f"drift {drift * 1e3:.4f} meV/atom over 2 ps; spread {np.ptp(e) * 1e3:.4f} meV/atom")
