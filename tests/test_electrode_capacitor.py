"""Au(100) vacuum capacitor: charges against LAMMPS ELECTRODE / OpenMM references, linearity, neutrality,
Green's reciprocity and solver agreement (reference system of Ahrens-Iwers et al., JCP 157, 084801 (2022))."""

import numpy as np
import pytest
import torch

from lesmd.electrode import Electrode, ElectrodeConfig, ElectrodePotential
from lesmd.electrode.geometry import AU_ETA, au100_capacitor
from lesmd.models.analytic import FixedChargeModel

NUMBERS, POSITIONS, CELL = au100_capacitor()
BOTTOM, TOP = np.arange(144), np.arange(144, 288)
MID_PLANE = 0.5 * (10.086673 + 32.173344)


def _potential(boundary, electrolyte_charges=(), solver="matrix", bottom=-0.6, top=0.6, top_charge=None):
    top_kw = {"potential": top} if top_charge is None else {"charge": top_charge}
    cfg = ElectrodeConfig([Electrode("bottom", indices=BOTTOM, potential=bottom, eta=AU_ETA),
                           Electrode("top", indices=TOP, eta=AU_ETA, **top_kw)],
                          boundary=boundary, solver=solver, electrolyte_width=0.0, cg_tolerance=1e-10)
    return ElectrodePotential(FixedChargeModel(list(electrolyte_charges)), cfg)


def _with_ions(ions):
    numbers = np.concatenate([NUMBERS, np.full(len(ions), 11)])
    return numbers, np.vstack([POSITIONS, ions])


ION = np.array([[3.1, 4.7, 15.0]])
PAIR = np.array([[3.1, 4.7, 15.0], [11.0, 20.3, 26.5]])


@pytest.fixture(scope="module", params=["slab", "finite_field"])
def capacitor(request):
    return _potential(request.param)


def test_au100_capacitor_charge_matches_lammps_and_openmm(capacitor):
    out = capacitor.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    q_bottom, q_top = out["electrode_total_charges"]
    assert 0.18520 <= q_top <= 0.18560, q_top  # LAMMPS/OpenMM 0.18541–0.18555 e (ideal ε0AΔV/d = 0.188261 e)
    assert abs(q_bottom + q_top) < 1e-10
    # mirror symmetry of the two electrodes (up to the A/B stacking): outer layers carry opposite charges
    charges = out["charges"]
    assert abs(charges[:72].sum() + charges[216:].sum()) < 1e-6


def test_capacitor_charge_is_exactly_linear_in_voltage(capacitor):
    capacitor.config.electrodes[0].potential, capacitor.config.electrodes[1].potential = -0.6, 0.6
    reference = capacitor.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])["electrode_total_charges"][1] / 1.2
    for dv in (0.1, 2.5, -4.0):
        capacitor.config.electrodes[0].potential, capacitor.config.electrodes[1].potential = -dv / 2, dv / 2
        q_top = capacitor.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])["electrode_total_charges"][1]
        assert abs(q_top - reference * dv) < 1e-7
    capacitor.config.electrodes[0].potential, capacitor.config.electrodes[1].potential = -0.6, 0.6


def test_capacitance_matrix_is_charge_per_volt(capacitor):
    out = capacitor.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "capacitance"])
    c = out["capacitance"]
    assert np.allclose(c.sum(axis=1), 0.0, atol=1e-10)  # a common shift of all Ψ changes nothing
    assert abs(c[1, 1] * 1.2 - out["electrode_total_charges"][1]) < 1e-9


def test_uniform_potential_shift_leaves_charges_unchanged(capacitor):
    numbers, positions = _with_ions(ION)
    shifted = _potential(capacitor.config.boundary, [1.0], bottom=-0.6 + 3.7, top=0.6 + 3.7)
    plain = _potential(capacitor.config.boundary, [1.0])
    a = plain.compute(numbers, positions, CELL, None, ["energy"])
    b = shifted.compute(numbers, positions, CELL, None, ["energy"])
    assert np.abs(a["charges"] - b["charges"]).max() < 1e-12
    assert np.allclose(b["electrode_potentials"] - a["electrode_potentials"], 0.0, atol=1e-9)


