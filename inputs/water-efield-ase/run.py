"""64 H2O in a static uniform field of 0.05 V/Å along z with ASE: NVT, then NVE with the enthalpy logged.

    python run.py [model.pt] [--field 0,0,0.05] [--nvt-ps 2] [--nve-ps 1]

1. Langevin NVT at 300 K in the field (the dipoles align; P_z grows towards its field value).
2. VelocityVerlet NVE in the same field: the electric enthalpy H = E0 − E·M (+ kinetic) is conserved.
Both stages log t, E(t), M(t) (polarisation integrated along the path, M_0 + ∫ΣZ*·dr, e·Å), E0, H, K,
the conserved quantity and T
(`nvt.log`, `nve.log`; columns in the header, see lesmd.field_md). Prints ⟨P_z⟩ and the NVE conservation.
"""

import argparse

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.verlet import VelocityVerlet

from lesmd.calculator import LESCalculator
from lesmd.field_md import FieldDrivenMD
from lesmd.fields import parse_field_vector
from lesmd.structures import equilibrated_water64
from lesmd.units import EPSILON0

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", default=None, help="model file (default: the embedded water model)")
parser.add_argument("--field", default="0,0,0.05", help="static field Ex,Ey,Ez in V/Å (default 0,0,0.05)")
parser.add_argument("--nvt-ps", type=float, default=2.0, help="NVT length, ps")
parser.add_argument("--nve-ps", type=float, default=1.0, help="NVE length, ps")
parser.add_argument("--epsilon-inf", type=float, default=1.0, help="√ε∞ scaling of charges/dipoles/BECs")
args = parser.parse_args()
torch.set_num_threads(2)

field = parse_field_vector(args.field)
atoms = equilibrated_water64()  # 64 H2O equilibrated at 300 K (velocities included)
atoms.calc = LESCalculator(args.model, epsilon_inf=args.epsilon_inf)
rng = np.random.default_rng(7)
volume = atoms.get_volume()
dt = 0.5  # fs

nvt = Langevin(atoms, timestep=dt * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=rng, fixcm=False)
log = FieldDrivenMD(nvt, field, logfile="nvt.log", loginterval=10)
nvt.run(int(args.nvt_ps * 1000 / dt))
nvt_data = log.log_arrays()
log.close()

nve = VelocityVerlet(atoms, timestep=dt * units.fs, trajectory="nve.traj", loginterval=20)
log = FieldDrivenMD(nve, field, logfile="nve.log", loginterval=10)
nve.run(int(args.nve_ps * 1000 / dt))
nve_data = log.log_arrays()
log.close()

half = len(nvt_data["time"]) // 2
p_z = nvt_data["dipole"][half:, 2] / volume  # e/Å²
print(f"field {field.tolist()} V/Å, V = {volume:.1f} Å³")
print(f"<M_z> (2nd half of NVT) = {nvt_data['dipole'][half:, 2].mean():.3f} e·Å, "
      f"<P_z> = {p_z.mean():.5f} e/Å² = {p_z.mean() * 16.02176634:.4f} C/m²")
if field[2] != 0:
    print(f"apparent susceptibility <P_z>/(ε0 E_z) = {p_z.mean() / (EPSILON0 * field[2]):.2f}")
c = nve_data["conserved"] / len(atoms)
print(f"mean T: NVT {nvt_data['temperature'][half:].mean():.1f} K, NVE {nve_data['temperature'].mean():.1f} K")
print(f"NVE: conserved quantity spread {np.ptp(c) * 1e3:.4f} meV/atom, "
      f"drift {(c[-10:].mean() - c[:10].mean()) * 1e3:.4f} meV/atom over {args.nve_ps} ps")
