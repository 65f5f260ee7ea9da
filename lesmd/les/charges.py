"""Latent charges: total-charge constraint.

The LES charge head predicts raw per-atom charges; the physical constraint Σ q_i = Q (Q the total charge of the
structure, default 0) is imposed by the uniform shift q_i ← q_i − (Σ_j q_j − Q)/N
(Cheng, npj Comput. Mater. 11, 80 (2025)). The shift is linear, so gradients flow through it.
"""

from __future__ import annotations

import math

import torch

from lesmd.les.checks import all_finite


def apply_total_charge(raw_charges: torch.Tensor, total_charge: float = 0.0) -> torch.Tensor:
    """Shift charges uniformly so that they sum to ``total_charge``.

    Args:
        raw_charges: (N,) raw latent charges in e (any float dtype; differentiable).
        total_charge: target total charge Q in e.

    Returns:
        (N,) charges q_i − (Σ_j q_j − Q)/N in e, same dtype and device.

    Raises:
        ValueError: if ``raw_charges`` is not a non-empty 1-D tensor, contains NaN/inf, or Q is not finite.
    """
    if not isinstance(raw_charges, torch.Tensor) or raw_charges.ndim != 1:
        raise ValueError(f"raw_charges must be a 1-D tensor of shape (N,), got {_describe(raw_charges)}")
    if raw_charges.numel() == 0:
        raise ValueError("raw_charges is empty: need at least one atom to carry the total charge")
    if not all_finite(raw_charges):
        raise ValueError("raw_charges contains NaN or inf")
    total_charge = float(total_charge)
    if not math.isfinite(total_charge):
        raise ValueError(f"total_charge must be finite, got {total_charge}")
    return shift_to_total_charge(raw_charges, total_charge)


def shift_to_total_charge(raw_charges: torch.Tensor, total_charge: float) -> torch.Tensor:
    """q_i − (Σ_j q_j − Q)/N for (N,) charges already known to be finite (no checks: the step of
    :func:`apply_total_charge` for callers that have checked them, e.g. against per-element bounds); e."""
    if total_charge == 0.0:
        return raw_charges - raw_charges.mean()
    return raw_charges - (raw_charges.mean() - total_charge / raw_charges.shape[0])


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
