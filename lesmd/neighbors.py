"""Neighbour lists for the short-range models (vesin), with differentiable edge vectors.

The pair search runs on a detached float64 copy of the structure (vesin's cell lists, O(N)); it returns, for every
ordered pair (i, j) closer than the cutoff, the integer lattice shift S_ij such that the edge vector is

    r_ij = r_j − r_i + S_ij · h        (h: cell, rows are lattice vectors, ASE convention)

The vector is then rebuilt in torch from the live ``positions`` and ``cell`` tensors, so autograd carries
derivatives with respect to both (forces, and stress through a strain applied to positions and cell).
Open boundaries: a zero cell is allowed when no direction is periodic (all shifts are then zero).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from vesin import NeighborList

from lesmd.les.lattice import reduction_matrix


@dataclass
class Edges:
    """An ordered (full) neighbour list: both (i, j) and (j, i) are present; sorted by ``i``.

    Attributes:
        i: (E,) int64 index of the centre atom.
        j: (E,) int64 index of the neighbour.
        shifts: (E, 3) integer lattice shifts, stored in the float dtype of the positions.
        distinct_shifts: (U, 3) the distinct rows of ``shifts`` (at most 27 for cells wider than the cutoff).
        shift_index: (E,) row of ``distinct_shifts`` of every edge.

    ``distinct_shifts`` and ``shift_index`` are derived from ``shifts`` when not given: the lattice part of the
    edge vectors is then one tiny product with the cell and a gather, instead of an (E, 3) × (3, 3) product.
    """

    i: torch.Tensor
    j: torch.Tensor
    shifts: torch.Tensor
    distinct_shifts: torch.Tensor | None = None
    shift_index: torch.Tensor | None = None
    #: flat component indices of j, i and shift_index, built on first use by the edge-vector backward
    _flat: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.distinct_shifts is None or self.shift_index is None:
            if self.shifts.shape[0] == 0:
                self.distinct_shifts = self.shifts.new_zeros(1, 3)
                self.shift_index = torch.zeros(0, dtype=torch.long, device=self.shifts.device)
            else:  # one integer key per shift triple: a 1-D unique (row-wise unique of (E, 3) is much slower)
                s = self.shifts.round().long()
                m = int(s.abs().max())
                base = 2 * m + 1
                keys, self.shift_index = torch.unique(((s[:, 0] + m) * base + s[:, 1] + m) * base + s[:, 2] + m,
                                                      return_inverse=True)  # fmt: skip
                digits = torch.stack([keys // (base * base), (keys // base) % base, keys % base], dim=1) - m
                self.distinct_shifts = digits.to(self.shifts.dtype)
        self.periodic = bool((self.distinct_shifts != 0).any())

    def subset(self, index: torch.Tensor) -> Edges:
        """The edges at positions ``index`` (E',) long, in that order."""
        return Edges(self.i.index_select(0, index), self.j.index_select(0, index), self.shifts.index_select(0, index),
                     self.distinct_shifts, self.shift_index.index_select(0, index))  # fmt: skip


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
    # search in the canonical reduced basis (the same pairs for every basis of the lattice, and vesin's cell grid
    # stays compact), then express the shifts in the caller's basis: S·(U h) = (S U)·h
    u = reduction_matrix(box, tuple(periodic))
    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = calculator.compute(pos_np, u @ box, periodic, quantities="ijS", copy=True)
    s = s @ u
    order = np.argsort(i, kind="stable")  # sorted by centre atom: the models use a padded per-atom layout
    i, j, s = i[order], j[order], s[order]
    device = positions.device
    return Edges(
        i=torch.from_numpy(i.astype(np.int64)).to(device),
        j=torch.from_numpy(j.astype(np.int64)).to(device),
        shifts=torch.from_numpy(s.astype(np.float64)).to(device=device, dtype=positions.dtype),
    )


def edge_vectors(positions: torch.Tensor, cell: torch.Tensor, edges: Edges) -> torch.Tensor:
    """Differentiable edge vectors r_ij = r_j − r_i + S_ij·h, shape (E, 3), Å (:class:`_EdgeVectors`)."""
    cell = cell.to(positions.dtype)
    if not (positions.requires_grad or cell.requires_grad) or not torch.is_grad_enabled():
        return _plain_edge_vectors(positions, cell, edges)
    return _EdgeVectors.apply(positions, cell, edges)


def _plain_edge_vectors(positions: torch.Tensor, cell: torch.Tensor, edges: Edges) -> torch.Tensor:
    vectors = positions.index_select(0, edges.j) - positions.index_select(0, edges.i)  # faster than [] indexing
    if edges.periodic:
        lattice = edges.distinct_shifts.to(positions.dtype) @ cell  # (U, 3)
        vectors = vectors + lattice.index_select(0, edges.shift_index)
    return vectors


def _flat_index(index: torch.Tensor) -> torch.Tensor:
    """(E·3,) indices 3·index + (0, 1, 2) of the components of rows ``index`` of a flattened (·, 3) tensor."""
    return (index[:, None] * 3 + torch.arange(3, device=index.device)).reshape(-1)


class _EdgeVectors(torch.autograd.Function):
    """r_ij = r_j − r_i + S_ij·h with a backward of flat one-dimensional index_adds.

    Autograd's own backward of the row gathers (index_select on (N, 3) tensors) adds one row at a time; summing
    the flattened components is ~4× faster for the (E, 3) gradients of MD-sized graphs. The backward is linear in
    the incoming gradient and built from differentiable operations, so double backward works too.
    """

    @staticmethod
    def forward(ctx, positions, cell, edges):  # noqa: D102
        ctx.edges, ctx.n_atoms = edges, positions.shape[0]
        ctx.save_for_backward(cell)
        return _plain_edge_vectors(positions.detach(), cell.detach(), edges)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (cell,) = ctx.saved_tensors
        edges = ctx.edges
        flat = grad.reshape(-1)
        if edges._flat is None:
            edges._flat = (_flat_index(edges.j), _flat_index(edges.i), _flat_index(edges.shift_index))
        flat_j, flat_i, flat_shift = edges._flat
        grad_positions = grad_cell = None
        if ctx.needs_input_grad[0]:
            grad_positions = grad.new_zeros(ctx.n_atoms * 3).index_add_(0, flat_j, flat).index_add_(0, flat_i, -flat)
            grad_positions = grad_positions.view(ctx.n_atoms, 3)
        if ctx.needs_input_grad[1] and edges.periodic:
            shifts = edges.distinct_shifts.to(grad.dtype)
            lattice = grad.new_zeros(shifts.shape[0] * 3).index_add_(0, flat_shift, flat).view(-1, 3)
            grad_cell = shifts.T @ lattice
        elif ctx.needs_input_grad[1]:
            grad_cell = torch.zeros_like(cell)
        return grad_positions, grad_cell, None


class VerletList:
    """A neighbour list with a skin, reused while no atom has moved far (Verlet, Phys. Rev. 159, 98 (1967)).

    The pair search runs with ``cutoff + skin``; later calls reuse those candidate pairs (their lattice shifts
    included) as long as the cell, pbc and number of atoms are unchanged and no atom has moved by more than
    skin/2 since the search: then no pair can have come within ``cutoff`` unseen. In MD this replaces most
    searches by one gather; the caller keeps the pairs within ``cutoff`` (:func:`edges_within`).

    Args:
        cutoff: Å.
        skin: Å (0 searches every call).
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if not (cutoff > 0 and skin >= 0):
            raise ValueError(f"cutoff must be > 0 and skin ≥ 0 (Å), got {cutoff}, {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.searches = 0
        self._cache: tuple | None = None

    def reset(self) -> None:
        """Forget the stored list: the next call searches again."""
        self._cache = None

    def _valid(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> bool:
        if self._cache is None or self.skin == 0:
            return False
        reference, ref_cell, ref_pbc, edges = self._cache
        if reference.shape != positions.shape or reference.dtype != positions.dtype \
                or reference.device != positions.device or edges.shifts.dtype != positions.dtype:
            return False
        if not torch.equal(ref_pbc, pbc.to(ref_pbc.device)) or not torch.equal(ref_cell, cell.detach()):
            return False
        moved2 = ((positions.detach() - reference) ** 2).sum(-1).max() if positions.shape[0] else 0.0
        return float(moved2) < (0.5 * self.skin) ** 2

    def __call__(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> Edges:
        """Candidate edges (all pairs within ``cutoff``, plus some up to ``cutoff + skin``), sorted by ``i``."""
        # reuse needs finite positions within skin/2 of the (checked) reference and the identical cell, so NaN or
        # inf input always falls through to the search, which rejects it
        if not self._valid(positions, cell, pbc):
            edges = neighbor_list(positions, cell, pbc, self.cutoff + self.skin)
            self._cache = (positions.detach().clone(), cell.detach().clone(), pbc.detach().clone(), edges)
            self.searches += 1
        return self._cache[3]


def edges_within(positions: torch.Tensor, cell: torch.Tensor, edges: Edges, cutoff: float) -> Edges:
    """The edges of ``edges`` shorter than ``cutoff`` (Å) at these positions; order (sorted by ``i``) preserved.

    The selection is made on detached values, so the differentiable vectors (:func:`edge_vectors`) are then built
    for the kept edges only (the autograd graph does not carry the skin's extra pairs).
    """
    with torch.no_grad():
        keep = (edge_vectors(positions.detach(), cell.detach(), edges) ** 2).sum(-1) < cutoff * cutoff
    if bool(keep.all()):
        return edges
    return edges.subset(keep.nonzero().squeeze(1))
