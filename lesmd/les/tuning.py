"""Choosing the Ewald parameters (splitting width, cutoffs, mesh) from a requested accuracy.

``accuracy`` ε is a relative error: every truncated tail (reciprocal cutoff, real-space cutoff, mesh aliasing)
is bounded by ε times the energy scale k_e Σ_i q_i² / W of the charges (W the relevant Gaussian width), the size
of the Gaussian self-energy. With x = erfc⁻¹(ε):

* reciprocal sum: the tail beyond k of a Gaussian kernel of total width W is k_e Σq²/(√(2π)W) · erfc(kW/√2)
  (integrate e^(−k²W²/2)/k² over k-space), so the window starts at k_on = √2 x / W_min and ends at 1.2 k_on;
* real space: erfc(r/(√2 W_max)) ≤ ε gives r_cut = √2 x W_max;
* splitting: a = 0 (pure reciprocal sum, no real space; the LES case) when the narrowest pair width
  w_min = min √(s_i² + s_j²) is at least ``PURE_RECIPROCAL_WIDTH``: a fixed rule, so the LES energy is one smooth
  function of the cell (no switching as the cell changes). Narrower charges get a > 0 with a total width W² =
  w_min² + 2a² balancing real and reciprocal costs, W ∝ (V²/N)^(1/6), rounded to a grid of 2^(1/4) steps so
  that it changes only rarely with the cell. The real-space cutoff then makes the energy jump by less than
  ε × scale when a pair crosses it.
* mesh (smooth PME): spacing h = π/k_cut (the mesh resolves every mode of the window) and B-spline order 8 down
  to ε = 1e-8, 10 below; for ε ≥ 1e-4 order 6 on a 1.25× finer mesh (h = π/(1.25 k_cut)), which costs about half
  as much at water density (216 instead of 512 mesh points per charge) and keeps the force error at the size of
  the ε truncation itself (water, ε = 1e-4: 0.13 meV/Å rms against 0.05–0.08 for the truncation). With the
  self-aliasing correction of :mod:`lesmd.les.mesh` the measured mesh energy error is well below ε, and forces
  and stress agree with the direct sum to ~1e-5 relative at ε = 1e-6 (tests/test_mesh.py). The mesh shape
  changes in integer steps with the cell: a step changes the energy by the (sub-ε) mesh error, not more.
* method "auto": the mesh from ``MESH_MIN_ATOMS`` charges on, the direct k-sum below (benchmarks/bench_ewald.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

#: k_cut / k_on of the smooth reciprocal window.
WINDOW_RATIO = 1.2
#: Narrowest pair width w_min (Å) summed purely in reciprocal space (LES: w = σ).
PURE_RECIPROCAL_WIDTH = 0.7
#: Smallest number of charges for which method="auto" takes the mesh.
MESH_MIN_ATOMS = 100
#: Mesh refinement (spacing π/(this · k_cut)) of the order-6 B-splines used for accuracies ≥ 1e-4.
COARSE_MESH_REFINEMENT = 1.25


@dataclass(frozen=True)
class EwaldParameters:
    """Numerical parameters of one Ewald evaluation (lengths in Å, wave numbers in Å⁻¹).

    Attributes:
        split2: splitting variance a² per charge (0: no real-space part).
        r_cut: real-space cutoff (unused when split2 = 0).
        k_on, k_cut: start and end of the smooth reciprocal window.
        method: "direct" (k-vector sum) or "mesh" (smooth PME).
        mesh_spacing: target mesh spacing (mesh only).
        order: B-spline order (mesh only).
    """

    split2: float
    r_cut: float
    k_on: float
    k_cut: float
    method: str = "direct"
    mesh_spacing: float = 0.0
    order: int = 6


@functools.lru_cache(maxsize=64)
def erfcinv(value: float) -> float:
    """x with erfc(x) = value, for 0 < value < 1 (bisection; exact to double precision; cached: every energy
    call asks for the same few accuracies)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"accuracy must lie in (0, 1), got {value}")
    low, high = 0.0, 30.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if math.erfc(mid) > value:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def choose_parameters(
    min_width2: float, max_width2: float, volume: float, n_atoms: int, accuracy: float, method: str = "auto"
) -> EwaldParameters:
    """Parameters for one periodic evaluation.

    Args:
        min_width2, max_width2: smallest and largest per-charge variance s² (Å²).
        volume: cell volume (Å³).  n_atoms: number of charges.  accuracy: relative accuracy ε.
        method: "auto", "direct" or "mesh".
    """
    if method == "auto":
        method = "mesh" if n_atoms >= MESH_MIN_ATOMS else "direct"
    x = erfcinv(accuracy)
    if method == "direct":
        # Cost-balancing total pair width for Ewald sums: α_opt = √π (N/V²)^(1/6), W = 1/(√2 α).
        balanced = (volume * volume / max(n_atoms, 1)) ** (1.0 / 6.0) / math.sqrt(2.0 * math.pi)
    else:
        balanced = 0.6 * (volume / max(n_atoms, 1)) ** (1.0 / 3.0)
    balanced = 2.0 ** (round(4.0 * math.log2(balanced)) / 4.0)
    params = _parameters(min_width2, max_width2, balanced, x, method)
    if method == "mesh":
        if accuracy >= 1e-4:  # low order on a finer mesh: 2.4× fewer spread points than order 8
            params = replace(params, mesh_spacing=math.pi / (COARSE_MESH_REFINEMENT * params.k_cut), order=6)
        else:
            params = replace(params, mesh_spacing=math.pi / params.k_cut, order=8 if accuracy >= 1e-8 else 10)
    return params


def direct_parameters(
    min_width2: float, max_width2: float, volume: float, n_atoms: int, accuracy: float
) -> EwaldParameters:
    """Parameters for the direct k-sum (see :func:`choose_parameters`)."""
    return choose_parameters(min_width2, max_width2, volume, n_atoms, accuracy, "direct")


def _parameters(min_width2: float, max_width2: float, target: float, x: float, method: str) -> EwaldParameters:
    pair_min2 = 2.0 * min_width2
    if pair_min2 >= PURE_RECIPROCAL_WIDTH**2:
        split2 = 0.0
    else:
        split2 = 0.5 * (max(target, PURE_RECIPROCAL_WIDTH) ** 2 - pair_min2)
    total_min = math.sqrt(pair_min2 + 2.0 * split2)
    total_max = math.sqrt(2.0 * max_width2 + 2.0 * split2)
    k_on = math.sqrt(2.0) * x / total_min
    r_cut = math.sqrt(2.0) * x * total_max if split2 > 0.0 else 0.0
    return EwaldParameters(split2=split2, r_cut=r_cut, k_on=k_on, k_cut=WINDOW_RATIO * k_on, method=method)
