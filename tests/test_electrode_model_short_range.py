"""Electrode–electrolyte short range from the model (``short_range = "model"``/"auto"): the LES model evaluated on
electrode + electrolyte atoms, its LES term on the electrolyte charges only (shifted over the electrolyte).

Checked against finite differences of the conserved energy Ω, against an independent assembly from
``LESModel.forward`` (a separate code path) plus the electrode electrostatics of fixed charges, and for the choice
between the model and Lennard-Jones."""

import math

import numpy as np
import pytest
import torch

from lesmd.electrode import ElectrodePotential, config_from_dict
from lesmd.electrode.geometry import au100_capacitor
from lesmd.les.charges import apply_total_charge
from lesmd.les.ewald import les_energy
from lesmd.models.analytic import FixedChargeModel
from lesmd.models.les import LESModel
from lesmd.models.shortrange import MomentNetwork, PairNetwork

pytestmark = pytest.mark.usefixtures("single_thread")

AU_NUMBERS, AU_POSITIONS, CELL = au100_capacitor(repeats=2, layers_z=(2.0, 4.086673, 13.0, 15.086673),
                                                 box=(8.34669, 8.34669, 17.5))
N_EL = len(AU_NUMBERS)  # 32: two electrodes of two 8-atom layers
_ANGLE = np.deg2rad(104.52)
_WATER = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [0.9572 * np.cos(_ANGLE), 0.9572 * np.sin(_ANGLE), 0.0]])
_TILT = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
WATER = np.vstack([_WATER + [2.0, 2.3, 6.6], _WATER @ _TILT + [6.0, 5.7, 10.4]])  # O 2.5 Å above / below Au
NUMBERS = np.concatenate([AU_NUMBERS, [8, 1, 1, 8, 1, 1]])
POSITIONS = np.vstack([AU_POSITIONS, WATER])
ELECTROLYTE = np.arange(N_EL, len(NUMBERS))
LJ = {"cutoff": 6.0, "Au": {"epsilon": 0.02, "sigma": 2.9}, "O": {"epsilon": 0.00674, "sigma": 3.166},
      "H": {"epsilon": 0.001, "sigma": 1.0}}


def _les_model(species=(1, 8, 79), seed=0):
    torch.manual_seed(seed)
    network = MomentNetwork(list(species), cutoff=4.0, n_channels=4, l_max=1, hidden=[8])
    return LESModel(network, charge_hidden=(8,), reference_energies={1: -0.3, 8: -2.0, 79: -1.5}).double()


def _config(boundary="slab", solver="matrix", **extra):
    return config_from_dict({
        "boundary": boundary, "solver": solver, "cg_tolerance": 1e-11,
        "electrode": [{"name": "bottom", "indices": f"0:{N_EL // 2}", "potential": -0.5},
                      {"name": "top", "indices": f"{N_EL // 2}:{N_EL}", "potential": 0.5}], **extra})


def _omega(potential, positions):
    return float(potential.compute(NUMBERS, positions, CELL, None, ["energy"])["energy"])


def _nearest_electrode_atoms():
    """The electrode atom closest to each water oxygen (their short-range coupling is largest)."""
    return [int(np.argmin(np.linalg.norm(AU_POSITIONS - POSITIONS[o], axis=1))) for o in (N_EL, N_EL + 3)]


GUARDS = dict(core_repulsion={"8-79": 2.7, "1-79": 2.2}, data_walls={"cutoffs": {"8-79": 2.7}, "length": 0.2},
              charge_bound={"width": 0.02, "ranges": {"1": [-0.01, 0.01], "8": [-0.01, 0.01], "79": [-0.01, 0.01]}})


def _model_of_kind(kind):
    torch.manual_seed(3)
    species = [1, 8, 79]
    if kind == "pair":  # no features: the separate charge descriptor feeds the charge head
        return LESModel(PairNetwork(species, cutoff=3.5), charge_descriptor={"cutoff": 3.0, "n_channels": 4}).double()
    return LESModel(MomentNetwork(species, cutoff=4.0, n_channels=4, l_max=1, hidden=[8]), charge_hidden=(8,),
                    use_les=kind != "no_les", **(GUARDS if kind == "guarded" else {})).double()


