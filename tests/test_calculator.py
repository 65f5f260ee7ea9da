"""The ASE calculator: ASE conventions (signs, Voigt order, shapes), total charge, errors, and ASE dynamics.

Independent references: finite differences of the energy and of the dipole (ASE's own numerical forces and
stress), the analytic Born charges of fixed charges (Z*_i = q_i·I), and physical behaviour of ASE integrators.
"""

from __future__ import annotations

import ipi_helpers as h
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError

from lesmd.calculator import LESCalculator
from lesmd.ipi import IPIDriver
from lesmd.models.analytic import CoordinationChargeModel, FixedChargeModel
from lesmd.potential import LESPotential
from lesmd.units import BOHR, DIPOLE_EA_TO_AU, HARTREE


def water2(dtype=torch.float64) -> tuple[Atoms, LESCalculator]:
    atoms = h.water2_atoms()
    atoms.rattle(0.05, seed=1)
    atoms.calc = LESCalculator(h.water2_model(), dtype=dtype)
    return atoms, atoms.calc


def numeric_forces(atoms: Atoms, d: float = 1e-4) -> np.ndarray:
    """−∂E/∂r by central differences."""
    out = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[i, k] += sign * d
                energies.append(atoms.calc.get_potential_energy(moved))
            out[i, k] = -(energies[0] - energies[1]) / (2 * d)
    return out


def numeric_stress(atoms: Atoms, d: float = 1e-5) -> np.ndarray:
    """Voigt (1/V) ∂E/∂ε by central differences of a symmetric strain (xx, yy, zz, yz, xz, xy)."""
    out = np.zeros(6)
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for n, (a, b) in enumerate(pairs):
        energies = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * d / (1 if a == b else 2)
            moved = atoms.copy()
            moved.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            energies.append(atoms.calc.get_potential_energy(moved))
        out[n] = (energies[0] - energies[1]) / (2 * d) / atoms.get_volume()
    return out


def coordination_molecule(charge: float = 0.0) -> Atoms:
    """An open-boundary H2O2-like cluster whose charges depend on geometry (non-trivial BECs)."""
    model = CoordinationChargeModel({1: 0.3, 8: -0.5}, {1: 0.1, 8: -0.05}, length=1.5,
                                    bonds=[(0, 1, 30.0, 1.0), (0, 2, 30.0, 1.0), (2, 3, 30.0, 1.4)])
    atoms = Atoms("OHOH", positions=[[0, 0, 0], [0.97, 0.1, 0], [-0.3, 1.35, 0.2], [0.2, 1.9, 1.0]])
    atoms.calc = LESCalculator(model, dtype=torch.float64, charge=charge)
    return atoms


def test_forces_equal_finite_differences_of_energy():
    atoms, calc = water2()
    np.testing.assert_allclose(atoms.get_forces(), numeric_forces(atoms),
                               atol=2e-6, rtol=0)


def test_stress_is_voigt_and_equals_finite_differences_of_energy():
    atoms, calc = water2()
    stress = atoms.get_stress()
    assert stress.shape == (6,)
    np.testing.assert_allclose(stress, numeric_stress(atoms), atol=1e-7, rtol=0)


def test_fixed_charges_give_dipole_charges_and_born_charges_q_identity():
    atoms, calc = water2()
    q = np.array(h.CHARGES2)
    np.testing.assert_allclose(atoms.get_charges(), q, atol=1e-12)
    np.testing.assert_allclose(atoms.get_dipole_moment(), q @ atoms.positions, atol=1e-10)
    z = calc.get_property("born_effective_charges", atoms)
    assert z.shape == (6, 3, 3)
    np.testing.assert_allclose(z, q[:, None, None] * np.eye(3), atol=1e-12)
    np.testing.assert_allclose(calc.get_property("polarization", atoms), atoms.get_dipole_moment() /
                               atoms.get_volume(), atol=1e-14)


