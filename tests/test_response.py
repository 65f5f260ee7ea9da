"""Electrical response from the evaluate engine: dipoles, Born effective charges, field enthalpy, stress."""

import math

import numpy as np
import pytest
import torch

from lesmd.evaluate import evaluate
from lesmd.models.analytic import CoordinationChargeModel, FixedChargeModel

WATER = torch.tensor([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [-0.2400, 0.9266, 0.0]], dtype=torch.float64)
OPEN_CELL = torch.zeros(3, 3, dtype=torch.float64)
NO_PBC = torch.tensor([False, False, False])


def _dimers() -> tuple[torch.Tensor, torch.Tensor]:
    """Two water molecules and an NH3-like group: 7 atoms, open boundaries."""
    pos = torch.cat([WATER, WATER + torch.tensor([2.8, 0.3, 0.4], dtype=torch.float64),
                     torch.tensor([[0.5, -2.0, 1.0]], dtype=torch.float64)])
    numbers = torch.tensor([8, 1, 1, 8, 1, 1, 7])
    return numbers, pos


def _coordination_model() -> CoordinationChargeModel:
    return CoordinationChargeModel(a={1: 0.4, 7: -0.3, 8: -0.8}, b={1: 0.15, 7: 0.05, 8: -0.2}, length=1.3)


def test_fixed_charges_have_bec_equal_charge_times_identity():
    q = [-0.8, 0.4, 0.4]
    model = FixedChargeModel(q, bonds=[(0, 1, 20.0, 0.96), (0, 2, 20.0, 0.96)], coulomb=True)
    out = evaluate(model, torch.tensor([8, 1, 1]), WATER, OPEN_CELL, NO_PBC, properties=["born_effective_charges"])
    expected = torch.tensor(q, dtype=torch.float64)[:, None, None] * torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(out["born_effective_charges"], expected, rtol=0, atol=1e-12)


def test_bec_equals_finite_difference_of_dipole():
    numbers, pos = _dimers()
    model = _coordination_model()
    bec = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["born_effective_charges"])[
        "born_effective_charges"]
    assert bec.abs().max() > 0.1
    h = 1e-5
    fd = torch.zeros_like(bec)
    for i in range(len(numbers)):
        for beta in range(3):
            dipoles = []
            for sign in (1, -1):
                p = pos.clone()
                p[i, beta] += sign * h
                dipoles.append(evaluate(model, numbers, p, OPEN_CELL, NO_PBC, properties=["dipole"])["dipole"])
            fd[i, :, beta] = (dipoles[0] - dipoles[1]) / (2 * h)
    torch.testing.assert_close(bec, fd, rtol=1e-6, atol=1e-8)
    # the geometry dependence makes the tensor differ from q·I
    charges = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["charges"])["charges"]
    assert (bec - charges[:, None, None] * torch.eye(3, dtype=torch.float64)).abs().max() > 1e-2


