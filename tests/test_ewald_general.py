"""General Gaussian-charge machinery: potential φ = ∂E/∂q, Coulomb matrix A, self and background terms."""

import math

import pytest
import torch

from lesmd.les.ewald import coulomb_energy, coulomb_matrix, electrostatic_potential
from lesmd.units import COULOMB

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


def _mixed_system(charged: bool = True, seed: int = 3):
    gen = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[8.0, 0.0, 0.0], [0.9, 7.5, 0.0], [-0.6, 0.7, 9.0]], dtype=F64)
    positions = torch.rand(10, 3, generator=gen, dtype=F64) @ cell
    charges = torch.randn(10, generator=gen, dtype=F64)
    charges = charges - charges.mean() + (0.8 / 10 if charged else 0.0)
    widths = torch.tensor([0.0, 0.0, 0.36, 0.36, 0.36, 0.71, 0.71, 0.71, 1.2, 0.5], dtype=F64)
    return charges, positions, cell, widths


@pytest.mark.parametrize("pbc", [False, True])
@pytest.mark.parametrize("self_energy", [False, True])
def test_coulomb_matrix_is_symmetric_and_gives_the_energy(pbc, self_energy):
    charges, positions, cell, widths = _mixed_system()
    if self_energy:
        widths = widths.clamp_min(0.2)
    matrix = coulomb_matrix(positions, cell, pbc, widths, accuracy=1e-10, self_energy=self_energy)
    assert torch.allclose(matrix, matrix.T, rtol=0, atol=1e-12)
    energy = coulomb_energy(charges, positions, cell, pbc, widths, accuracy=1e-10, self_energy=self_energy)
    assert float(0.5 * charges @ matrix @ charges) == pytest.approx(float(energy), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("pbc", [False, True])
def test_potential_is_charge_derivative_of_energy(pbc):
    """φ_i = ∂E/∂q_i: equal to A q and to central finite differences of E in q_i."""
    charges, positions, cell, widths = _mixed_system()
    phi = electrostatic_potential(charges, positions, cell, pbc, widths, accuracy=1e-10)
    matrix = coulomb_matrix(positions, cell, pbc, widths, accuracy=1e-10)
    assert torch.allclose(phi, matrix @ charges, rtol=1e-9, atol=1e-9)
    h = 1e-4
    for i in (0, 4, 9):
        step = torch.zeros_like(charges)
        step[i] = h
        plus = coulomb_energy(charges + step, positions, cell, pbc, widths, accuracy=1e-10)
        minus = coulomb_energy(charges - step, positions, cell, pbc, widths, accuracy=1e-10)
        assert float(phi[i]) == pytest.approx(float(plus - minus) / (2 * h), rel=1e-8, abs=1e-9)


def test_open_potential_of_one_gaussian_is_erf_over_r():
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.7, 0.4, -0.3]], dtype=F64)
    charges = torch.tensor([0.9, 0.0], dtype=F64)
    widths = torch.tensor([0.5, 0.3], dtype=F64)
    phi = electrostatic_potential(charges, positions, None, False, widths)
    r = float(torch.linalg.norm(positions[1]))
    assert float(phi[1]) == pytest.approx(COULOMB * 0.9 * math.erf(r / math.sqrt(2 * (0.25 + 0.09))) / r, rel=1e-12)


def test_gaussian_self_energy_equals_radial_integral():
    """½ ∫ ρ φ d³r for one Gaussian, φ(r) = k_e q erf(r/(√2 s))/r, by quadrature on a radial grid."""
    s, q = 0.6, 1.3
    r = torch.linspace(1e-6, 12 * s, 200001, dtype=F64)
    rho = q * (2 * math.pi * s * s) ** -1.5 * torch.exp(-(r * r) / (2 * s * s))
    phi = COULOMB * q * torch.erf(r / (math.sqrt(2) * s)) / r
    integral = 0.5 * float(torch.trapezoid(4 * math.pi * r * r * rho * phi, r))
    energy = coulomb_energy(
        torch.tensor([q], dtype=F64), torch.zeros(1, 3, dtype=F64), None, False, s, self_energy=True
    )
    assert float(energy) == pytest.approx(integral, rel=1e-8)


def test_background_term_makes_a_charged_cell_independent_of_the_split():
    """Point charges need a real-space split; the charged-cell energy must not depend on how it is split."""
    from lesmd.les import ewald
    from lesmd.les.tuning import _parameters, erfcinv

    charges, positions, cell, widths = _mixed_system(charged=True)
    widths2 = widths**2
    x = erfcinv(1e-12)
    energies = [
        float(ewald._periodic_energy(charges, positions, cell, widths2, _parameters(0.0, 1.44, t, x, "direct")))
        for t in (1.0, 1.8, 2.6)
    ]
    assert energies[0] == pytest.approx(energies[1], abs=1e-8)
    assert energies[0] == pytest.approx(energies[2], abs=1e-8)


def test_negative_or_misshaped_widths_are_rejected():
    charges, positions, cell, widths = _mixed_system()
    with pytest.raises(ValueError, match="widths"):
        coulomb_energy(charges, positions, cell, True, -widths)
    with pytest.raises(ValueError, match="widths"):
        coulomb_energy(charges, positions, cell, True, widths[:3])
    with pytest.raises(ValueError, match="point charge"):
        coulomb_energy(charges, positions, cell, True, widths, self_energy=True)