def test_born_charges_are_dipole_derivatives_atom_alpha_beta_order():
    atoms = coordination_molecule()
    z = atoms.calc.get_property("born_effective_charges", atoms)
    step = 1e-5
    numeric = np.zeros((len(atoms), 3, 3))
    for i in range(len(atoms)):
        for beta in range(3):
            moved = atoms.copy()
            moved.calc = atoms.calc
            moved.positions[i, beta] += step
            plus = moved.get_dipole_moment()
            moved.positions[i, beta] -= 2 * step
            minus = moved.get_dipole_moment()
            numeric[i, :, beta] = (plus - minus) / (2 * step)  # [atom, dipole α, displacement β]
    assert np.abs(z - z.transpose(0, 2, 1)).max() > 1e-3  # not symmetric: the index order matters
    np.testing.assert_allclose(z, numeric, atol=1e-7)
    np.testing.assert_allclose(z.sum(axis=0), 0.0, atol=1e-10)  # acoustic sum rule, neutral cluster


def test_total_charge_from_atoms_info_overrides_default_and_invalidates_cache():
    atoms = coordination_molecule(charge=0.0)
    assert abs(atoms.get_charges().sum()) < 1e-12
    atoms.info["charge"] = 1.0
    assert atoms.get_charges().sum() == pytest.approx(1.0, abs=1e-12)
    del atoms.info["charge"]
    atoms.calc.parameters.charge = -1.0
    atoms.calc.reset()
    assert atoms.get_charges().sum() == pytest.approx(-1.0, abs=1e-12)


def test_expensive_properties_only_when_asked():
    atoms, calc = water2()
    atoms.get_potential_energy()
    assert {"energy", "forces", "charges", "dipole"} <= set(calc.results)
    assert "born_effective_charges" not in calc.results and "stress" not in calc.results
    atoms.get_stress()
    assert "stress" in calc.results


def test_field_enthalpy_and_setting_the_field_resets_results():
    atoms, calc = water2()
    e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
    field = np.array([0.0, 0.02, 0.05])
    calc.efield = field
    m = atoms.get_dipole_moment()
    assert atoms.get_potential_energy() == pytest.approx(e0 - field @ m, abs=1e-10)
    q = np.array(h.CHARGES2)
    np.testing.assert_allclose(atoms.get_forces(), f0 + q[:, None] * field, atol=1e-10)  # F = −∇E0 + Z*ᵀE


def test_any_potential_object_plugs_in():
    atoms, calc = water2()
    other = LESCalculator(potential=LESPotential(h.water2_model(), dtype=torch.float64))
    assert other.get_potential_energy(atoms) == pytest.approx(calc.get_potential_energy(atoms), abs=1e-12)
    with pytest.raises(TypeError, match="compute"):
        LESCalculator(potential=object())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.positions.__setitem__((2, 1), np.nan), "NaN"),
        (lambda a: a.positions.__setitem__(3, a.positions[0] + 0.1), "overlapping"),
        (lambda a: a.set_cell([[7, 0, 0], [7, 0, 0], [0, 0, 7]]), "singular cell"),
    ],
)
def test_bad_structures_raise_one_clear_value_error(change, message):
    atoms, _ = water2()
    change(atoms)
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


def test_unknown_element_is_named():
    atoms = coordination_molecule()
    atoms.numbers[3] = 6
    with pytest.raises(ValueError, match="unknown element C"):
        atoms.get_potential_energy()


def test_open_boundaries_have_no_stress():
    atoms = coordination_molecule()
    with pytest.raises((ValueError, PropertyNotImplementedError)):
        atoms.get_stress()


