"""Neighbour lists for the short-range models (vesin), with differentiable edge vectors.

The pair search runs on a detached float64 copy of the structure (vesin's cell lists, O(N)); it returns, for every
ordered pair (i, j) closer than the cutoff, the integer lattice shift S_ij such that the edge vector is

    r_ij = r_j − r_i + S_ij · h        (h: cell, rows are lattice vectors, ASE convention)

The vector is then rebuilt in torch from the live ``positions`` and ``cell`` tensors, so autograd carries
derivatives with respect to both (forces, and stress through a strain applied to positions and cell).
Open boundaries: a zero cell is allowed when no direction is periodic (all shifts are then zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from vesin import NeighborList


@dataclass
class Edges:
    """An ordered (full) neighbour list: both (i, j) and (j, i) are present; sorted by ``i``.

    Attributes:
        i: (E,) int64 index of the centre atom.
        j: (E,) int64 index of the neighbour.
        shifts: (E, 3) integer lattice shifts, stored in the float dtype of the positions.
    """

    i: torch.Tensor
    j: torch.Tensor
    shifts: torch.Tensor


def _check_inputs(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> None:
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")
    if cell.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3), got {tuple(cell.shape)}")
    if pbc.shape != (3,):
        raise ValueError(f"pbc must have shape (3,), got {tuple(pbc.shape)}")
    if not bool(torch.isfinite(positions).all()):
        raise ValueError("positions contain NaN or infinite values")
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("cell contains NaN or infinite values")


def neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> Edges:
    """All ordered pairs (i ≠ j or periodic images) with |r_ij| < ``cutoff`` (Å).

    Args:
        positions: (N, 3) Å.
        cell: (3, 3) Å, rows are lattice vectors; may be zeros when ``pbc`` is all False.
        pbc: (3,) bool, periodicity along each lattice vector.
        cutoff: Å.

    Returns:
        :class:`Edges` on the device of ``positions``.
    """
    _check_inputs(positions, cell, pbc)
    periodic = [bool(p) for p in pbc.tolist()]
    pos_np = positions.detach().to("cpu", torch.float64).numpy()
    box = cell.detach().to("cpu", torch.float64).numpy()
    if any(periodic):
        volume = abs(np.linalg.det(box))
        if volume < 1e-6:
            raise ValueError("cell is singular (zero volume) but pbc has a periodic direction")
    else:
        box = np.zeros((3, 3))
    n = pos_np.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=positions.device)
        return Edges(empty, empty, torch.zeros(0, 3, dtype=positions.dtype, device=positions.device))
    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = calculator.compute(pos_np, box, periodic, quantities="ijS", copy=True)
    order = np.argsort(i, kind="stable")  # sorted by centre atom: the models use a padded per-atom layout
    i, j, s = i[order], j[order], s[order]
    device = positions.device
    return Edges(
        i=torch.from_numpy(i.astype(np.int64)).to(device),
        j=torch.from_numpy(j.astype(np.int64)).to(device),
        shifts=torch.from_numpy(s.astype(np.float64)).to(device=device, dtype=positions.dtype),
    )


def edge_vectors(positions: torch.Tensor, cell: torch.Tensor, edges: Edges) -> torch.Tensor:
    """Differentiable edge vectors r_ij = r_j − r_i + S_ij·h, shape (E, 3), Å."""
    vectors = positions[edges.j] - positions[edges.i]
    if edges.shifts.numel() > 0 and bool((edges.shifts != 0).any()):
        vectors = vectors + edges.shifts @ cell.to(positions.dtype)
    return vectors
