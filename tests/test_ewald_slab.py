"""Slab (2-D periodic) boundaries: Yeh–Berkowitz + Ballenegger–Arnold–Cerdà vs an independent 2-D Ewald sum."""

import math

import pytest
import torch

from lesmd.les.ewald import coulomb_energy, coulomb_matrix, les_energy
from lesmd.units import COULOMB

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


def ewald_2d_reference(charges, positions, cell, widths, kappa_max=20.0):
    """2-D periodic energy of Gaussian charges (pair kernel erf(r/(√2 w_ij))/r) by the 2-D Fourier sum.

    For a 2-D lattice of area A the kernel's lattice sum is (1/A) Σ_κ e^(iκ·ρ) K(κ, z) with
    K(κ≠0, z) = (π/κ)[e^(κz) erfc(κw/√2 + z/(√2w)) + e^(−κz) erfc(κw/√2 − z/(√2w))] and
    K(0, z) = −2π [z erf(z/(√2w)) + √(2/π) w e^(−z²/(2w²))] (finite part; the standard 2-D Ewald formulas with
    α = 1/(√2 w)). E = ½ Σ_ij q_i q_j k_e (1/A) Σ_κ ... − k_e Σ_i q_i²/(w_ii √(2π)). Widths: (N,) std devs > 0.
    """
    in_plane = cell[:2, :2]
    area = float(torch.linalg.det(in_plane).abs())
    recip = 2 * math.pi * torch.linalg.inv(in_plane).T
    n_max = [int(kappa_max * float(torch.linalg.norm(a)) / (2 * math.pi)) + 1 for a in in_plane]
    n = torch.cartesian_prod(*[torch.arange(-m, m + 1) for m in n_max]).to(F64)
    kappa_vec = n @ recip
    kappa = torch.linalg.norm(kappa_vec, dim=1)
    keep = (kappa > 0) & (kappa < kappa_max)
    kappa_vec, kappa = kappa_vec[keep], kappa[keep]
    w = torch.sqrt(widths[:, None] ** 2 + widths[None, :] ** 2)  # (N, N)
    rho = positions[None, :, :2] - positions[:, None, :2]
    z = positions[None, :, 2] - positions[:, None, 2]
    a = kappa[None, None, :] * w[..., None] / math.sqrt(2)
    b = (z / (math.sqrt(2) * w))[..., None]
    damp = torch.exp(-(a * a) - b * b)  # e^(±κz) erfc(a ± b) = e^(−a²−b²) erfcx(a ± b)
    kernel = math.pi / kappa * damp * (torch.special.erfcx(a + b) + torch.special.erfcx(a - b))
    phase = torch.cos((rho[:, :, None, :] * kappa_vec).sum(-1))
    pair = (kernel * phase).sum(-1)
    sheet = z * torch.erf(z / (math.sqrt(2) * w)) + math.sqrt(2 / math.pi) * w * torch.exp(-z * z / (2 * w * w))
    pair = pair - 2 * math.pi * sheet
    energy = 0.5 * COULOMB / area * (charges[:, None] * charges[None, :] * pair).sum()
    return energy - COULOMB * (charges**2 / torch.diagonal(w)).sum() / math.sqrt(2 * math.pi)


