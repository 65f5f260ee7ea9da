"""Cell geometry for periodic sums: volume, inverse and reciprocal vectors of a (3,3) cell.

Cell rows are the lattice vectors a_1, a_2, a_3 (ASE convention); reciprocal vectors b_j (rows) satisfy
a_i · b_j = 2π δ_ij, b_1 = 2π (a_2 × a_3)/V etc. Written with cross products rather than an LU
factorisation: a few elementwise operations, differentiable, and fast for the per-step small-cell case.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch


def signed_volume(cell: torch.Tensor) -> torch.Tensor:
    """a_1 · (a_2 × a_3) in Å³ (scalar, differentiable)."""
    return torch.dot(cell[0], torch.linalg.cross(cell[1], cell[2]))


def volume(cell: torch.Tensor) -> torch.Tensor:
    """|a_1 · (a_2 × a_3)| in Å³ (scalar, differentiable)."""
    return signed_volume(cell).abs()


def inverse_cell(cell: torch.Tensor) -> torch.Tensor:
    """(3,3) inverse of the cell matrix (fractional coordinates = positions @ inverse), Å⁻¹."""
    cofactors = torch.stack(
        [
            torch.linalg.cross(cell[1], cell[2]),
            torch.linalg.cross(cell[2], cell[0]),
            torch.linalg.cross(cell[0], cell[1]),
        ]
    )
    return cofactors.T / signed_volume(cell)


def reciprocal_cell(cell: torch.Tensor) -> torch.Tensor:
    """(3,3) reciprocal vectors b_j as rows, 2π · inverse-transpose of the cell, Å⁻¹."""
    return 2.0 * math.pi * inverse_cell(cell).T


# --- lattice-basis reduction -----------------------------------------------------------------------------------
# A lattice has infinitely many bases (c → c + k·a describes the same crystal). Reciprocal-space methods pick
# k-vectors and meshes from the basis and minimum-image rules assume a compact one, so every periodic sum works in
# one canonical reduced basis of the periodic directions: LLL (Lenstra, Lenstra, Lovász, Math. Ann. 261, 515
# (1982)) followed by a choice among the shortest lattice vectors that does not depend on the basis given.

#: relative tolerance under which two lengths or components count as equal when choosing the canonical basis
_CANONICAL_TOLERANCE = 1e-9


def reduction_matrix(cell: np.ndarray, periodic: tuple[bool, bool, bool]) -> np.ndarray:
    """Integer unimodular (3,3) U such that U @ cell is the canonical reduced basis of the same lattice.

    Only the periodic rows are combined (with each other); open rows are kept. The result is the same reduced
    cell (to rounding) for every basis of one lattice: the shortest lattice vectors are taken first, ties broken
    by the largest x, then y, then z component (so an orthorhombic cell becomes its axes in order of length), the
    last vector's sign chosen to keep the handedness of ``cell``.

    Args:
        cell: (3,3) float64, rows are lattice vectors (Å).
        periodic: which rows are periodic.

    Returns:
        (3,3) int64 with det U = +1 (the handedness is kept); the identity when fewer than two directions are
        periodic.
    """
    cell = np.ascontiguousarray(cell, dtype=np.float64)
    return _reduction_matrix(cell.tobytes(), tuple(bool(p) for p in periodic)).copy()


def reduce_cell(cell: torch.Tensor, pbc: tuple[bool, bool, bool]) -> torch.Tensor:
    """U @ cell (differentiable in ``cell``) with U from :func:`reduction_matrix`; the same tensor when U = I."""
    u = reduction_matrix(cell.detach().cpu().double().numpy(), pbc)
    if np.array_equal(u, np.eye(3, dtype=np.int64)):
        return cell
    return torch.as_tensor(u, dtype=cell.dtype, device=cell.device) @ cell


@functools.lru_cache(maxsize=256)
def _reduction_matrix(cell_bytes: bytes, periodic: tuple[bool, bool, bool]) -> np.ndarray:
    cell = np.frombuffer(cell_bytes, dtype=np.float64).reshape(3, 3)
    rows = [d for d in range(3) if periodic[d]]
    u = np.eye(3, dtype=np.int64)
    if len(rows) < 2 or not np.isfinite(cell).all():
        return u
    basis = cell[rows]
    if np.linalg.matrix_rank(basis) < len(rows):
        return u  # degenerate: the callers' cell checks name the problem
    sub = _lll(basis)
    sub = _canonical(sub, basis)
    if round(np.linalg.det(sub.astype(np.float64))) < 0:  # keep the handedness of the basis given
        sub[-1] = -sub[-1]
    for a, row in enumerate(rows):
        u[row] = 0
        for b, col in enumerate(rows):
            u[row, col] = sub[a, b]
    u.setflags(write=False)
    return u


def _lll(basis: np.ndarray, delta: float = 0.99) -> np.ndarray:
    """Integer unimodular T (k,k) with T @ basis LLL-reduced (k ≤ 3 rows; plain Gram–Schmidt, float64)."""
    k = basis.shape[0]
    t = np.eye(k, dtype=np.int64)
    b = basis.copy()

    def gram_schmidt(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ortho = np.zeros_like(b)
        mu = np.zeros((k, k))
        for i in range(k):
            ortho[i] = b[i]
            for j in range(i):
                mu[i, j] = b[i] @ ortho[j] / (ortho[j] @ ortho[j])
                ortho[i] = ortho[i] - mu[i, j] * ortho[j]
        return ortho, mu

    i = 1
    for _ in range(10_000):  # LLL terminates in polynomially many steps; the bound only guards against rounding
        if i >= k:
            break
        ortho, mu = gram_schmidt(b)
        for j in range(i - 1, -1, -1):
            r = int(np.rint(mu[i, j]))
            if r:
                b[i] -= r * b[j]
                t[i] -= r * t[j]
                ortho, mu = gram_schmidt(b)
        if ortho[i] @ ortho[i] >= (delta - mu[i, i - 1] ** 2) * (ortho[i - 1] @ ortho[i - 1]):
            i += 1
        else:
            b[[i, i - 1]] = b[[i - 1, i]]
            t[[i, i - 1]] = t[[i - 1, i]]
            i = max(i - 1, 1)
    return t


def _canonical(t: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Integer unimodular matrix (k,k): the canonical basis chosen among short combinations of the LLL basis."""
    k = basis.shape[0]
    reduced = t @ basis
    scale = float(np.linalg.norm(reduced, axis=1).max())
    tol = _CANONICAL_TOLERANCE * scale
    longest = scale * (1.0 + 1e-6)
    coefficients = np.array(
        [c for c in itertools.product(range(-2, 3), repeat=k) if any(c)], dtype=np.int64
    )  # combinations of the LLL basis; for a reduced basis these contain its successive minima
    vectors = coefficients @ reduced
    lengths = np.linalg.norm(vectors, axis=1)
    keep = lengths <= longest
    coefficients, vectors, lengths = coefficients[keep], vectors[keep], lengths[keep]
    keys = [
        (round(float(length) / tol), *(-round(float(x) / tol) for x in vector))
        for length, vector in zip(lengths, vectors, strict=True)
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    chosen: list[np.ndarray] = []
    for _ in range(k):
        for index in order:
            trial = [*chosen, coefficients[index]]
            if _extends_to_basis(np.array(trial)):
                chosen.append(coefficients[index])
                break
        else:  # cannot happen for a full-rank lattice; keep the LLL basis
            return t
    return np.array(chosen, dtype=np.int64) @ t


def _extends_to_basis(rows: np.ndarray) -> bool:
    """Whether integer rows (m,k) are part of a basis of Z^k: the gcd of their m×m minors is 1."""
    m, k = rows.shape
    g = 0
    for cols in itertools.combinations(range(k), m):
        g = math.gcd(g, int(round(np.linalg.det(rows[:, cols].astype(np.float64)))))
    return g == 1