def test_acoustic_sum_rule_for_neutral_system():
    numbers, pos = _dimers()
    bec = evaluate(_coordination_model(), numbers, pos, OPEN_CELL, NO_PBC,
                   properties=["born_effective_charges"])["born_effective_charges"]
    torch.testing.assert_close(bec.sum(0), torch.zeros(3, 3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_acoustic_sum_rule_for_charged_system_gives_total_charge():
    numbers, pos = _dimers()
    bec = evaluate(_coordination_model(), numbers, pos, OPEN_CELL, NO_PBC, total_charge=1.0,
                   properties=["born_effective_charges"])["born_effective_charges"]
    torch.testing.assert_close(bec.sum(0), torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)


def test_field_forces_equal_bec_transpose_times_field():
    numbers, pos = _dimers()
    model = _coordination_model()
    field = torch.tensor([0.03, -0.05, 0.08], dtype=torch.float64)
    zero = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["forces", "born_effective_charges"])
    on = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["forces"], efield=field)
    expected = torch.einsum("iab,a->ib", zero["born_effective_charges"], field)
    torch.testing.assert_close(on["forces"] - zero["forces"], expected, rtol=1e-6, atol=1e-10)
    # the enthalpy is E0 − E·M and E0 does not depend on the field
    torch.testing.assert_close(on["energy"], zero["energy"] - field @ zero["dipole"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(on["energy_zero_field"], zero["energy"], rtol=1e-12, atol=1e-12)


def test_epsilon_inf_scales_charges_dipole_and_bec_by_its_square_root():
    numbers, pos = _dimers()
    model = _coordination_model()
    props = ["charges", "dipole", "born_effective_charges"]
    one = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=props)
    scaled = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=props, epsilon_inf=1.78)
    for key in props:
        torch.testing.assert_close(scaled[key], math.sqrt(1.78) * one[key], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(scaled["energy"], one["energy"])


def test_dipole_of_fixed_charges_is_sum_of_charge_times_position():
    q = torch.tensor([-0.8, 0.4, 0.4], dtype=torch.float64)
    out = evaluate(FixedChargeModel(q.tolist()), torch.tensor([8, 1, 1]), WATER, OPEN_CELL, NO_PBC,
                   properties=["dipole"])
    torch.testing.assert_close(out["dipole"], (q[:, None] * WATER).sum(0))


def _periodic_fixed_charge_system():
    rng = np.random.default_rng(7)
    cell = torch.tensor([[6.0, 0.0, 0.0], [0.7, 5.5, 0.0], [-0.4, 0.3, 6.2]], dtype=torch.float64)
    frac = torch.tensor(rng.random((6, 3)), dtype=torch.float64)
    pos = frac @ cell
    q = [0.6, -0.6, 0.3, -0.3, 0.5, -0.5]
    bonds = [(0, 1, 5.0, 1.8), (2, 3, 4.0, 2.0), (4, 5, 3.0, 1.5), (1, 4, 2.0, 2.5)]
    return FixedChargeModel(q, bonds=bonds, coulomb=True), torch.tensor([11, 17, 1, 9, 3, 8]), pos, cell


def test_stress_equals_finite_difference_of_strained_cell():
    model, numbers, pos, cell = _periodic_fixed_charge_system()
    pbc = torch.tensor([True, True, True])
    stress = evaluate(model, numbers, pos, cell, pbc, properties=["stress"])["stress"]
    volume = torch.linalg.det(cell).abs()
    h = 1e-6
    fd = torch.zeros(3, 3, dtype=torch.float64)
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                eps = torch.zeros(3, 3, dtype=torch.float64)
                eps[a, b] += 0.5 * sign * h
                eps[b, a] += 0.5 * sign * h
                deform = torch.eye(3, dtype=torch.float64) + eps
                energies.append(evaluate(model, numbers, pos @ deform, cell @ deform, pbc)["energy"])
            fd[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    assert stress.abs().max() > 1e-4
    torch.testing.assert_close(stress, fd, rtol=1e-6, atol=1e-9)


def test_periodic_forces_equal_finite_differences():
    model, numbers, pos, cell = _periodic_fixed_charge_system()
    pbc = torch.tensor([True, True, True])
    forces = evaluate(model, numbers, pos, cell, pbc, properties=["forces"])["forces"]
    h = 1e-5
    for i, beta in [(0, 0), (1, 2), (4, 1), (5, 0)]:
        energies = []
        for sign in (1, -1):
            p = pos.clone()
            p[i, beta] += sign * h
            energies.append(evaluate(model, numbers, p, cell, pbc)["energy"])
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert float(forces[i, beta]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("positions", "cell", "message"),
    [
        (WATER.clone().index_put_((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("nan"),
                                                                                       dtype=torch.float64)),
         torch.eye(3, dtype=torch.float64) * 10, "NaN"),
        (WATER, torch.tensor([[5.0, 0, 0], [10.0, 0, 0], [0, 0, 5.0]], dtype=torch.float64), "singular cell"),
        (WATER[:2], torch.eye(3, dtype=torch.float64) * 10, "positions must have shape"),
    ],
)
def test_bad_input_gives_clear_error(positions, cell, message):
    model = FixedChargeModel([-0.8, 0.4, 0.4])
    with pytest.raises(ValueError, match=message):
        evaluate(model, torch.tensor([8, 1, 1]), positions, cell, torch.tensor([True, True, True]))


def test_polarization_needs_periodic_cell():
    with pytest.raises(ValueError, match="polarization needs a 3-D periodic cell"):
        evaluate(FixedChargeModel([-0.8, 0.4, 0.4]), torch.tensor([8, 1, 1]), WATER, OPEN_CELL, NO_PBC,
                 properties=["polarization"])


def test_polarization_is_dipole_over_volume():
    model, numbers, pos, cell = _periodic_fixed_charge_system()
    out = evaluate(model, numbers, pos, cell, torch.tensor([True] * 3), properties=["dipole", "polarization"])
    torch.testing.assert_close(out["polarization"], out["dipole"] / torch.linalg.det(cell).abs())


def _random_les_model():
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(3)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8]), charge_hidden=(8,))
    with torch.no_grad():  # make the charges clearly geometry dependent
        for p in model.parameters():
            p.mul_(3.0)
    return model.double()


