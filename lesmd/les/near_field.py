"""The near-field Coulomb term: the part of the LES energy that a short-range model can represent by itself.

Within the short-range cutoff r_c the smeared Coulomb energy of local charges is a function of local
environments, exactly what the short-range model learns. When both carry it, they compete: early in training the
short-range network fits the large intra- and near-neighbour electrostatics first, and any growth of the latent
charges then breaks that fit, so gradient descent shrinks the charges towards zero and the long-range channel stays
empty (measured in ``scripts/charge_channel_experiment.py``: charges 5-35× too small on water, dipeptides and an
ionic toy with known charges). lesmd therefore writes the short-range energy as

    E_sr = E_network − E_near(q),   E_near = ½ Σ_i Σ_{j ∈ N(i)} k_e q_i q_j erf(r_ij/(√2σ))/r_ij · s(r_ij),

s a C² switch (1 up to 0.75 r_n, 0 from r_n on, :func:`switch`) and N(i) the neighbours within r_n ≤ r_c. The total
E = E_network − E_near + E_LES is the same family of functions (E_near is local), the LES energy is still the
converged smeared-Coulomb energy of the latent charges, but the charges now change the energy only through the
long-range remainder E_LES − E_near, which the network cannot represent: the two parts no longer compete.
Same kernel as :func:`lesmd.les.potentials.gaussian_coulomb` (Cheng, npj Comput. Mater. 11, 80 (2025)).
"""

from __future__ import annotations

import math

import torch

from lesmd.units import COULOMB

#: the switch is 1 up to this fraction of r_n and falls to 0 at r_n
SWITCH_ON = 0.75


def switch(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """C² switch: 1 for r ≤ r_on = SWITCH_ON·r_n, 1 − (10t³ − 15t⁴ + 6t⁵) with t = (r − r_on)/(r_n − r_on) up to
    r_n, 0 beyond (value, slope and curvature continuous)."""
    on = SWITCH_ON * cutoff
    t = ((r - on) / (cutoff - on)).clamp(0.0, 1.0)
    return 1.0 - t * t * t * (10.0 + t * (6.0 * t - 15.0))


def near_field_energies(
    charges: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor, sigma: float, cutoff: float
) -> torch.Tensor:
    """Per-atom near-field Coulomb energies (N,) eV, half of every pair to each atom (full neighbour list).

    Args:
        charges: (N,) latent charges, e.
        vectors: (E, 3) edge vectors r_j − r_i (+ lattice shift), Å, both (i, j) and (j, i) present.
        i, j: (E,) centre and neighbour indices.
        sigma: LES width σ, Å (pair kernel erf(r/(√2σ))/r).
        cutoff: r_n, Å; edges beyond contribute exactly zero.
    """
    r2 = (vectors * vectors).sum(-1)
    keep = (r2.detach() < cutoff * cutoff) & (r2.detach() > 0)
    if not bool(keep.all()):
        vectors, i, j, r2 = vectors[keep], i[keep], j[keep], r2[keep]
    r = torch.sqrt(r2)
    kernel = torch.erf(r / (math.sqrt(2.0) * sigma)) / r * switch(r, cutoff)
    pair = charges.index_select(0, i) * charges.index_select(0, j) * kernel
    return charges.new_zeros(charges.shape[0]).index_add(0, i, 0.5 * COULOMB * pair)
