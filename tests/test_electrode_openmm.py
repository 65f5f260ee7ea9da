"""Finite-field Au(100) capacitor: per-atom electrode charges against OpenMM's ConstantPotentialForce.

OpenMM (≥ 8.3) implements the same finite-field constant-potential method (Dufils et al., PRL 123, 195501 (2019))
independently, with PME and its own matrix solve: electrode atoms are Gaussians ρ ∝ exp(−r²/w²), w = 1/η (nm),
electrode potentials and the external field in kJ/mol per e (1 V = 96.485 kJ/mol/e), field E_z = −ΔV/L_z, total
charge constrained to zero. Both cases share one OpenMM context (a +1 e ion that is uncharged in the first case),
on the CPU platform (mixed precision; its charges differ from the double-precision Reference platform by ~1e-8 e).
Geometry: :func:`lesmd.electrode.geometry.au100_capacitor` (Ahrens-Iwers et al., JCP 157, 084801 (2022)).
"""

import numpy as np
import openmm
import openmm.unit as unit
import pytest

from lesmd.electrode import Electrode, ElectrodeConfig, ElectrodePotential
from lesmd.electrode.geometry import AU_ETA, au100_capacitor
from lesmd.models.analytic import FixedChargeModel

NUMBERS, POSITIONS, CELL = au100_capacitor()
BOTTOM, TOP = np.arange(144), np.arange(144, 288)
ION = np.array([3.1, 4.7, 15.0])  # Å, between the plates
KJ_PER_MOL_PER_EV = 96.48533212  # kJ/mol per eV (= per V·e); CODATA, independent of lesmd.units


def _openmm_electrode_params(force: openmm.ConstantPotentialForce, delta_v: float) -> None:
    width = 0.1 / AU_ETA  # nm
    for k, (indices, sign) in enumerate(((BOTTOM, -0.5), (TOP, 0.5))):
        force.setElectrodeParameters(k, {int(i) for i in indices}, sign * delta_v * KJ_PER_MOL_PER_EV, width, 0.0)
    force.setExternalField(openmm.Vec3(0.0, 0.0, -delta_v / (CELL[2, 2] / 10.0) * KJ_PER_MOL_PER_EV))


@pytest.fixture(scope="module")
def openmm_charges() -> dict:
    """OpenMM electrode charges (288,) in e at ΔV = 1.2 V (ion uncharged) and at ΔV = 0 with the +1 e ion."""
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*(row / 10.0)) for row in CELL])
    force = openmm.ConstantPotentialForce()
    for _ in range(len(POSITIONS)):
        system.addParticle(0.0)  # frozen electrodes (zero mass), as the matrix method requires
        force.addParticle(0.0)
    system.addParticle(22.99)
    force.addParticle(0.0)
    for indices in (BOTTOM, TOP):
        force.addElectrode({int(i) for i in indices}, 0.0, 0.1 / AU_ETA, 0.0)
    _openmm_electrode_params(force, 1.2)
    force.setUseChargeConstraint(True)
    force.setChargeConstraintTarget(0.0)
    force.setConstantPotentialMethod(openmm.ConstantPotentialForce.Matrix)
    force.setEwaldErrorTolerance(1e-6)
    force.setCutoffDistance(1.2)
    system.addForce(force)
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(system, openmm.VerletIntegrator(1e-3), platform, {"Threads": "2"})
    context.setPositions(np.vstack([POSITIONS, ION]) / 10.0 * unit.nanometer)
    result = {"field": np.array(force.getCharges(context).value_in_unit(unit.elementary_charge))}
    force.setParticleParameters(len(POSITIONS), 1.0)
    _openmm_electrode_params(force, 0.0)
    force.updateParametersInContext(context)
    result["ion"] = np.array(force.getCharges(context).value_in_unit(unit.elementary_charge))
    return result


def _lesmd_charges(delta_v: float, with_ion: bool) -> np.ndarray:
    config = ElectrodeConfig([Electrode("bottom", indices=BOTTOM, potential=-0.5 * delta_v, eta=AU_ETA),
                              Electrode("top", indices=TOP, potential=0.5 * delta_v, eta=AU_ETA)],
                             boundary="finite_field", electrolyte_width=0.0)
    numbers, positions = NUMBERS, POSITIONS
    if with_ion:
        numbers, positions = np.append(NUMBERS, 11), np.vstack([POSITIONS, ION])
    potential = ElectrodePotential(FixedChargeModel([1.0] if with_ion else []), config)
    return potential.compute(numbers, positions, CELL, None, ["energy"])["charges"][: len(POSITIONS)]


def test_finite_field_electrode_charges_at_1p2_volt_match_openmm_per_atom(openmm_charges):
    reference = openmm_charges["field"][: len(POSITIONS)]
    charges = _lesmd_charges(1.2, with_ion=False)
    assert abs(reference[TOP].sum() - 0.18541) < 1e-4  # OpenMM's own total, LAMMPS 0.18541–0.18555 e
    assert np.abs(charges - reference).max() < 1e-6  # measured 6.0e-8 e (per-atom charges up to 2.4e-3 e)


def test_image_charges_of_a_unit_ion_at_zero_volt_match_openmm_per_atom(openmm_charges):
    reference = openmm_charges["ion"][: len(POSITIONS)]
    charges = _lesmd_charges(0.0, with_ion=True)
    assert abs(reference.sum() + 1.0) < 1e-6  # the electrodes carry the image charge −1 e
    assert np.abs(charges - reference).max() < 1e-6  # measured 4.8e-8 e (per-atom charges up to 4.5e-2 e)
