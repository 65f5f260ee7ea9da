"""Point-charge and mixed-width Ewald sums against analytic lattice constants and brute-force image sums."""

import math

import pytest
import torch

from lesmd.les.ewald import coulomb_energy
from lesmd.les.potentials import gaussian_coulomb
from lesmd.units import COULOMB

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


ROCK_SALT = 1.747564595
CESIUM_CHLORIDE = 1.762674773


def _madelung(charges, positions, cell, nearest, n_pairs, **kwargs) -> float:
    energy = coulomb_energy(charges, positions, cell, True, 0.0, accuracy=1e-8, **kwargs)
    return -float(energy) * nearest / (COULOMB * n_pairs)


def _rock_salt_cubic(a: float):
    fcc = torch.tensor([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], dtype=F64)
    positions = torch.cat([fcc, fcc + torch.tensor([0.5, 0, 0], dtype=F64)]) * a
    charges = torch.tensor([1.0] * 4 + [-1.0] * 4, dtype=F64)
    return charges, positions, torch.eye(3, dtype=F64) * a


def _rock_salt_primitive(a: float):
    cell = torch.tensor([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], dtype=F64) * a
    positions = torch.tensor([[0, 0, 0], [0.5, 0, 0]], dtype=F64) * a
    return torch.tensor([1.0, -1.0], dtype=F64), positions, cell


def _cscl_cubic(a: float):
    positions = torch.tensor([[0, 0, 0], [0.5, 0.5, 0.5]], dtype=F64) * a
    return torch.tensor([1.0, -1.0], dtype=F64), positions, torch.eye(3, dtype=F64) * a


def _cscl_skewed(a: float):
    """The same simple-cubic crystal in a triclinic (sheared, non-reduced) primitive cell."""
    cell = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=F64) * a
    positions = torch.tensor([[0, 0, 0], [0.5, 0.5, 0.5]], dtype=F64) * a
    return torch.tensor([1.0, -1.0], dtype=F64), positions, cell


@pytest.mark.parametrize("build", [_rock_salt_cubic, _rock_salt_primitive])
@pytest.mark.parametrize("a", [5.64, 3.0])
def test_rock_salt_madelung_constant(build, a):
    charges, positions, cell = build(a)
    n_pairs = charges.numel() // 2
    assert _madelung(charges, positions, cell, a / 2, n_pairs) == pytest.approx(ROCK_SALT, rel=1e-6)


@pytest.mark.parametrize("build", [_cscl_cubic, _cscl_skewed])
def test_cesium_chloride_madelung_constant(build):
    a = 4.12
    charges, positions, cell = build(a)
    nearest = a * math.sqrt(3) / 2
    assert _madelung(charges, positions, cell, nearest, 1) == pytest.approx(CESIUM_CHLORIDE, rel=1e-6)


def test_madelung_constant_is_independent_of_rigid_rotation():
    charges, positions, cell = _rock_salt_primitive(5.64)
    angle = 0.7
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]], dtype=F64
    )
    value = _madelung(charges, positions @ rotation.T, cell @ rotation.T, 5.64 / 2, 1)
    assert value == pytest.approx(ROCK_SALT, rel=1e-6)


def _centrosymmetric_cell():
    """Neutral, dipole-free cell of four charges with mixed widths (0 = point charge) in a triclinic box."""
    cell = torch.tensor([[6.0, 0.0, 0.0], [1.3, 5.5, 0.0], [-0.8, 1.1, 6.4]], dtype=F64)
    center = torch.tensor([3.0, 3.0, 3.0], dtype=F64)
    u1, u2 = torch.tensor([1.2, 0.3, -0.5], dtype=F64), torch.tensor([-0.4, 1.5, 0.9], dtype=F64)
    positions = torch.stack([center + u1, center - u1, center + u2, center - u2])
    charges = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)
    widths = torch.tensor([0.0, 0.3, 0.8, 0.5], dtype=F64)
    return charges, positions, cell, widths


def test_mixed_width_ewald_sum_equals_brute_force_sum_over_images():
    """½ Σ_{i,j,n}' k_e q_i q_j erf(r/√(2(s_i²+s_j²)))/r over a 100 Å sphere of cells (dipole-free cell)."""
    charges, positions, cell, widths = _centrosymmetric_cell()
    ewald = float(coulomb_energy(charges, positions, cell, True, widths, accuracy=1e-10))
    span = torch.arange(-20, 21)
    shifts = torch.cartesian_prod(span, span, span).to(F64) @ cell
    shifts = shifts[torch.linalg.norm(shifts, dim=1) <= 100.0]
    vectors = positions[None, None, :, :] + shifts[:, None, None, :] - positions[None, :, None, :]
    r = torch.linalg.norm(vectors, dim=-1)
    self_pair = r < 1e-9
    kernel = gaussian_coulomb(torch.where(self_pair, 1.0, r), (widths[:, None] ** 2 + widths[None, :] ** 2))
    kernel = torch.where(self_pair, 0.0, kernel)
    brute = 0.5 * COULOMB * float((charges[:, None] * charges[None, :] * kernel).sum())
    assert ewald == pytest.approx(brute, abs=1e-5)


def test_ewald_sum_is_independent_of_the_splitting_width():
    """Same energy with and without a real-space part (a = 0 vs a > 0) for broad Gaussians."""
    from lesmd.les import ewald
    from lesmd.les.tuning import _parameters, erfcinv

    charges, positions, cell, _ = _centrosymmetric_cell()
    charges = torch.cat([charges, torch.tensor([0.7], dtype=F64)])  # charged: the background term matters
    positions = torch.cat([positions, torch.tensor([[1.0, 2.0, 0.5]], dtype=F64)])
    widths2 = torch.full((5,), 0.6**2, dtype=F64)
    x = erfcinv(1e-12)
    energies = []
    for target in (0.5, 2.0, 3.0):  # pure reciprocal, then two real-space splits
        params = _parameters(0.6**2, 0.6**2, target, x, "direct")
        energies.append(float(ewald._periodic_energy(charges, positions, cell, widths2, params)))
    assert energies[0] == pytest.approx(energies[1], abs=1e-9)
    assert energies[0] == pytest.approx(energies[2], abs=1e-9)
