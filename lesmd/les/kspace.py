"""How it is summed (1): the direct reciprocal-space (k-vector) Ewald sum, O(N · N_k).

    E_recip = (1/(2Vε0)) Σ_{k≠0} e^(−k² a²)/k² |S(k)|²,   S(k) = Σ_j q_j e^(−k² s_j²/2) e^(i k·r_j)

(the Fourier form of the Gaussian kernels in :mod:`lesmd.les.potentials`; k = 0 is left out: tin-foil boundary
with a neutralising background). Only half of k-space is enumerated (S(−k) = S(k)*), doubling each term.

Smoothness: a hard spherical cutoff makes the energy jump whenever a k-vector crosses it as the cell changes
(NPT). Instead the terms are multiplied by a C² window that is 1 up to ``k_on`` and falls to 0 at ``k_cut``; the
caller chooses ``k_on`` where the Gaussian damping is already below the requested accuracy, so the window
changes the energy by less than the accuracy and the energy is a smooth function of the cell.
Cell rows are lattice vectors a_i; reciprocal vectors b_j satisfy a_i · b_j = 2π δ_ij.
"""

from __future__ import annotations

import math

import torch

from lesmd.les.lattice import reciprocal_cell, volume
from lesmd.les.potentials import fourier_prefactor
from lesmd.units import EPSILON0

#: Largest number of integer triplets the direct sum may enumerate (beyond, a one-line error names the cost).
MAX_KVECTOR_CANDIDATES = 1 << 24
#: Largest number of (atom, k-vector) phase elements held at once.
_CHUNK_ELEMENTS = 1 << 22


def half_space_kvectors(cell: torch.Tensor, k_cut: float) -> torch.Tensor:
    """Reciprocal lattice vectors with 0 < |k| < k_cut in one half space, (M, 3) in Å⁻¹.

    The integer triplets are chosen without gradient; k = n · B carries the gradient w.r.t. the cell.
    """
    recip = reciprocal_cell(cell)
    with torch.no_grad():
        lengths = torch.linalg.norm(cell.detach(), dim=1)
        n_max = [int(k_cut * float(length) / (2.0 * torch.pi)) for length in lengths]
        candidates = math.prod(2 * m + 1 for m in n_max)
        if candidates > MAX_KVECTOR_CANDIDATES:
            raise ValueError(
                f"the periodic cell needs ~{candidates / 2:.3g} k-vectors for the direct Ewald sum (lattice vectors "
                f"{[round(float(x), 1) for x in lengths]} Å): too large a cell for a periodic sum (mostly vacuum?); "
                "use open boundaries (pbc=False) for an isolated system, or a smaller cell"
            )
        ranges = [torch.arange(-m, m + 1, device=cell.device) for m in n_max]
        n = torch.cartesian_prod(*ranges).reshape(-1, 3)
        positive = (n[:, 0] > 0) | ((n[:, 0] == 0) & ((n[:, 1] > 0) | ((n[:, 1] == 0) & (n[:, 2] > 0))))
        n = n[positive]
        k_detached = n.to(recip.dtype) @ recip.detach()
        n = n[(k_detached * k_detached).sum(-1) < k_cut * k_cut]
    return n.to(recip.dtype) @ recip


def smooth_window(k2: torch.Tensor, k_on: float, k_cut: float) -> torch.Tensor:
    """C² window: 1 for |k| ≤ ``k_on``, smootherstep in k² down to 0 at |k| = ``k_cut`` (dimensionless)."""
    if k_cut <= k_on:
        return torch.ones_like(k2)
    t = ((k2 - k_on * k_on) / (k_cut * k_cut - k_on * k_on)).clamp(0.0, 1.0)
    return 1.0 - t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)


def kspace_terms(
    cell: torch.Tensor, widths2: torch.Tensor, split2: float, k_on: float, k_cut: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """k-vectors (M,3), weights (M,) and per-atom form factors ((N,M) or None when all widths are equal).

    The weight includes the half-space factor 2, 1/(2Vε0), e^(−k²a²)/k², the window and, for equal widths,
    the common form factor e^(−k² s²); E_recip = Σ_k weight_k |Σ_j q_j f_jk e^(ik·r_j)|².
    """
    k = half_space_kvectors(cell, k_cut)
    k2 = (k * k).sum(-1)
    weight = fourier_prefactor(k2, split2) * smooth_window(k2, k_on, k_cut) / (volume(cell) * EPSILON0)
    if bool((widths2 == widths2[0]).all()):
        return k, weight * torch.exp(-k2 * widths2[0]), None
    return k, weight, torch.exp(-0.5 * k2[None, :] * widths2[:, None])


def kspace_energy(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    widths2: torch.Tensor,
    split2: float,
    k_on: float,
    k_cut: float,
) -> torch.Tensor:
    """Reciprocal-space energy in eV, self-interaction included (the caller removes it).

    Args:
        charges: (N,) in e.  positions: (N,3) in Å.  cell: (3,3) rows = lattice vectors, Å.
        widths2: (N,) Gaussian variances s_i² in Å².  split2: splitting variance a² in Å².
        k_on, k_cut: window start and end in Å⁻¹.
    """
    k, weight, form = kspace_terms(cell, widths2, split2, k_on, k_cut)
    n_atoms = positions.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // max(n_atoms, 1))
    energy = positions.new_zeros(())
    for start in range(0, k.shape[0], chunk):
        stop = start + chunk
        phase = positions @ k[start:stop].T
        if form is None:
            re, im = charges @ torch.cos(phase), charges @ torch.sin(phase)
        else:
            qf = charges[:, None] * form[:, start:stop]
            re, im = (qf * torch.cos(phase)).sum(0), (qf * torch.sin(phase)).sum(0)
        energy = energy + (weight[start:stop] * (re * re + im * im)).sum()
    return energy


def kspace_matrix(
    positions: torch.Tensor, cell: torch.Tensor, widths2: torch.Tensor, split2: float, k_on: float, k_cut: float
) -> torch.Tensor:
    """(N,N) reciprocal-space Coulomb matrix A_ij (eV/e²) with E_recip = ½ qᵀ A q (self terms included)."""
    k, weight, form = kspace_terms(cell, widths2, split2, k_on, k_cut)
    phase = positions @ k.T
    cos, sin = torch.cos(phase), torch.sin(phase)
    if form is not None:
        cos, sin = cos * form, sin * form
    return 2.0 * ((cos * weight) @ cos.T + (sin * weight) @ sin.T)
