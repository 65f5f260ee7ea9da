"""Constant-potential dynamics: coupling sum vs the core Ewald energy, Hellmann–Feynman forces vs finite
differences of the conserved energy Ω, NVE conservation, ε∞ scaling, ASE and i-PI adapters."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.constraints import FixAtoms
from ase.md.verlet import VelocityVerlet

from lesmd.electrode import ElectrodeCalculator, ElectrodePotential, config_from_dict
from lesmd.electrode.electrostatics import Electrostatics
from lesmd.electrode.geometry import au100_capacitor
from lesmd.les.ewald import coulomb_energy
from lesmd.models.analytic import FixedChargeModel

BOX = (12.520032, 12.520032, 44.346687)
AU_NUMBERS, AU_POSITIONS, CELL = au100_capacitor(repeats=3, box=BOX)
N_EL = len(AU_NUMBERS)  # 72: 2 layers of 18 atoms per electrode
IONS = np.array([[2.0, 3.0, 16.0], [3.2, 4.1, 17.1], [8.0, 9.5, 24.0], [9.0, 8.2, 25.2]])
ION_NUMBERS = np.array([11, 17, 11, 17])
MODEL_ARGS = dict(charges=[0.5, -0.5, 0.5, -0.5], bonds=[(0, 1, 10.0, 1.965), (2, 3, 10.0, 1.972)])
LJ = {"cutoff": 6.0, "Au": {"epsilon": 0.02, "sigma": 2.9}, "Na": {"epsilon": 0.01, "sigma": 2.4},
      "Cl": {"epsilon": 0.01, "sigma": 3.6}}


def _config(boundary, solver="matrix", **extra):
    return config_from_dict({
        "boundary": boundary, "solver": solver, "cg_tolerance": 1e-11, "lennard_jones": LJ,
        "electrode": [{"name": "bottom", "indices": f"0:{N_EL // 2}", "potential": -0.5},
                      {"name": "top", "indices": f"{N_EL // 2}:{N_EL}", "potential": 0.5}], **extra})


def _model(boundary):
    return FixedChargeModel(coulomb=boundary == "finite_field", **MODEL_ARGS)  # slab: no ion–ion Coulomb


NUMBERS = np.concatenate([AU_NUMBERS, ION_NUMBERS])
POSITIONS = np.vstack([AU_POSITIONS, IONS])


@pytest.mark.parametrize("boundary", ["slab", "finite_field"])
@pytest.mark.parametrize("ion_width", [0.0, 1.0 / math.sqrt(2.0)])
def test_coupling_potential_equals_cross_term_of_core_ewald_energy(boundary, ion_width):
    rng = np.random.default_rng(1)
    q, p = torch.tensor(rng.normal(size=N_EL) * 0.1), torch.tensor([0.5, -0.5, 0.7, -0.2], dtype=torch.float64)
    pe, pl, box = torch.tensor(AU_POSITIONS), torch.tensor(IONS), torch.tensor(CELL)
    es = Electrostatics(boundary, 1e-8)
    widths_el = torch.full((N_EL,), 1.0 / (math.sqrt(2.0) * 1.979), dtype=torch.float64)
    phi = es.coupling_potential(pe, pl, p, box, widths_el, ion_width)
    widths = torch.cat([widths_el, torch.full((4,), ion_width, dtype=torch.float64)])
    positions = torch.cat([pe, pl])

    def energy(x):  # the core's Ewald energy (+ the EW3DC dipole term for the slab)
        e = coulomb_energy(x, positions, es.cell(box), True, widths, accuracy=1e-10)
        if boundary == "slab":
            e = e + 0.5 * float(es._dipole_prefactor(box)) * torch.dot(x, positions[:, 2]) ** 2
        return e

    zeros_el, zeros_ly = torch.zeros(N_EL, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    cross = energy(torch.cat([q, p])) - energy(torch.cat([q, zeros_ly])) - energy(torch.cat([zeros_el, p]))
    assert abs(float(cross - q @ phi)) < 1e-7 * abs(float(cross))


def _energy(potential, positions):
    return float(potential.compute(NUMBERS, positions, CELL, None, ["energy"])["energy"])


@pytest.mark.parametrize("boundary, solver", [("slab", "matrix"), ("finite_field", "matrix"), ("slab", "cg"),
                                              ("finite_field", "cg")])
def test_forces_equal_finite_differences_of_conserved_energy(boundary, solver):
    potential = ElectrodePotential(_model(boundary), _config(boundary, solver))
    out = potential.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    checks = [(N_EL, d) for d in range(3)] + [(N_EL + 3, 2)]
    checks += [(5, 2), (N_EL - 3, 0)] if solver == "cg" else [(N_EL + 1, 0)]  # electrode atoms move only with CG
    h = 1e-4
    for atom, d in checks:
        plus, minus = POSITIONS.copy(), POSITIONS.copy()
        plus[atom, d] += h
        minus[atom, d] -= h
        numeric = -(_energy(potential, plus) - _energy(potential, minus)) / (2 * h)
        assert abs(out["forces"][atom, d] - numeric) < 2e-6 + 1e-5 * abs(numeric), (atom, d)
    if solver == "matrix":
        assert np.all(out["forces"][:N_EL] == 0.0)  # frozen electrodes
    # the electrode charges respond to the ions (Hellmann–Feynman is not trivially satisfied)
    assert np.abs(out["electrode_charges"]).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("boundary", ["slab", "finite_field"])
def test_nve_conserves_the_constant_potential_energy(boundary):
    atoms = Atoms(numbers=NUMBERS, positions=POSITIONS, cell=CELL, pbc=[True, True, boundary == "finite_field"])
    atoms.set_constraint(FixAtoms(indices=range(N_EL)))
    atoms.calc = ElectrodeCalculator(_config(boundary), model=_model(boundary))
    rng = np.random.default_rng(7)
    velocities = rng.normal(size=(len(atoms), 3)) * np.sqrt(600 * units.kB / atoms.get_masses())[:, None]
    velocities[:N_EL] = 0.0
    atoms.set_velocities(velocities)
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    totals, kinetic, charges = [], [], []

    def record():
        totals.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())
        charges.append(atoms.calc.results["electrode_total_charges"][1])

    record()
    dyn.attach(record, interval=1)
    dyn.run(100)
    totals = np.asarray(totals)
    drift = np.abs(totals - totals[0]).max()
    assert drift <= 1e-4 * abs(totals[0])
    assert drift <= 1e-3 * np.mean(kinetic)  # also small on the scale of the motion
    assert np.ptp(charges) > 1e-4  # the electrode charges really follow the ions


def test_epsilon_inf_scales_capacitance_and_reported_charges():
    plain = ElectrodePotential(_model("slab"), _config("slab"))
    scaled = ElectrodePotential(_model("slab"), _config("slab", epsilon_inf=2.25))
    a = plain.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "capacitance"])
    b = scaled.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "capacitance"])
    assert np.allclose(b["capacitance"], 2.25 * a["capacitance"], rtol=1e-12, atol=0)
    assert np.allclose(b["charges"][N_EL:], 1.5 * a["charges"][N_EL:], rtol=1e-14)


def test_ipi_driver_plugin_returns_atomic_units_and_electrode_extras(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from ase.io import write

    from lesmd.units import BOHR, HARTREE

    spec = importlib.util.spec_from_file_location("drv", Path(__file__).resolve().parents[1] / "drivers/electrode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__DRIVER_CLASS__ == "ElectrodeDriver"
    write(tmp_path / "init.xyz", Atoms(numbers=NUMBERS, positions=POSITIONS, cell=CELL, pbc=True))
    config = tmp_path / "electrode.toml"
    config.write_text('boundary = "finite_field"\n[[electrode]]\nindices = "0:36"\npotential = -0.5\n'
                      '[[electrode]]\nindices = "36:72"\npotential = 0.5\n')
    model = tmp_path / "model.pt"
    driver = module.ElectrodeDriver.__new__(module.ElectrodeDriver)
    driver.template, driver.config, driver.model, driver.charge, driver.dtype = (
        str(tmp_path / "init.xyz"), str(config), model, 0.0, None)
    from lesmd.potential import LESPotential

    module.LESPotential = lambda *args, **kwargs: LESPotential(FixedChargeModel(coulomb=True, **MODEL_ARGS))
    driver.check_parameters()
    energy, forces, virial, extras = driver.compute_structure(CELL.T / BOHR, POSITIONS / BOHR)
    ref = ElectrodePotential(FixedChargeModel(coulomb=True, **MODEL_ARGS), driver.potential.config)
    out = ref.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    assert abs(energy * HARTREE - out["energy"]) < 1e-10
    assert np.allclose(forces * HARTREE / BOHR, out["forces"], atol=1e-10)
    assert np.all(virial == 0.0)
    data = json.loads(extras)
    assert np.allclose(data["electrode_total_charges"], out["electrode_total_charges"], atol=1e-12)
    assert np.allclose(data["charges"], out["charges"], atol=1e-12)


def test_lesmd_serve_wraps_an_les_model_file_in_the_electrode_potential(tmp_path):
    from lesmd.ipi import build_potential
    from lesmd.models.io import load_model, save_model
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(0)
    save_model(LESModel(MomentNetwork([1, 8], cutoff=4.0, hidden=(8,)), sigma=1.0), tmp_path / "m.pt")
    config = tmp_path / "electrode.toml"
    config.write_text('[[electrode]]\nindices = "0:36"\npotential = -0.5\n'
                      '[[electrode]]\nindices = "36:72"\npotential = 0.5\n')
    water = np.array([[3.0, 3.0, 20.0], [3.9, 3.0, 20.3], [2.7, 3.8, 20.5],
                      [8.0, 8.0, 24.0], [8.6, 8.7, 24.2], [8.4, 7.3, 24.5]])
    numbers, positions = np.concatenate([AU_NUMBERS, [8, 1, 1, 8, 1, 1]]), np.vstack([AU_POSITIONS, water])
    served = build_potential(str(tmp_path / "m.pt"), electrode=str(config))
    assert isinstance(served, ElectrodePotential)
    assert abs(served.electrolyte_width - 1.0 / math.sqrt(2.0)) < 1e-12  # the model's LES width σ/√2
    direct = ElectrodePotential(load_model(tmp_path / "m.pt"), config_from_dict({
        "electrode": [{"indices": "0:36", "potential": -0.5}, {"indices": "36:72", "potential": 0.5}]}))
    a = served.compute(numbers, positions, CELL, None, ["energy", "forces"])
    b = direct.compute(numbers, positions, CELL, None, ["energy", "forces"])
    assert abs(float(a["energy"]) - float(b["energy"])) < 1e-9
    assert np.abs(a["electrode_total_charges"] - b["electrode_total_charges"]).max() < 1e-12
    with pytest.raises(ValueError, match="external field"):
        build_potential(str(tmp_path / "m.pt"), electrode=str(config), efield="0,0,0.1")
    # forces include the latent-charge derivative terms ∂p/∂r (float64 model, finite differences of Ω)
    exact = ElectrodePotential(load_model(tmp_path / "m.pt", dtype=torch.float64), direct.config)
    forces = exact.compute(numbers, positions, CELL, None, ["energy", "forces"])["forces"]
    h = 1e-4
    for atom, d in [(N_EL, 0), (N_EL + 1, 2), (N_EL + 4, 1)]:
        plus, minus = positions.copy(), positions.copy()
        plus[atom, d] += h
        minus[atom, d] -= h
        e_plus = float(exact.compute(numbers, plus, CELL, None, ["energy"])["energy"])
        e_minus = float(exact.compute(numbers, minus, CELL, None, ["energy"])["energy"])
        assert abs(forces[atom, d] + (e_plus - e_minus) / (2 * h)) < 1e-6 + 1e-5 * abs(forces[atom, d])
