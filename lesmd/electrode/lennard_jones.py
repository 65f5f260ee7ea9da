"""Electrode–electrolyte short-range repulsion: Lennard-Jones 4ε[(σ/r)¹² − (σ/r)⁶], shifted to zero at r_c.

Only electrode–electrolyte pairs interact here (electrode–electrode pairs are frozen or belong to the metal
model; electrolyte–electrolyte pairs belong to the LES model). The pairs (all periodic images) come from
:meth:`lesmd.electrode.electrostatics.Electrostatics.pairs`, shared with the real-space Ewald sum.
Pure torch; differentiable w.r.t. the pair distances (hand-written derivative: one pass, no autograd graph).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

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


def lennard_jones_energy(distances: torch.Tensor, epsilon: torch.Tensor, sigma: torch.Tensor,
                         cutoff: float) -> torch.Tensor:
    """Shifted Lennard-Jones energy (eV) of electrode–electrolyte pairs.

    Args:
        distances: (P,) pair distances in Å (pairs beyond ``cutoff`` are ignored).
        epsilon, sigma: (P,) pair parameters in eV and Å (ε = 0 switches a pair off).
        cutoff: Å.
    Differentiable w.r.t. the distances, with the derivative written out: dE/dr = 4ε(6x⁶ − 12x¹²)/r, x = σ/r.
    """
    return _ShiftedLennardJones.apply(distances, epsilon, sigma, cutoff)


class _ShiftedLennardJones(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r: torch.Tensor, epsilon: torch.Tensor, sigma: torch.Tensor, cutoff: float) -> torch.Tensor:
        inside = r < cutoff
        s2 = sigma * sigma
        x6 = (s2 / (r * r)) ** 3
        x6_cut = (s2 / cutoff**2) ** 3
        four_eps = 4.0 * epsilon
        energy = torch.where(inside, four_eps * ((x6 * x6 - x6) - (x6_cut * x6_cut - x6_cut)), 0.0).sum()
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(torch.where(inside, four_eps * (6.0 * x6 - 12.0 * x6 * x6) / r, 0.0))
        return energy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_energy: torch.Tensor):
        (derivative,) = ctx.saved_tensors
        return grad_energy * derivative, None, None, None