def test_ipi_units_energy_forces_virial_dipole_bec_layout():
    """The i-PI adapter: Hartree, Hartree/Bohr, virial −V·σ, dipole e·Bohr, BEC rows 3i+β columns α."""
    atoms = coordination_molecule()
    calc = atoms.calc
    driver = IPIDriver(calc.potential, atoms.numbers, pbc=False, extras="dipole,BEC,charges")
    import json

    e, f, vir, extras = driver.compute_structure(np.eye(3) * 20 / BOHR, atoms.positions / BOHR)
    assert e * HARTREE == pytest.approx(atoms.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(f * HARTREE / BOHR, atoms.get_forces(), atol=1e-12)
    np.testing.assert_array_equal(vir, 0.0)
    data = json.loads(extras)
    np.testing.assert_allclose(data["dipole"], atoms.get_dipole_moment() * DIPOLE_EA_TO_AU, atol=1e-12)
    z = calc.get_property("born_effective_charges", atoms)
    bec = np.array(data["BEC"])
    assert bec.shape == (12, 3)
    for i in range(4):
        for beta in range(3):
            np.testing.assert_allclose(bec[3 * i + beta], z[i, :, beta], atol=1e-12)
    np.testing.assert_allclose(data["charges"], atoms.get_charges(), atol=1e-12)
    # periodic: virial = −V σ in Hartree, and the cell arrives as h = cellᵀ
    periodic, pcalc = water2()
    pcalc.get_stress(periodic)
    cell = periodic.cell.array.copy()
    cell[1, 0] = 0.4  # triclinic, so a transposed cell would give different results
    periodic.set_cell(cell, scale_atoms=False)
    pdriver = IPIDriver(pcalc.potential, periodic.numbers, pbc=True, extras="dipole")
    e, f, vir, _ = pdriver.compute_structure(cell.T / BOHR, periodic.positions / BOHR)
    assert e * HARTREE == pytest.approx(periodic.get_potential_energy(), abs=1e-12)
    sigma = periodic.get_stress(voigt=False)
    np.testing.assert_allclose(vir * HARTREE, -periodic.get_volume() * sigma.T, atol=1e-12)


def test_velocity_verlet_energy_error_shrinks_as_timestep_squared():
    """Forces consistent with the energy make Verlet's energy error second order: halving dt divides it by 4."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    spread = []
    for dt in (0.2, 0.1):
        atoms, _ = water2()
        atoms.set_velocities(np.random.default_rng(0).normal(scale=0.01, size=(len(atoms), 3)))
        energies = []
        dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
        dyn.attach(lambda a=atoms, e=energies: e.append(a.get_total_energy()), interval=1)
        dyn.run(int(round(10 / dt)))
        spread.append(np.ptp(energies))
    assert 3.0 < spread[0] / spread[1] < 5.0
    assert spread[1] < 2e-3


def test_langevin_thermalises_towards_target_temperature():
    from ase import units
    from ase.md.langevin import Langevin

    atoms, _ = water2()
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=600, friction=0.5 / units.fs,
                   rng=np.random.default_rng(3), fixcm=False)
    temps = []
    dyn.attach(lambda: temps.append(atoms.get_temperature()), interval=1)
    dyn.run(120)
    assert temps[0] == 0.0
    assert 450 < np.mean(temps[40:]) < 750  # 0 K → 600 K; 6 atoms: ±35 K statistical error on this mean


def test_berendsen_npt_moves_the_volume_the_way_the_pressure_says():
    from ase import units
    from ase.md.nptberendsen import NPTBerendsen

    atoms, _ = water2()
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    pressure = -atoms.get_stress()[:3].mean()  # static pressure (no kinetic part at T = 0)
    v0 = atoms.get_volume()
    dyn = NPTBerendsen(atoms, timestep=0.5 * units.fs, temperature_K=1.0, pressure_au=0.0, taut=1e6 * units.fs,
                       taup=50 * units.fs, compressibility_au=1e-2 / units.bar)
    dyn.run(5)
    assert abs(pressure) > 1e-4
    assert np.sign(atoms.get_volume() - v0) == np.sign(pressure)  # P > target: expand; P < target: shrink


def test_bfgs_relaxes_bonds_to_their_rest_length():
    from ase.optimize import BFGS

    model = FixedChargeModel([0.0] * 3, [(0, 1, 40.0, 0.96), (0, 2, 40.0, 0.96), (1, 2, 10.0, 1.52)])
    atoms = Atoms("OH2", positions=[[0, 0, 0], [1.1, 0.1, 0], [-0.2, 0.9, 0.1]])
    atoms.calc = LESCalculator(model, dtype=torch.float64)
    assert BFGS(atoms, logfile=None).run(fmax=1e-5, steps=200)
    d = atoms.get_all_distances()
    np.testing.assert_allclose([d[0, 1], d[0, 2], d[1, 2]], [0.96, 0.96, 1.52], atol=1e-5)