@pytest.mark.parametrize("kind", ["moment", "guarded", "pair", "no_les"])
def test_short_range_and_raw_charges_reproduce_forward_energy_sr_and_charges(kind):
    """LESModel.short_range_and_raw_charges: Σ atomic = forward's E_sr; raw shifted to Q = forward's charges."""
    model = _model_of_kind(kind)
    numbers, positions, cell = torch.tensor(NUMBERS), torch.tensor(POSITIONS), torch.tensor(CELL)
    pbc = torch.tensor([True, True, False])
    with torch.no_grad():
        atomic, raw = model.short_range_and_raw_charges(numbers, positions, cell, pbc)
        out = model(numbers, positions, cell, pbc, 0.3)
    assert atomic.shape == raw.shape == (len(NUMBERS),)
    assert abs(float(atomic.sum() - out["energy_sr"])) < 1e-12 * max(1.0, abs(float(out["energy_sr"])))
    if kind == "no_les":
        assert torch.all(raw == 0.0)
    else:
        assert torch.allclose(apply_total_charge(raw, 0.3), out["charges"], rtol=0.0, atol=1e-14)
    if kind == "guarded":  # same weights without guards: the repulsion and the charge bound really act here
        with torch.no_grad():
            bare_atomic, bare_raw = _model_of_kind("moment").short_range_and_raw_charges(numbers, positions, cell, pbc)
        assert float(atomic.sum() - bare_atomic.sum()) > 1e-3  # O–Au 2.5 Å < 2.7 Å: ZBL + wall, repulsive
        assert float(raw.abs().max()) < 0.03 < float(bare_raw.abs().max())


@pytest.mark.parametrize("boundary, solver", [("slab", "matrix"), ("finite_field", "matrix"), ("slab", "cg"),
                                              ("finite_field", "cg")])
def test_model_short_range_forces_equal_finite_differences_of_conserved_energy(boundary, solver):
    potential = ElectrodePotential(_les_model(), _config(boundary, solver, short_range="model"))
    out = potential.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    assert potential.short_range_source == "model"
    forces = out["forces"]
    electrode_atoms = _nearest_electrode_atoms()
    if solver == "matrix":  # frozen electrodes: no force at all
        assert np.all(forces[:N_EL] == 0.0)
    else:  # mobile electrodes feel the model's short range of the water next to them
        assert min(np.abs(forces[electrode_atoms]).max(axis=1)) > 1e-3
    checks = [(N_EL, 2), (N_EL + 1, 0), (N_EL + 3, 2), (N_EL + 5, 1)]
    checks += [(a, d) for a in electrode_atoms for d in (0, 2)] if solver == "cg" else []
    h = 1e-4
    scale = np.abs(forces).max()
    for atom, d in checks:
        plus, minus = POSITIONS.copy(), POSITIONS.copy()
        plus[atom, d] += h
        minus[atom, d] -= h
        numeric = -(_omega(potential, plus) - _omega(potential, minus)) / (2 * h)
        assert abs(forces[atom, d] - numeric) < 1e-6 * scale, (atom, d, forces[atom, d], numeric)


