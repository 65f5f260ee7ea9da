"""Electrical response of an LES model: dipole, polarisation, Born effective charges, field enthalpy.

References: Zhong, Cheng et al., arXiv:2504.05169 (BEC from LES); Umari & Pasquarello, PRL 89, 157602 (2002)
and Souza, Íñiguez, Vanderbilt, PRL 89, 117602 (2002) (electric enthalpy H = E0 − E·M).

Conventions
- Dipole M = √ε∞ Σ_i q_i r_i (e·Å) with the positions as handed over. In periodic cells these are the
  *itinerant* (unwrapped, continuous along the trajectory) positions; M is then continuous in time and the
  field enthalpy is exactly conserved. M of a wrapped snapshot differs by q_i·(lattice vector) quanta.
- Born effective charges Z*_{i,αβ} = ∂M_α/∂r_{iβ} (e), array shape (N, 3, 3) indexed
  [atom i, dipole component α, displacement component β].
- √ε∞ scaling (Zhong et al.): physical charges/dipoles/BECs are the latent ones times √ε∞.
"""

from __future__ import annotations

import math

import torch


def dipole_moment(charges: torch.Tensor, positions: torch.Tensor, epsilon_inf: float = 1.0) -> torch.Tensor:
    """Dipole M = √ε∞ Σ_i q_i r_i.

    Args:
        charges: (N,) latent charges, e.
        positions: (N, 3) positions, Å (itinerant/unwrapped for periodic systems).
        epsilon_inf: high-frequency dielectric constant ε∞ used to scale latent to physical charges.

    Returns:
        (3,) dipole, e·Å.
    """
    return math.sqrt(epsilon_inf) * (charges.unsqueeze(-1) * positions).sum(dim=-2)


def field_enthalpy(energy: torch.Tensor, dipole: torch.Tensor, efield: torch.Tensor | None) -> torch.Tensor:
    """Electric enthalpy H = E0 − E·M (eV) for a uniform field E (V/Å) and dipole M (e·Å).

    One backward pass of H gives F_i = −∂E0/∂r_i + Z*_iᵀ E without building the BEC tensor.
    """
    if efield is None:
        return energy
    return energy - torch.dot(efield.to(dipole.dtype), dipole)


def born_effective_charges(dipole: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Z*_{i,αβ} = ∂M_α/∂r_{iβ} by one batched vector-Jacobian product (3 cotangents at once).

    Args:
        dipole: (3,) dipole, e·Å, in the autograd graph of ``positions``.
        positions: (N, 3) leaf tensor with ``requires_grad=True``.

    Returns:
        (N, 3, 3) tensor indexed [atom, dipole α, displacement β], e. The graph is retained.
    """
    eye = torch.eye(3, dtype=dipole.dtype, device=dipole.device)
    try:
        (jac,) = torch.autograd.grad(dipole, positions, grad_outputs=eye, retain_graph=True, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: fall back to three passes
        jac = torch.stack(
            [torch.autograd.grad(dipole[a], positions, retain_graph=True)[0] for a in range(3)], dim=0
        )
    # jac: (α, N, β) -> (N, α, β)
    return jac.permute(1, 0, 2).contiguous()


def enforce_acoustic_sum_rule(bec: torch.Tensor, total_charge: float = 0.0) -> torch.Tensor:
    """Remove the violation of the acoustic sum rule Σ_i Z*_i = Q·I evenly over the atoms.

    A rigid translation changes the dipole by Q·δ, so Σ_i Z*_i must equal Q·I. Born effective charges built from
    local (minimum-image) charge derivatives of a model whose raw charges are not locally conserved miss this by a
    small amount (the neutralising shift spreads charge uniformly over the cell); the standard correction
    subtracts the mean excess from every atom (as done for DFT BECs, e.g. Gonze & Lee, PRB 55, 10355 (1997)).

    Args:
        bec: (N, 3, 3) Born effective charges, e.
        total_charge: Q, e (already √ε∞-scaled if the BECs are).

    Returns:
        (N, 3, 3) corrected tensor.
    """
    n = bec.shape[0]
    eye = torch.eye(3, dtype=bec.dtype, device=bec.device)
    excess = bec.sum(0) - total_charge * eye
    return bec - excess / n
