"""Cell geometry for periodic sums: volume, inverse and reciprocal vectors of a (3,3) cell.

Cell rows are the lattice vectors a_1, a_2, a_3 (ASE convention); reciprocal vectors b_j (rows) satisfy
a_i · b_j = 2π δ_ij, b_1 = 2π (a_2 × a_3)/V etc. Written with cross products rather than an LU
factorisation: a few elementwise operations, differentiable, and fast for the per-step small-cell case.
"""

from __future__ import annotations

import math

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