def _slab(n=10, total=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cell = torch.tensor([[9.0, 0.0, 0.0], [2.0, 8.0, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    positions = torch.rand(n, 3, generator=gen, dtype=F64) * torch.tensor([9.0, 8.0, 6.0], dtype=F64)
    charges = torch.randn(n, generator=gen, dtype=F64)
    return charges - charges.mean() + total / n, positions, cell


SLAB = (True, True, False)


@pytest.mark.parametrize("total", [0.0, 1.0])
@pytest.mark.parametrize("method", ["direct", "mesh"])
def test_les_slab_energy_equals_two_dimensional_ewald_sum(total, method):
    """Neutral (Yeh–Berkowitz) and charged (+ Ballenegger–Arnold–Cerdà) slabs vs the 2-D Ewald sum."""
    charges, positions, cell = _slab(total=total)
    widths = torch.full((10,), 1 / math.sqrt(2), dtype=F64)
    reference = float(ewald_2d_reference(charges, positions, cell, widths))
    energy = float(les_energy(charges, positions, cell, SLAB, accuracy=1e-9, method=method))
    assert energy == pytest.approx(reference, abs=1e-6)


def test_mixed_width_slab_energy_equals_two_dimensional_ewald_sum():
    """Electrode-like narrow Gaussians (a real-space split is used) in a charged slab."""
    charges, positions, cell = _slab(n=8, total=-0.6, seed=1)
    widths = torch.tensor([0.36, 0.36, 0.36, 0.71, 0.71, 0.71, 0.5, 0.9], dtype=F64)
    reference = float(ewald_2d_reference(charges, positions, cell, widths, kappa_max=40.0))
    energy = float(coulomb_energy(charges, positions, cell, SLAB, widths, accuracy=1e-10))
    assert energy == pytest.approx(reference, abs=1e-6)


def test_slab_energy_ignores_vacuum_height_and_z_translation():
    charges, positions, cell = _slab(total=0.5)
    base = float(les_energy(charges, positions, cell, SLAB, accuracy=1e-10))
    tall = cell.clone()
    tall[2, 2] = 150.0
    shifted = positions + torch.tensor([0.0, 0.0, 37.0], dtype=F64)
    assert float(les_energy(charges, positions, tall, SLAB, accuracy=1e-10)) == pytest.approx(base, abs=1e-8)
    assert float(les_energy(charges, shifted, cell, SLAB, accuracy=1e-10)) == pytest.approx(base, abs=1e-8)


def test_slab_dipole_correction_is_needed():
    """Without the M_z² term a polarised neutral slab in the same extended cell would be off by 2π k_e M_z²/V."""
    from lesmd.les import ewald, slab

    charges, positions, cell = _slab()
    q, pos, box, widths2, mode = ewald._prepare(charges, positions, cell, SLAB, 1 / math.sqrt(2), 1e-9, "direct")
    correction = float(slab.slab_correction(q, pos, widths2, box))
    dipole = float((charges * positions[:, 2]).sum())
    volume = float(torch.linalg.det(box))
    assert correction == pytest.approx(2 * math.pi * COULOMB * dipole**2 / volume, rel=1e-12)
    assert abs(correction) > 1e-3


def test_slab_forces_equal_finite_differences():
    charges, positions, cell = _slab(total=0.3)
    positions = positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(les_energy(charges, positions, cell, SLAB), positions)
    h = 1e-5
    for atom, axis in [(0, 2), (4, 0), (7, 2)]:
        step = torch.zeros_like(positions)
        step[atom, axis] = h
        with torch.no_grad():
            fd = les_energy(charges, positions + step, cell, SLAB) - les_energy(charges, positions - step, cell, SLAB)
        assert float(grad[atom, axis]) == pytest.approx(float(fd) / (2 * h), rel=1e-6, abs=1e-8)


def test_slab_coulomb_matrix_gives_the_energy():
    charges, positions, cell = _slab(total=-0.4)
    widths = torch.full((10,), 0.5, dtype=F64)
    matrix = coulomb_matrix(positions, cell, SLAB, widths, accuracy=1e-10)
    energy = coulomb_energy(charges, positions, cell, SLAB, widths, accuracy=1e-10)
    assert torch.allclose(matrix, matrix.T, atol=1e-12)
    assert float(0.5 * charges @ matrix @ charges) == pytest.approx(float(energy), abs=1e-9)


def test_slab_cell_with_tilted_periodic_vectors_is_rejected():
    charges, positions, cell = _slab()
    cell[1, 2] = 0.5
    with pytest.raises(ValueError, match="xy plane"):
        les_energy(charges, positions, cell, SLAB)


def test_extended_cell_height_is_quantised_so_md_steps_reuse_the_cached_mesh():
    from lesmd.les.slab import HEIGHT_STEP, extended_cell

    cell = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 5.0]], dtype=torch.float64)
    widths2 = torch.full((4,), 0.5, dtype=torch.float64)
    pos = torch.tensor([[0, 0, 0.0], [1, 1, 3.0], [2, 5, 7.0], [3, 3, 9.0]], dtype=torch.float64)
    heights = set()
    for dz in (0.0, 0.003, 0.006, 0.009):  # the slab breathes by a few mÅ per step
        moved = pos.clone()
        moved[3, 2] += dz
        heights.add(float(extended_cell(cell, moved, widths2, 1e-6)[2, 2]))
    assert len(heights) == 1
    height = heights.pop()
    assert height / HEIGHT_STEP == pytest.approx(round(height / HEIGHT_STEP), abs=1e-12)
    assert height >= 9.0 + math.log(1e6) / (2 * math.pi / 10.0)  # thickness + gap, never less
