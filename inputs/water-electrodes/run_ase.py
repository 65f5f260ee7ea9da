"""Water between two Au(100) electrodes at ΔV = 1 V: 100 steps of Langevin NVT (300 K, 0.5 fs) with ASE.

The LES model (default: the embedded water model; or --model PATH) gives the water energy, forces and latent
charges; lesmd's constant-potential electrodes (electrode.toml) solve the Au charges at every step. The
electrodes are frozen (FixAtoms). Prints the conserved energy, temperature and the electrode charges every 10
steps and writes md.traj. Run: python run_ase.py [--model PATH] [--steps 100]
"""

import argparse
from pathlib import Path

import numpy as np
from ase import units
from ase.constraints import FixAtoms
from ase.io import read
from ase.md.langevin import Langevin

from lesmd.electrode import ElectrodeCalculator

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default=None, help="model file (default: the embedded water model)")
parser.add_argument("--steps", type=int, default=100)
args = parser.parse_args()

if not (HERE / "init.xyz").is_file():
    import runpy

    runpy.run_path(str(HERE / "make_init.py"))
atoms = read(HERE / "init.xyz")
n_au = int(np.sum(atoms.numbers == 79))
atoms.set_constraint(FixAtoms(indices=range(n_au)))
atoms.calc = ElectrodeCalculator(HERE / "electrode.toml", model=args.model)
rng = np.random.default_rng(0)
velocities = rng.normal(size=(len(atoms), 3)) * np.sqrt(300 * units.kB / atoms.get_masses())[:, None]
velocities[:n_au] = 0.0
atoms.set_velocities(velocities)
dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, fixcm=False,
               trajectory=str(HERE / "md.traj"), loginterval=10)


def report():
    energy = atoms.get_potential_energy()
    q = atoms.calc.results["electrode_total_charges"]
    print(f"step {dyn.nsteps:4d}  Ω {energy:12.4f} eV  T {atoms.get_temperature():6.1f} K  "
          f"Q_bottom {q[0]:+.4f} e  Q_top {q[1]:+.4f} e")


dyn.attach(report, interval=10)  # also called at step 0
dyn.run(args.steps)
