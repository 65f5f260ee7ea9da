"""How it is summed (2): pair sums in real space.

* Open boundaries: the exact pair sum ½ Σ_{i≠j} k_e q_i q_j erf(r_ij/(√2 w_ij))/r_ij over all pairs (O(N²),
  chunked so memory stays bounded).
* Periodic: the short-ranged Ewald real-space part Σ_{pairs, images} k_e q_i q_j [erfc(r/(√2W)) − erfc(r/(√2w))]/r
  within a cutoff, with the pair list (i, j, lattice shift) from vesin (computed without gradient; the
  distance vectors r_j − r_i + n·cell are rebuilt in torch so they carry gradients w.r.t. positions and cell).
Kernels are in :mod:`lesmd.les.potentials`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.utils.checkpoint
import vesin

from lesmd.les.potentials import gaussian_coulomb, real_space_kernel
from lesmd.units import COULOMB

_CHUNK_PAIRS = 1 << 22


def open_energy(charges: torch.Tensor, positions: torch.Tensor, widths2: torch.Tensor) -> torch.Tensor:
    """Coulomb energy of Gaussian charges with open boundaries, self-interaction excluded; eV.

    Exact O(N²) pair sum in blocks of rows (memory O(block · N)).

    Args:
        charges: (N,) e.  positions: (N,3) Å.  widths2: (N,) variances s_i² in Å² (0 = point charge).
    """
    n_atoms = positions.shape[0]
    block = max(1, _CHUNK_PAIRS // max(n_atoms, 1))
    energy = positions.new_zeros(())
    columns = torch.arange(n_atoms, device=positions.device)
    # with a graph, each block is recomputed in the backward pass instead of stored (memory O(block·N), not O(N²))
    recompute = torch.is_grad_enabled() and n_atoms > CHECKPOINT_MIN_ATOMS and (
        charges.requires_grad or positions.requires_grad)
    for start in range(0, n_atoms, block):
        rows = columns[start : start + block]
        if recompute:
            part = torch.utils.checkpoint.checkpoint(_open_block, charges, positions, widths2, rows, columns,
                                                     use_reentrant=False)  # fmt: skip
        else:
            part = _open_block(charges, positions, widths2, rows, columns)
        energy = energy + part
    return COULOMB * energy


#: open-boundary pair sums above this many charges recompute their blocks in the backward pass (torch checkpoint)
CHECKPOINT_MIN_ATOMS = 2048


def _open_block(charges, positions, widths2, rows, columns) -> torch.Tensor:
    """Σ_{i in rows, j > i} q_i q_j erf(r_ij/√2w_ij)/r_ij for one block of rows (without k_e)."""
    upper = columns[None, :] > rows[:, None]  # each pair once (j > i)
    diff = positions[None, :, :] - positions[rows, None, :]
    r = torch.linalg.norm(torch.where(upper[..., None], diff, torch.ones_like(diff)), dim=-1)
    kernel = gaussian_coulomb(r, widths2[rows, None] + widths2[None, :])
    pair = charges[rows, None] * charges[None, :] * kernel
    return torch.where(upper, pair, torch.zeros_like(pair)).sum()


def open_matrix(positions: torch.Tensor, widths2: torch.Tensor) -> torch.Tensor:
    """(N,N) open-boundary Coulomb matrix A_ij = k_e erf(r_ij/(√2 w_ij))/r_ij (zero diagonal), eV/e²."""
    n_atoms = positions.shape[0]
    diff = positions[None, :, :] - positions[:, None, :]
    eye = torch.eye(n_atoms, dtype=torch.bool, device=positions.device)
    r = torch.linalg.norm(diff + eye[..., None].to(positions.dtype), dim=-1)  # 1 on the diagonal, masked below
    kernel = gaussian_coulomb(r, widths2[:, None] + widths2[None, :])
    return COULOMB * torch.where(eye, torch.zeros_like(kernel), kernel)


def periodic_pairs(
    positions: torch.Tensor, cell: torch.Tensor, r_cut: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half pair list (i, j, r_ij vectors) within ``r_cut`` over all periodic images (self-images included).

    Returns i (P,), j (P,) long and distance vectors (P,3) = r_j − r_i + n·cell in Å (differentiable).
    """
    points = positions.detach().cpu().to(torch.float64).numpy()
    box = cell.detach().cpu().to(torch.float64).numpy()
    calculator = vesin.NeighborList(cutoff=float(r_cut), full_list=False)
    i, j, shifts = calculator.compute(points, box, periodic=True, quantities="ijS")
    device = positions.device
    i = torch.from_numpy(np.asarray(i, dtype=np.int64)).to(device)
    j = torch.from_numpy(np.asarray(j, dtype=np.int64)).to(device)
    shifts = torch.from_numpy(np.asarray(shifts, dtype=np.float64)).to(device=device, dtype=positions.dtype)
    vectors = positions[j] - positions[i] + shifts @ cell
    return i, j, vectors


def realspace_energy(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    widths2: torch.Tensor,
    split2: float,
    r_cut: float,
) -> torch.Tensor:
    """Periodic real-space Ewald energy (eV) for splitting variance a² = ``split2`` within ``r_cut`` (Å)."""
    if split2 <= 0.0:
        return positions.new_zeros(())
    i, j, vectors = periodic_pairs(positions, cell, r_cut)
    r = torch.linalg.norm(vectors, dim=-1)
    kernel = real_space_kernel(r, widths2[i] + widths2[j], split2)
    return COULOMB * (charges[i] * charges[j] * kernel).sum()


def realspace_matrix(
    positions: torch.Tensor, cell: torch.Tensor, widths2: torch.Tensor, split2: float, r_cut: float
) -> torch.Tensor:
    """(N,N) real-space Coulomb matrix (eV/e²) with E_real = ½ qᵀ A q."""
    n_atoms = positions.shape[0]
    matrix = positions.new_zeros((n_atoms, n_atoms))
    if split2 <= 0.0:
        return matrix
    i, j, vectors = periodic_pairs(positions, cell, r_cut)
    r = torch.linalg.norm(vectors, dim=-1)
    values = COULOMB * real_space_kernel(r, widths2[i] + widths2[j], split2)
    matrix = matrix.index_put((i, j), values, accumulate=True)
    return matrix + matrix.T
