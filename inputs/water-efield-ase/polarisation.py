"""Polarisation of water vs static field strength from short Langevin runs (ASE, lesmd default model).

    python polarisation.py [model.pt] [--fields 0,0.02,0.05,0.1] [--ps 1.0] [--molecules 64]

The built box is relaxed (``lesmd.md.relax``, 100 FIRE steps) and a zero-field equilibration (0.5 ps) is shared;
then, for every field E along z, NVT at 300 K in the field for ``--ps`` ps from that state. ΔM_z is the
path-integrated polarisation M = M_0 + ∫Σ_i Z*_i·dr_i (``FieldDrivenMD``'s path dipole, the one the periodic
Z*ᵀE field forces work against) minus its start value, averaged over the second half of each run; the snapshot
dipole Σ q r is printed beside it for comparison. Linear response: ΔP = (ε − 1) ε0 E.
Writes polarisation.csv (E V/Å, <M_z> e·Å, std, <P_z> e/Å², <P_z> C/m², P/(ε0 E)). Short runs: water's
dipole relaxes over ~10 ps, so the weak-field values are noisy and the strong-field ones not yet saturated.
"""

import argparse

import numpy as np
import torch
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from lesmd.calculator import LESCalculator
from lesmd.field_md import FieldDrivenMD
from lesmd.md import relax
from lesmd.structures import water_box
from lesmd.units import EPSILON0

E_PER_A2_TO_C_PER_M2 = 16.02176634  # 1 e/Å² in C/m²

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("model", nargs="?", default=None)
parser.add_argument("--fields", default="0,0.02,0.05,0.1", help="field strengths along z, V/Å")
parser.add_argument("--ps", type=float, default=1.0, help="run length per field, ps")
parser.add_argument("--molecules", type=int, default=64)
parser.add_argument("--equilibrate-ps", type=float, default=0.5, help="shared zero-field equilibration, ps")
parser.add_argument("--epsilon-inf", type=float, default=1.0)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

dt = 0.5
atoms = water_box(args.molecules, seed=0)
relax(atoms, LESCalculator(args.model, epsilon_inf=args.epsilon_inf), 100)
rng = np.random.default_rng(3)
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
Stationary(atoms)
Langevin(atoms, dt * units.fs, temperature_K=300, friction=0.02 / units.fs, rng=rng, fixcm=False).run(
    int(args.equilibrate_ps * 1000 / dt))
start = atoms.copy()
start.set_momenta(atoms.get_momenta())
volume = atoms.get_volume()

rows = []
for strength in [float(x) for x in args.fields.split(",")]:
    atoms = start.copy()
    atoms.set_momenta(start.get_momenta())
    atoms.calc = LESCalculator(args.model, epsilon_inf=args.epsilon_inf)
    dyn = Langevin(atoms, dt * units.fs, temperature_K=300, friction=0.02 / units.fs, rng=rng, fixcm=False)
    log = FieldDrivenMD(dyn, [0.0, 0.0, strength], loginterval=5, path_dipole=True)
    snapshots = []
    dyn.attach(lambda log=log, snapshots=snapshots: snapshots.append(log.snapshot_dipole[2]), interval=5)
    try:
        dyn.run(int(args.ps * 1000 / dt))
    except ValueError as err:  # e.g. atoms collapsing: report and go on with the next field
        print(f"E = {strength:5.3f} V/Å  run stopped at {log.time:.1f} fs: {err}", flush=True)
        continue
    m_z = log.log_arrays()["dipole"][:, 2]
    m_z = m_z[len(m_z) // 2:] - log.log_arrays()["dipole"][0, 2]  # change from the shared start
    snap = np.asarray(snapshots)
    snap = snap[len(snap) // 2:] - snapshots[0]
    p = m_z.mean() / volume
    ratio = p / (EPSILON0 * strength) if strength else float("nan")
    rows.append((strength, m_z.mean(), m_z.std(), p, p * E_PER_A2_TO_C_PER_M2, ratio, snap.mean()))
    print(f"E = {strength:5.3f} V/Å  ΔM_z = {m_z.mean():8.3f} ± {m_z.std():6.3f} e·Å  "
          f"ΔP_z = {p:.3e} e/Å² = {p * E_PER_A2_TO_C_PER_M2:.4f} C/m²  ΔP/(ε0 E) = {ratio:7.2f}  "
          f"(snapshot ΔM_z = {snap.mean():8.3f} e·Å)", flush=True)

np.savetxt("polarisation.csv", np.array(rows), delimiter=",",
           header="E_V_per_A,dMz_eA,std_dMz_eA,dPz_e_per_A2,dPz_C_per_m2,dP_over_eps0E,dMz_snapshot_eA")
print(f"{args.molecules} H2O, V = {volume:.1f} Å³, {args.ps} ps per field; wrote polarisation.csv")