def _two_waters_in_box(length: float, shift: torch.Tensor):
    pos = torch.cat([WATER, WATER + torch.tensor([2.7, 0.4, 0.3], dtype=torch.float64)]) + shift
    return torch.tensor([8, 1, 1, 8, 1, 1]), pos, torch.eye(3, dtype=torch.float64) * length


def test_periodic_bec_equals_exact_open_boundary_jacobian_and_ignores_wrapping():
    """Local (minimum-image) BECs in a large periodic box equal the exact Jacobian ∂(Σqr)/∂r of the isolated
    cluster, and do not change when the cluster is translated across the cell faces (atoms wrapped)."""
    model = _random_les_model()
    numbers, pos, cell = _two_waters_in_box(25.0, torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64))
    periodic = torch.tensor([True] * 3)
    open_bec = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["born_effective_charges"])[
        "born_effective_charges"]
    assert (open_bec - open_bec[:, :1, :1] * 0).abs().max() > 0.1
    charges = evaluate(model, numbers, pos, OPEN_CELL, NO_PBC, properties=["charges"])["charges"]
    assert (open_bec - charges[:, None, None] * torch.eye(3, dtype=torch.float64)).abs().max() > 1e-2
    periodic_bec = evaluate(model, numbers, pos, cell, periodic, properties=["born_effective_charges"])[
        "born_effective_charges"]
    torch.testing.assert_close(periodic_bec, open_bec, rtol=0, atol=1e-9)
    # translate so that the molecules straddle the faces, then wrap into the cell
    moved = pos + torch.tensor([19.5, 23.9, 24.2], dtype=torch.float64)
    wrapped = moved - torch.floor(moved / 25.0) * 25.0
    wrapped_bec = evaluate(model, numbers, wrapped, cell, periodic, properties=["born_effective_charges"])[
        "born_effective_charges"]
    torch.testing.assert_close(wrapped_bec, open_bec, rtol=0, atol=1e-9)


def test_periodic_field_forces_equal_bec_transpose_times_field_and_sum_to_zero():
    model = _random_les_model()
    numbers, pos, cell = _two_waters_in_box(7.0, torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64))
    periodic = torch.tensor([True] * 3)
    field = torch.tensor([0.05, -0.02, 0.1], dtype=torch.float64)
    zero = evaluate(model, numbers, pos, cell, periodic, properties=["forces", "born_effective_charges"])
    on = evaluate(model, numbers, pos, cell, periodic, properties=["forces"], efield=field)
    bec = zero["born_effective_charges"]
    torch.testing.assert_close(bec.sum(0), torch.zeros(3, 3, dtype=torch.float64), rtol=0, atol=1e-12)
    expected = torch.einsum("iab,a->ib", bec, field)
    torch.testing.assert_close(on["forces"] - zero["forces"], expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close((on["forces"] - zero["forces"]).sum(0), torch.zeros(3, dtype=torch.float64),
                               rtol=0, atol=1e-12)
