"""Independent cross-check of the finite-field capacitor with OpenMM's ConstantPotentialForce (optional).

OpenMM ≥ 8.3 (`pip install openmm`; it does not touch torch) implements the same finite-field constant-potential
method (Dufils et al., PRL 123, 195501 (2019)) with PME. This script builds the Au(100) capacitor in OpenMM,
solves the electrode charges at ΔV = 1.2 V and at ΔV = 0 with a +1 e point charge between the plates, and prints
them next to lesmd's. OpenMM's Gaussian width w is the length in ρ ∝ exp(−r²/w²), i.e. w = 1/η.
Run: python openmm_check.py
"""

import numpy as np
import openmm
import openmm.unit as u

from lesmd.electrode import Electrode, ElectrodeConfig, ElectrodePotential
from lesmd.electrode.geometry import AU_ETA, au100_capacitor
from lesmd.models.analytic import FixedChargeModel

KJ_PER_MOL_PER_EV = 96.48533212  # 1 eV = 96.485 kJ/mol; a potential of 1 V is 96.485 kJ/mol per e

numbers, positions, cell = au100_capacitor()
bottom, top = list(range(144)), list(range(144, 288))


def openmm_charges(delta_v: float, ion_z: float | None) -> np.ndarray:
    n = len(positions) + (ion_z is not None)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*(row / 10.0)) for row in cell])
    force = openmm.ConstantPotentialForce()
    for k in range(n):
        system.addParticle(0.0 if k < len(positions) else 22.99)  # frozen electrodes: zero mass (matrix method)
    for _ in range(len(positions)):
        force.addParticle(0.0)
    xyz = positions / 10.0
    if ion_z is not None:
        force.addParticle(1.0)
        xyz = np.vstack([xyz, [[0.31, 0.47, ion_z / 10.0]]])
    width = 0.1 / AU_ETA  # nm
    force.addElectrode(set(bottom), -0.5 * delta_v * KJ_PER_MOL_PER_EV, width, 0.0)
    force.addElectrode(set(top), 0.5 * delta_v * KJ_PER_MOL_PER_EV, width, 0.0)
    force.setExternalField(openmm.Vec3(0, 0, -delta_v / (cell[2, 2] / 10.0) * KJ_PER_MOL_PER_EV))
    force.setUseChargeConstraint(True)
    force.setChargeConstraintTarget(0.0)
    force.setConstantPotentialMethod(openmm.ConstantPotentialForce.Matrix)
    force.setEwaldErrorTolerance(1e-6)
    force.setCutoffDistance(1.2)
    system.addForce(force)
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz * u.nanometer)
    return np.array(force.getCharges(context).value_in_unit(u.elementary_charge))


def lesmd_charges(delta_v: float, ion_z: float | None) -> np.ndarray:
    config = ElectrodeConfig([Electrode("bottom", indices=np.array(bottom), potential=-0.5 * delta_v, eta=AU_ETA),
                              Electrode("top", indices=np.array(top), potential=0.5 * delta_v, eta=AU_ETA)],
                             boundary="finite_field", electrolyte_width=0.0)
    n, pos = numbers, positions
    if ion_z is not None:
        n, pos = np.append(numbers, 11), np.vstack([positions, [[3.1, 4.7, ion_z]]])
    potential = ElectrodePotential(FixedChargeModel([1.0] if ion_z is not None else []), config)
    return potential.compute(n, pos, cell, None, ["energy"])["charges"]


for delta_v, ion_z in ((1.2, None), (0.0, 15.0), (0.0, 21.13)):
    a, b = openmm_charges(delta_v, ion_z), lesmd_charges(delta_v, ion_z)
    label = f"ΔV = {delta_v} V" + ("" if ion_z is None else f", +1 e at z = {ion_z} Å")
    print(f"{label:32s} Q_top OpenMM {a[top].sum():+.6f} e  lesmd {b[top].sum():+.6f} e  "
          f"max |Δq_i| {np.abs(a[:288] - b[:288]).max():.2e} e")