def test_electrodes_neutralise_the_electrolyte_charge_to_1e_10(capacitor):
    numbers, positions = _with_ions(ION)
    out = _potential(capacitor.config.boundary, [1.0]).compute(numbers, positions, CELL, None, ["energy"])
    assert abs(out["electrode_total_charges"].sum() + 1.0) < 1e-10
    assert abs(out["charges"].sum()) < 1e-10


def test_fixed_charge_electrode_recovers_the_set_potential_difference():
    q_top = _potential("slab").compute(NUMBERS, POSITIONS, CELL, None, ["energy"])["electrode_total_charges"][1]
    fixed = _potential("slab", top_charge=float(q_top))
    out = fixed.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])
    assert abs(out["electrode_total_charges"][1] - q_top) < 1e-12
    assert abs(out["electrode_potentials"][1] - out["electrode_potentials"][0] - 1.2) < 1e-7


def test_matrix_and_cg_solvers_agree(capacitor):
    numbers, positions = _with_ions(PAIR)
    boundary = capacitor.config.boundary
    a = _potential(boundary, [1.0, -1.0]).compute(numbers, positions, CELL, None, ["energy", "forces"])
    b = _potential(boundary, [1.0, -1.0], solver="cg").compute(numbers, positions, CELL, None, ["energy", "forces"])
    assert np.abs(a["charges"] - b["charges"]).max() < 1e-6
    assert abs(a["energy"] - b["energy"]) < 1e-8
    assert np.abs(a["forces"][288:] - b["forces"][288:]).max() < 1e-6  # electrolyte (matrix: frozen electrodes)
    assert np.all(a["forces"][:288] == 0.0) and np.abs(b["forces"][:288]).max() > 1e-4
    assert 0 < int(b["cg_iterations"]) < 200


def test_green_reciprocity_point_charge_between_grounded_electrodes():
    potential = _potential("slab", [1.0], bottom=0.0, top=0.0)
    heights = np.linspace(14.0, 28.0, 5)
    q_top = []
    for z in heights:
        numbers, positions = _with_ions(np.array([[3.1, 4.7, z]]))
        q_top.append(potential.compute(numbers, positions, CELL, None, ["energy"])["electrode_total_charges"][1])
    slope, intercept = np.polyfit(heights, q_top, 1)
    assert np.abs(np.polyval([slope, intercept], heights) - q_top).max() < 1e-5  # linear in the position
    assert -0.0449 < slope < -0.0443  # LAMMPS/OpenMM ≈ −0.0446 e/Å (ideal plates: −1/d = −0.0453 e/Å)
    assert abs(np.polyval([slope, intercept], MID_PLANE) + 0.5) < 1e-4


def test_bad_structures_raise_value_error():
    potential = _potential("slab")
    with pytest.raises(ValueError, match="atom index 143 but the structure has 100 atoms"):
        potential.compute(NUMBERS[:100], POSITIONS[:100], CELL, None, ["energy"])
    with pytest.raises(ValueError, match="0 ≤ z < L_z"):
        potential.compute(NUMBERS, POSITIONS + [0, 0, 20.0], CELL, None, ["energy"])
    tilted = CELL.copy()
    tilted[2, 0] = 1.0
    with pytest.raises(ValueError, match="third lattice vector along z"):
        potential.compute(NUMBERS, POSITIONS, tilted, None, ["energy"])
    numbers, positions = _with_ions(np.array([[0.0, 0.0, 8.1]]))
    with pytest.raises(ValueError, match="overlapping"):
        _potential("slab", [1.0]).compute(numbers, positions, CELL, None, ["energy"])


def test_forces_on_a_point_charge_between_charged_plates_match_the_plate_field():
    """A small test charge in the middle of the capacitor feels F_z ≈ q ΔV/d_eff (uniform field, e·V/Å)."""
    numbers, positions = _with_ions(np.array([[6.26, 6.26, MID_PLANE]]))
    out = _potential("slab", [1e-3]).compute(numbers, positions, CELL, None, ["energy", "forces"])
    f_z = out["forces"][-1, 2]
    assert f_z < 0  # a positive charge is pushed from the positive top plate towards the bottom
    assert abs(-f_z / 1e-3 - 1.2 / 22.42) < 0.02 * 1.2 / 22.42
    torch.set_num_threads(torch.get_num_threads())
