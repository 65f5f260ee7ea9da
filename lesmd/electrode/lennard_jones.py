"""Electrode–electrolyte short-range repulsion: Lennard-Jones 4ε[(σ/r)¹² − (σ/r)⁶], shifted to zero at r_c.

Only electrode–electrolyte pairs interact here (electrode–electrode pairs are frozen or belong to the metal
model; electrolyte–electrolyte pairs belong to the LES model). Pairs are all (electrode, electrolyte)
combinations with the minimum-image convention along periodic directions: O(N_el · N_elyt), cheap for the few
hundred electrode atoms of a typical cell. Pure torch; differentiable w.r.t. positions.
"""

from __future__ import annotations

import numpy as np
import torch

from lesmd.electrode.config import LennardJones


def pair_tables(lj: LennardJones, z_electrode: np.ndarray, z_electrolyte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N_el, N_elyt) arrays of ε (eV) and σ (Å) for every electrode–electrolyte pair."""
    eps = np.zeros((len(z_electrode), len(z_electrolyte)))
    sig = np.zeros_like(eps)
    for a in np.unique(z_electrode):
        for b in np.unique(z_electrolyte):
            e, s = lj.pair(int(a), int(b))
            mask = (z_electrode == a)[:, None] & (z_electrolyte == b)[None, :]
            eps[mask], sig[mask] = e, s
    return eps, sig


def minimum_image(vectors: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Wrap (..., 3) difference vectors into the nearest image along periodic directions.

    Raises ``ValueError`` if ``cutoff`` exceeds half the cell height along a periodic direction (the nearest image
    is then not the only one within the cutoff).
    """
    if not bool(pbc.any()):
        return vectors
    inverse = torch.linalg.inv(cell)
    heights = 1.0 / torch.linalg.norm(inverse.detach(), dim=0)
    for d in range(3):
        if bool(pbc[d]) and cutoff > 0.5 * float(heights[d]):
            raise ValueError(f"lennard_jones cutoff {cutoff} Å exceeds half the cell height {float(heights[d]):.3f} Å "
                             f"along lattice vector {d}")
    frac = vectors @ inverse
    shift = torch.where(pbc, torch.round(frac.detach()), torch.zeros_like(frac))
    return (frac - shift) @ cell


def lennard_jones_energy(
    electrode_positions: torch.Tensor,
    electrolyte_positions: torch.Tensor,
    epsilon: torch.Tensor,
    sigma: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
) -> torch.Tensor:
    """Shifted Lennard-Jones energy (eV) of all electrode–electrolyte pairs closer than ``cutoff`` (Å).

    Args:
        electrode_positions: (N_el, 3) Å.  electrolyte_positions: (N_elyt, 3) Å.
        epsilon, sigma: (N_el, N_elyt) pair parameters in eV and Å (ε = 0 switches a pair off).
        cell: (3, 3) Å rows = lattice vectors.  pbc: (3,) bool.
    """
    d = minimum_image(electrolyte_positions[None, :, :] - electrode_positions[:, None, :], cell, pbc, cutoff)
    r2 = (d * d).sum(-1)
    active = (r2 < cutoff * cutoff) & (epsilon > 0)
    if not bool(active.any()):
        return electrode_positions.new_zeros(()) + 0.0 * (electrolyte_positions.sum() + electrode_positions.sum())
    r2 = r2[active]
    s2 = sigma[active] ** 2
    x6 = (s2 / r2) ** 3
    x6_cut = (s2 / cutoff**2) ** 3
    return (4.0 * epsilon[active] * ((x6 * x6 - x6) - (x6_cut * x6_cut - x6_cut))).sum()
