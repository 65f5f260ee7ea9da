"""Au(100) vacuum capacitor with lesmd's constant-potential electrodes through ASE.

Prints the charge of the top electrode for the slab and the finite-field boundaries (reference: LAMMPS
ELECTRODE / OpenMM 0.18541–0.18555 e at ΔV = 1.2 V; ideal ε0AΔV/d = 0.188261 e), the capacitance, and the
Green's-reciprocity experiment (a +1 e point charge between grounded plates induces Q_top linear in its height).
Writes init.xyz (the capacitor, for i-PI). Run: python run_ase.py
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from lesmd.electrode import ElectrodeCalculator, load_config
from lesmd.electrode.geometry import au100_capacitor
from lesmd.models.analytic import FixedChargeModel

HERE = Path(__file__).resolve().parent
numbers, positions, cell = au100_capacitor()
atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=[True, True, False])
write(HERE / "init.xyz", atoms)

for name in ("electrode.toml", "electrode_finite_field.toml"):
    config = load_config(HERE / name)
    atoms.pbc = [True, True, config.boundary == "finite_field"]
    atoms.calc = ElectrodeCalculator(config)  # no electrolyte: no model needed
    atoms.get_potential_energy()
    q = atoms.calc.results["electrode_total_charges"]
    print(f"{config.boundary:12s}  Q_bottom = {q[0]:+.6f} e  Q_top = {q[1]:+.6f} e  "
          f"(LAMMPS/OpenMM 0.18541-0.18555 e)  C = {q[1] / 1.2:.6f} e/V")

# Green's reciprocity: a +1 e point charge (the 'electrolyte', width 0) between grounded plates
config = load_config(HERE / "electrode.toml")
config.electrodes[0].potential = config.electrodes[1].potential = 0.0
config.electrolyte_width = 0.0
heights = np.linspace(14.0, 28.0, 8)
q_top = []
for z in heights:
    ion = Atoms("Na", positions=[[3.1, 4.7, z]])
    system = atoms.copy() + ion
    system.pbc = [True, True, False]
    system.calc = ElectrodeCalculator(config, model=FixedChargeModel([1.0]))
    system.get_potential_energy()
    q_top.append(system.calc.results["electrode_total_charges"][1])
slope, intercept = np.polyfit(heights, q_top, 1)
print(f"Green's reciprocity: dQ_top/dz = {slope:.5f} e/Å (reference ≈ -0.0446), "
      f"Q_top(z = 21.130 Å) = {slope * 21.130 + intercept:.5f} e (reference -0.5000)")