@pytest.mark.parametrize("boundary", ["slab", "finite_field"])
def test_model_short_range_energy_is_model_on_all_atoms_plus_les_of_shifted_electrolyte_charges(boundary):
    """Ω = E_sr(model, all atoms) + E_LES(p on the electrolyte) + Ω_electrodes(p), with p from LESModel.forward.

    p: the model's charges of the water atoms in the presence of the metal, shifted over the water only. The
    assembly would differ if the LES term ran on the electrode atoms' latent charges, if the shift ran over all
    atoms, or if the electrode–electrolyte short range were missing (the margins below show that it would)."""
    model = _les_model()
    total_charge = 0.2  # electrolyte charge (e): the shift is then not zero even in mean
    potential = ElectrodePotential(model, _config(boundary, short_range="model"), total_charge=total_charge)
    out = potential.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])

    pbc = torch.tensor([True, True, boundary == "finite_field"])
    numbers_t, positions_t, cell_t = torch.tensor(NUMBERS), torch.tensor(POSITIONS), torch.tensor(CELL)
    with torch.no_grad():
        everything = model(numbers_t, positions_t, cell_t, pbc, total_charge)
        water = model(numbers_t[ELECTROLYTE], positions_t[ELECTROLYTE], cell_t, pbc, total_charge)
        metal = model(numbers_t[:N_EL], positions_t[:N_EL], cell_t, pbc, 0.0)
    q_water = everything["charges"][ELECTROLYTE]  # shifted over all atoms by a common constant
    p = q_water - q_water.mean() + total_charge / len(ELECTROLYTE)
    e_les = les_energy(p, positions_t[ELECTROLYTE], cell_t, pbc, model.sigma)
    charges = np.zeros(len(NUMBERS))
    charges[ELECTROLYTE] = p.numpy()
    fixed = ElectrodePotential(FixedChargeModel(charges[ELECTROLYTE], sigma=model.sigma), _config(boundary),
                               total_charge=total_charge)
    electrodes = fixed.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])
    expected = float(everything["energy_sr"]) + float(e_les) + float(electrodes["energy"])

    assert abs(float(out["energy"]) - expected) < 1e-9 * abs(expected)
    assert np.allclose(out["charges"][ELECTROLYTE], p.numpy(), rtol=0.0, atol=1e-12)
    assert np.allclose(out["electrode_charges"], electrodes["electrode_charges"], rtol=0.0, atol=1e-12)
    assert abs(float(out["energy_model"]) - float(everything["energy_sr"]) - float(e_les)) < 1e-10
    # the alternatives the check must exclude differ by far more than its tolerance
    cross_sr = float(everything["energy_sr"] - water["energy_sr"] - metal["energy_sr"])
    assert abs(cross_sr) > 1e-4  # the water–metal short range is really there
    assert float(torch.abs(p - water["charges"]).max()) > 1e-4  # the metal changes the water charges
    assert abs(float(q_water.sum()) - total_charge) > 1e-3  # a shift over all atoms would miss Σp = Q
    les_all = float(everything["energy_lr"])  # LES on every latent charge, electrode atoms included
    assert abs(les_all - float(e_les)) > 1e-3


def test_moving_water_towards_metal_changes_omega_by_model_short_range_and_electrostatics():
    """Ω(r') − Ω(r) for an O atom pushed 0.4 Å towards the metal = Δ[E_sr(all) + E_LES(p)] + ΔΩ_electrodes."""
    model = _les_model()
    potential = ElectrodePotential(model, _config(short_range="model"))
    moved = POSITIONS.copy()
    moved[N_EL, 2] -= 0.4

    def pieces(positions):
        pbc = torch.tensor([True, True, False])
        with torch.no_grad():
            out = model(torch.tensor(NUMBERS), torch.tensor(positions), torch.tensor(CELL), pbc)
        q = out["charges"][ELECTROLYTE]
        p = q - q.mean()
        e_les = les_energy(p, torch.tensor(positions[ELECTROLYTE]), torch.tensor(CELL), pbc, model.sigma)
        fixed = ElectrodePotential(FixedChargeModel(p.numpy(), sigma=model.sigma), _config())
        return float(out["energy_sr"]), float(e_les), _omega(fixed, positions)

    before, after = pieces(POSITIONS), pieces(moved)
    change = _omega(potential, moved) - _omega(potential, POSITIONS)
    expected = sum(a - b for a, b in zip(after, before, strict=True))
    assert abs(after[0] - before[0]) > 1e-3  # the short range does change
    assert abs(change - expected) < 1e-9 * max(1.0, abs(change))


def test_auto_uses_the_model_when_it_knows_the_electrode_element():
    model = _les_model()
    auto = ElectrodePotential(model, _config(solver="cg"))
    explicit = ElectrodePotential(model, _config(solver="cg", short_range="model"))
    lj = ElectrodePotential(model, _config(solver="cg", short_range="lennard_jones", lennard_jones=LJ))
    out_auto = auto.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    out_model = explicit.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    out_lj = lj.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    assert auto.short_range_source == "model" and lj.short_range_source == "lennard_jones"
    assert float(out_auto["energy"]) == float(out_model["energy"])
    assert np.array_equal(out_auto["forces"], out_model["forces"])
    assert abs(float(out_auto["energy"]) - float(out_lj["energy"])) > 1e-3
    assert np.all(out_lj["forces"][:N_EL] != 0.0)  # LJ path: the Au atoms feel the LJ water
    with pytest.warns(UserWarning, match=r"\[lennard_jones\] table is ignored"):
        ignored = ElectrodePotential(model, _config(solver="cg", lennard_jones=LJ))
        assert float(ignored.compute(NUMBERS, POSITIONS, CELL, None)["energy"]) == float(out_model["energy"])


