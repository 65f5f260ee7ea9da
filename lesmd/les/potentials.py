"""What interacts: the Coulomb kernel between Gaussian charges and its Ewald split.

A charge q_i with Gaussian width s_i (standard deviation in Å; s_i = 0 is a point charge) has density
q_i (2π s_i²)^(-3/2) exp(−|r − r_i|²/(2 s_i²)). Two such charges interact with the pair kernel

    k_e q_i q_j erf(r / (√2 w_ij)) / r,        w_ij² = s_i² + s_j²,

whose Fourier transform is 4π k_e e^(−k² w_ij²/2) / k². The Ewald split used throughout lesmd adds to every
charge an extra Gaussian of variance a² (a ≥ 0, the splitting width; a = 1/(2α) for the usual Ewald α):

    reciprocal part:  erf(r / (√2 W_ij)) / r,  W_ij² = w_ij² + 2a²,
                      Fourier transform 4π e^(−k² s_i²/2) e^(−k² s_j²/2) e^(−k² a²) / k²
    real-space part:  [erfc(r/(√2 W_ij)) − erfc(r/(√2 w_ij))] / r   (short ranged; identically zero when a = 0)

The LES energy (Cheng, npj Comput. Mater. 11, 80 (2025)) is the case s_i = σ/√2 for all atoms (w = σ) with a = 0,
where the real-space part vanishes. Point charges (Madelung sums) and electrode Gaussians need a > 0.

Self terms: the reciprocal sum contains every charge interacting with itself through its own reciprocal kernel,
k_e q_i² / (√(2π) W_ii) with W_ii² = 2 s_i² + 2a²; it is removed. The Gaussian's own electrostatic self-energy
k_e q_i² / (2√π s_i) (Reed et al., JCP 126, 084704 (2007), with η = 1/(√2 s)) is optional (electrodes).

Neutralising background (charged periodic systems): the energy is defined, as in every Ewald code, as that of the
charges plus a uniform background −Q/V, with the k = 0 Fourier component of the potential set to zero
(tin-foil). For the pure reciprocal sum (a = 0) that is exactly "leave out k = 0"; with a split a > 0 the real-space
kernel has a nonzero volume integral 2π(W_ij² − w_ij²) = 4π a², which the background removes:

    E_background = −(1/(2V)) Σ_ij q_i q_j k_e 4π a² = −2π k_e a² Q² / V   (= −π k_e Q²/(2 α² V) for point charges),

independent of the widths s_i (Hub, de Groot, van der Spoel, JCTC 10, 381 (2014), eq. 4).
"""

from __future__ import annotations

import math

import torch

from lesmd.units import COULOMB, EPSILON0

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def gaussian_coulomb(r: torch.Tensor, width2: torch.Tensor | float) -> torch.Tensor:
    """Coulomb kernel erf(r/(√2 w))/r between Gaussian charges (1/r where w = 0); Å⁻¹.

    Args:
        r: (...) distances in Å (> 0).
        width2: combined variance w² = s_i² + s_j² in Å², broadcastable to ``r``.
    """
    width2 = torch.as_tensor(width2, dtype=r.dtype, device=r.device)
    point = width2 <= 0
    scaled = r / torch.sqrt(2.0 * torch.where(point, torch.ones_like(width2), width2))
    return torch.where(point, torch.ones_like(scaled), torch.erf(scaled)) / r


def erfc_over_r(r: torch.Tensor, width2: torch.Tensor | float) -> torch.Tensor:
    """erfc(r/(√2 w))/r in Å⁻¹ (0 where w = 0): the short-ranged remainder of a Gaussian kernel."""
    width2 = torch.as_tensor(width2, dtype=r.dtype, device=r.device)
    point = width2 <= 0
    scaled = r / torch.sqrt(2.0 * torch.where(point, torch.ones_like(width2), width2))
    return torch.where(point, torch.zeros_like(scaled), torch.erfc(scaled)) / r


def real_space_kernel(r: torch.Tensor, width2: torch.Tensor | float, split2: float) -> torch.Tensor:
    """Real-space Ewald kernel [erfc(r/(√2W)) − erfc(r/(√2w))]/r, W² = w² + 2a²; Å⁻¹.

    Args:
        r: (...) distances in Å.
        width2: pair variance w² = s_i² + s_j² in Å².
        split2: splitting variance a² in Å² (per charge).
    """
    width2 = torch.as_tensor(width2, dtype=r.dtype, device=r.device)
    return erfc_over_r(r, width2 + 2.0 * split2) - erfc_over_r(r, width2)


def reciprocal_self_energy(charges: torch.Tensor, widths2: torch.Tensor, split2: float) -> torch.Tensor:
    """Σ_i k_e q_i²/(√(2π) W_ii), W_ii² = 2 s_i² + 2a²: each charge with itself in the reciprocal sum; eV."""
    total2 = 2.0 * widths2 + 2.0 * split2
    if bool((total2 <= 0).any()):
        raise ValueError("a point charge needs a positive Ewald splitting width")
    return COULOMB * (charges**2 / torch.sqrt(total2)).sum() / _SQRT_2PI


def gaussian_self_energy(charges: torch.Tensor, widths2: torch.Tensor) -> torch.Tensor:
    """Electrostatic self-energy of each Gaussian charge, Σ_i k_e q_i²/(2√π s_i); eV (point charges not allowed)."""
    if bool((widths2 <= 0).any()):
        raise ValueError("the self-energy of a point charge (width 0) is infinite")
    return COULOMB * (charges**2 / torch.sqrt(widths2)).sum() / (2.0 * math.sqrt(math.pi))


def background_energy(total_charge: torch.Tensor, volume: torch.Tensor, split2: float) -> torch.Tensor:
    """Neutralising-background term −2π k_e a² Q²/V of a charged periodic cell (0 when a = 0); eV."""
    return -(total_charge**2) * split2 / (2.0 * EPSILON0 * volume)


def fourier_prefactor(k2: torch.Tensor, split2: float) -> torch.Tensor:
    """e^(−k² a²)/k² (Å²): the reciprocal kernel without the per-charge factors e^(−k² s_i²/2)."""
    return torch.exp(-k2 * split2) / k2
