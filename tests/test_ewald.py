"""Smeared-Coulomb (LES) energy: open vs periodic agreement, derivatives, smoothness, input validation."""

import math

import pytest
import torch

from lesmd.les.ewald import coulomb_energy, les_energy
from lesmd.units import COULOMB

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


WIGNER_CUBIC = 2.837297479  # Madelung-like constant of a point charge + background in a cubic lattice


def _molecule(charged: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randn(6, 3, generator=gen, dtype=F64) * 1.2 + 5.0
    charges = torch.randn(6, generator=gen, dtype=F64)
    charges = charges - charges.mean() + (1.0 if charged else 0.0) / 6
    return charges, positions


def _random_cell_system(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[7.0, 0.0, 0.0], [1.3, 6.5, 0.0], [-0.8, 1.1, 7.4]], dtype=F64)
    frac = torch.rand(n, 3, generator=gen, dtype=F64)
    charges = torch.randn(n, generator=gen, dtype=F64)
    return charges - charges.mean(), frac @ cell, cell


def test_open_energy_is_pairwise_erf_coulomb():
    charges, positions = _molecule()
    expected = 0.0
    for i in range(6):
        for j in range(i + 1, 6):
            r = float(torch.linalg.norm(positions[i] - positions[j]))
            expected += COULOMB * float(charges[i] * charges[j]) * math.erf(r / math.sqrt(2.0)) / r
    assert float(les_energy(charges, positions, None, False)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("charged", [False, True])
def test_periodic_energy_converges_to_open_energy_as_box_grows(charged):
    """E_per = E_open − k_e Q² ξ/(2L) + (2π k_e/3V)(Q M2 − |D|²) + O(L⁻⁵) in a cubic box (Gaussians of width s)."""
    charges, positions = _molecule(charged)
    open_energy = float(les_energy(charges, positions, None, False))
    s2 = 0.5  # σ = 1 → each Gaussian has variance σ²/2
    total = float(charges.sum())
    dipole = (charges[:, None] * positions).sum(0)
    second_moment = float((charges * ((positions**2).sum(1) + 3 * s2)).sum())
    residuals = []
    for length in (20.0, 30.0, 45.0):
        cell = torch.eye(3, dtype=F64) * length
        energy = float(les_energy(charges, positions, cell, True, accuracy=1e-12))
        volume = length**3
        predicted = open_energy - COULOMB * total**2 * WIGNER_CUBIC / (2 * length)
        predicted += 2 * math.pi * COULOMB / (3 * volume) * (total * second_moment - float(dipole @ dipole))
        residuals.append(abs(energy - predicted))
        cubic_term = 2 * math.pi * COULOMB / (3 * volume) * (total * second_moment - float(dipole @ dipole))
    assert residuals[-1] < 1e-5
    assert abs(cubic_term) > 10 * residuals[-1]  # the L⁻³ term is needed to get there
    assert residuals[0] / residuals[-1] > (45.0 / 20.0) ** 4  # the leftover is higher order (L⁻⁵)


def test_float32_matches_float64():
    charges, positions, cell = _random_cell_system()
    e64 = les_energy(charges, positions, cell, True)
    e32 = les_energy(charges.float(), positions.float(), cell.float(), torch.tensor([True, True, True]))
    assert e32.dtype == torch.float32
    assert float(e32) == pytest.approx(float(e64), rel=1e-5, abs=1e-5)


def test_forces_equal_finite_differences():
    charges, positions, cell = _random_cell_system()
    positions = positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(les_energy(charges, positions, cell, True), positions)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 1), (7, 2)]:
        shift = torch.zeros_like(positions)
        shift[atom, axis] = h
        with torch.no_grad():
            plus = les_energy(charges, positions + shift, cell, True)
            minus = les_energy(charges, positions - shift, cell, True)
        fd = float(plus - minus) / (2 * h)
        assert float(grad[atom, axis]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def _strained_energy(charges, positions, cell, strain, **kwargs):
    deform = torch.eye(3, dtype=F64) + strain
    return les_energy(charges, positions @ deform, cell @ deform, True, **kwargs)


@pytest.mark.parametrize("sigma", [1.0, 0.4])
def test_stress_equals_finite_difference_of_strain(sigma):
    """ASE convention σ = (1/V) ∂E/∂ε with positions and cell strained by (I + ε)."""
    charges, positions, cell = _random_cell_system()
    strain = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    energy = _strained_energy(charges, positions, cell, strain, sigma=sigma)
    (grad,) = torch.autograd.grad(energy, strain)
    h = 1e-6
    for a, b in [(0, 0), (1, 1), (0, 1), (2, 0), (1, 2)]:
        step = torch.zeros(3, 3, dtype=F64)
        step[a, b] = h
        fd = (
            _strained_energy(charges, positions, cell, step, sigma=sigma)
            - _strained_energy(charges, positions, cell, -step, sigma=sigma)
        ) / (2 * h)
        assert float(grad[a, b]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_energy_is_quadratic_in_charges():
    charges, positions, cell = _random_cell_system()
    charges = charges.clone().requires_grad_(True)
    energy = les_energy(charges, positions, cell, True)
    (phi,) = torch.autograd.grad(energy, charges)
    assert float(energy.detach()) == pytest.approx(0.5 * float(phi @ charges.detach()), rel=1e-10)


@pytest.mark.slow
def test_energy_is_continuous_when_the_cell_is_scaled():
    """No k-vector cutoff jumps: scale the cell by 5 % in 1e-5 steps; every step changes E smoothly."""
    energies = _scan_isotropic_scaling(n_steps=5000, step=1e-5)
    first = energies[1:] - energies[:-1]
    second = first[1:] - first[:-1]
    # smooth: consecutive steps differ by O(step²); a cutoff jump would show as an isolated spike
    assert float(second.abs().max()) < 1e-3 * float(first.abs().min())


def _scan_isotropic_scaling(n_steps: int, step: float, accuracy: float = 1e-4) -> torch.Tensor:
    charges, positions, cell = _random_cell_system(n=8)
    with torch.no_grad():
        return torch.stack(
            [
                les_energy(charges, positions * (1 + i * step), cell * (1 + i * step), True, accuracy=accuracy)
                for i in range(n_steps + 1)
            ]
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positions": torch.full((2, 3), float("nan"), dtype=F64)}, "positions contain NaN"),
        ({"charges": torch.tensor([1.0, float("inf")], dtype=F64)}, "charges contain NaN"),
        ({"charges": torch.ones(3, dtype=F64)}, "charges must have shape"),
        ({"positions": torch.zeros(2, 2, dtype=F64)}, "positions must be a tensor of shape"),
        ({"cell": torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]], dtype=F64)}, "singular"),
        ({"cell": None}, "a cell is required"),
        ({"pbc": (True, False, False)}, "unsupported pbc"),
        ({"accuracy": 0.0}, "accuracy"),
        ({"method": "p3m"}, "method"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(kwargs, message):
    args = {
        "charges": torch.tensor([1.0, -1.0], dtype=F64),
        "positions": torch.tensor([[0.0, 0, 0], [1.0, 0, 0]], dtype=F64),
        "cell": torch.eye(3, dtype=F64) * 5,
        "pbc": True,
    }
    extra = {k: kwargs.pop(k) for k in ("accuracy", "method") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        les_energy(args["charges"], args["positions"], args["cell"], args["pbc"], **extra)


def test_point_charge_widths_reduce_to_plain_coulomb_in_open_boundaries():
    charges = torch.tensor([1.0, -2.0], dtype=F64)
    positions = torch.tensor([[0.0, 0, 0], [0.0, 0, 2.5]], dtype=F64)
    energy = coulomb_energy(charges, positions, None, False, 0.0)
    assert float(energy) == pytest.approx(-2.0 * COULOMB / 2.5, rel=1e-14)