def test_auto_with_a_model_without_the_electrode_element_gives_the_lennard_jones_result():
    """A water-only model (H, O): "auto" falls back to the model on the water + Lennard-Jones, bit for bit."""
    model = _les_model(species=(1, 8))
    auto = ElectrodePotential(model, _config(lennard_jones=LJ))
    lj = ElectrodePotential(model, _config(short_range="lennard_jones", lennard_jones=LJ))
    bare = ElectrodePotential(model, _config())  # no table: no electrode–electrolyte short range
    out_auto = auto.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    out_lj = lj.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    out_bare = bare.compute(NUMBERS, POSITIONS, CELL, None, ["energy", "forces"])
    assert auto.short_range_source == "lennard_jones" and bare.short_range_source == "lennard_jones"
    assert float(out_auto["energy"]) == float(out_lj["energy"])
    assert np.array_equal(out_auto["forces"], out_lj["forces"])
    assert abs(float(out_auto["energy"]) - float(out_bare["energy"])) > 1e-4  # the LJ term is on
    with torch.no_grad():  # the model ran on the water alone
        water = model(torch.tensor(NUMBERS[ELECTROLYTE]), torch.tensor(POSITIONS[ELECTROLYTE]),
                      torch.tensor(CELL), torch.tensor([True, True, False]))
    assert abs(float(out_auto["energy_model"]) - float(water["energy"])) < 1e-12 * abs(float(water["energy"]))


def test_analytic_model_without_short_range_method_keeps_lennard_jones():
    charges = [-0.8, 0.4, 0.4, -0.8, 0.4, 0.4]
    potential = ElectrodePotential(FixedChargeModel(charges), _config(lennard_jones=LJ))
    potential.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])
    assert potential.short_range_source == "lennard_jones"  # it lists Au among its species, but cannot run it
    with pytest.raises(ValueError, match="short_range = 'model'.*cannot evaluate the electrode atoms"):
        ElectrodePotential(FixedChargeModel(charges), _config(short_range="model")).compute(
            NUMBERS, POSITIONS, CELL, None, ["energy"])


def test_model_short_range_with_a_model_lacking_the_electrode_element_raises_naming_it():
    potential = ElectrodePotential(_les_model(species=(1, 8)), _config(short_range="model"))
    with pytest.raises(ValueError, match=r"does not know the electrode element Au \(it knows H, O\)") as err:
        potential.compute(NUMBERS, POSITIONS, CELL, None, ["energy"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("extra, message", [
    ({"short_range": "ml"}, "short_range must be one of"),
    ({"short_range": "lennard_jones"}, r"needs a \[lennard_jones\] table"),
    ({"short_range": "model", "lennard_jones": LJ}, "remove the table"),
])
def test_inconsistent_short_range_settings_raise(extra, message):
    with pytest.raises(ValueError, match=message) as err:
        _config(**extra)
    assert "\n" not in str(err.value)


def test_model_short_range_without_electrolyte_is_the_metal_energy_of_the_model():
    """Vacuum electrodes with the model's short range: Ω = E_sr(model, metal) + the capacitor's Ω."""
    model = _les_model()
    numbers, positions = NUMBERS[:N_EL], POSITIONS[:N_EL]
    out = ElectrodePotential(model, _config(short_range="model")).compute(numbers, positions, CELL, None)
    vacuum = ElectrodePotential(None, _config()).compute(numbers, positions, CELL, None)
    with torch.no_grad():
        metal = model(torch.tensor(numbers), torch.tensor(positions), torch.tensor(CELL),
                      torch.tensor([True, True, False]))
    assert math.isclose(float(out["energy"]), float(metal["energy_sr"]) + float(vacuum["energy"]), rel_tol=1e-12)
