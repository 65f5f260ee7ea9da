"""Frozen electrodes: the electrode–electrolyte coupling φ with everything that depends on the electrodes precomputed.

With the electrode atoms fixed, per MD step only the electrolyte side of the coupling sums of
:mod:`lesmd.electrode.electrostatics` changes. This module holds that per-step work and its exact gradients,
written out by hand (``torch.autograd.Function``) because autograd's generic backward redoes the cos/sin and keeps
many intermediate tables; the numbers are those of the generic path (tested against it).

Reciprocal space (cell with its third vector along z): k = k∥ + k_z, k_z = 2πl/L_z, f = r·box⁻¹, and

    φ_i = Re Σ_p G_ip R_p,u(i),  R_pu = Σ_l W_pl S_pl H_ul,  S_pl = Σ_j p_j e^(2πi(h f₁ + k f₂)) e^(2πi l f₃),
    G_ip = e^(−ik∥_p·r_i) e^(−k∥_p²s_i²/2),  H_ul = e^(−ik_z,l z_u) e^(−k_z,l² s_u²/2),  W_pl = 2w(k) f_ly(k),

with p the in-plane index pairs (h, k), u the distinct (z, s) of the electrode atoms (a few layers) and W zero off
the k set. The four real sums cc, cs, sc, ss = Σ_j p_j (cos|sin)(θ∥) (cos|sin)(θ_z) at a = |l| give S at +a and −a
(cos even, sin odd), and the ±a terms pair up exactly (H_u,−a = H_ua*):

    Re R_pu = Σ_a W⁺_pa (cc hc + cs hs) + W⁻_pa (sc hs − ss hc),
    Im R_pu = Σ_a W⁺_pa (sc hc + ss hs) + W⁻_pa (cs hc − cc hs),

hc − i hs = H_ua, W^± = W_p,a ± W_p,−a (a > 0), W⁺ = W_p0 and W⁻ = 0 at a = 0. Per step this costs N·(P + L')
cos/sin and one (2P, N)·(N, 2L') matrix product, L' = max|l| + 1; the gradient two more products of that size.

Real space: the electrode–electrolyte pairs of a Verlet list with fixed electrode ends b_n (lattice image included),
r_n = |x_j(n) − b_n|, and φ_i = Σ_n k_e p_j(n) K(r_n) over the pairs of i within r_c,
K(r) = [erfc(r/√(2W²)) − erfc(r/√(2w²))]/r (:func:`lesmd.les.potentials.real_space_kernel`),
K'(r) = [(2/√π)(c_w e^(−c_w²r²) − c_W e^(−c_W²r²)) − K(r)]/r with c = 1/√(2·variance).
Units: e, Å, V; float64.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from lesmd.units import COULOMB

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def electrode_tables(sep: dict, k: torch.Tensor, weight: torch.Tensor, pos_el: torch.Tensor, box: torch.Tensor,
                     widths_el: torch.Tensor, width_ly: float) -> dict:
    """The electrode-side factors of the reciprocal sum (module docstring), built once per electrode geometry.

    Args:
        sep: the k-set decomposition of :func:`lesmd.electrode.electrostatics._separable_indices`.
        k: (M, 3) k-vectors, Å⁻¹.  weight: (M,) w(k) = e^(−k²a²)/k² · window/(Vε0).
        pos_el: (N_el, 3) Å.  box: (3, 3) Ewald cell, third vector along z.  widths_el: (N_el,) Å.
        width_ly: electrolyte Gaussian width, Å.

    Returns the real tables: W^± tiled to (2P, 2L'), the right factors [hc; hs] and [−hs; hc] (2L', U),
    G = [G_re, −G_im] (N_el, 2P), the layer of each electrode atom (N_el,), box⁻¹ and the index pairs.
    """
    recip = 2.0 * math.pi * torch.linalg.inv(box).T  # rows b₁, b₂, b₃ (with 2π)
    k_par = sep["pairs"] @ recip[:2]  # (P, 3)
    k_abs = sep["abs_ls"] * recip[2, 2]  # (L',) k_z at |l|
    k2 = (k.detach() ** 2).sum(-1)
    n_par, n_abs = len(sep["pairs"]), len(sep["abs_ls"])
    grid = torch.zeros(n_par, len(sep["ls"]), dtype=box.dtype, device=box.device)
    grid[sep["pair_index"], sep["l_index"]] = 2.0 * weight.detach() * torch.exp(-0.5 * k2 * width_ly**2)
    plus = torch.zeros(n_par, n_abs, dtype=box.dtype, device=box.device).index_add(1, sep["abs_index"], grid)
    minus = torch.zeros_like(plus).index_add(1, sep["abs_index"], grid * sep["l_sign"][None, :])
    keys, unique_index = torch.unique(torch.stack([pos_el[:, 2], widths_el.detach()], dim=1), dim=0,
                                      return_inverse=True)
    phase_par = pos_el @ k_par.T  # (N_el, P)
    damp_par = torch.exp(-0.5 * (k_par * k_par).sum(-1)[None, :] * widths_el.detach()[:, None] ** 2)
    phase_z = k_abs[:, None] * keys[None, :, 0]  # (L', U)
    damp_z = torch.exp(-0.5 * (k_abs**2)[:, None] * keys[None, :, 1] ** 2)
    hc, hs = torch.cos(phase_z) * damp_z, torch.sin(phase_z) * damp_z
    # W⁻ vanishes for the ±l-symmetric k sets of a cell with c ⟂ (a, b) except on the pair (0, 0), where sin θ∥ = 0
    # and G_im = 0 make its terms exactly 0: then the W⁻ products are skipped
    zero_pair = (sep["pairs"] == 0).all(1)
    needs_minus = bool((minus[~zero_pair] != 0).any())
    return {"plus": plus.repeat(2, 2), "minus": minus.repeat(2, 2) if needs_minus else None,
            "unique_index": unique_index,
            "h_plus": torch.cat([hc, hs]), "h_minus": torch.cat([-hs, hc]),
            "g": torch.cat([torch.cos(phase_par), torch.sin(phase_par)], dim=1) * damp_par.repeat(1, 2),
            "inverse": sep["inverse"], "pairs": sep["pairs"], "abs_ls": sep["abs_ls"]}


def frozen_reciprocal(charges: torch.Tensor, positions: torch.Tensor, tables: dict) -> torch.Tensor:
    """Reciprocal part of φ (N_el,) in V from the electrolyte charges (N,) e at positions (N, 3) Å.

    Differentiable w.r.t. both (hand-written gradient, :class:`_FrozenReciprocal`); ``tables`` from
    :func:`electrode_tables`.
    """
    return _FrozenReciprocal.apply(charges, positions, tables)


class _FrozenReciprocal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, charges: torch.Tensor, positions: torch.Tensor, tables: dict) -> torch.Tensor:
        n_par, n_abs = tables["pairs"].shape[0], tables["abs_ls"].shape[0]
        frac = positions @ tables["inverse"]
        phase_par = (2.0 * math.pi) * (frac[:, :2] @ tables["pairs"].T)  # (N, P)
        phase_z = (2.0 * math.pi) * frac[:, 2:3] * tables["abs_ls"][None, :]  # (N, L')
        left = positions.new_empty(positions.shape[0], 2 * n_par)  # [cos θ∥, sin θ∥]
        right = positions.new_empty(positions.shape[0], 2 * n_abs)  # [cos θ_z, sin θ_z]
        torch.cos(phase_par, out=left[:, :n_par])
        torch.sin(phase_par, out=left[:, n_par:])
        torch.cos(phase_z, out=right[:, :n_abs])
        torch.sin(phase_z, out=right[:, n_abs:])
        weighted = charges[:, None] * right  # the charges on the narrower factor
        table = left.T @ weighted  # [[cc, cs], [sc, ss]]
        r = (tables["plus"] * table) @ tables["h_plus"]  # rows: [W⁺(cc hc + cs hs); W⁺(sc hc + ss hs)]
        if tables["minus"] is not None:
            minus = (tables["minus"] * table) @ tables["h_minus"]  # rows: [W⁻(cs hc − cc hs); W⁻(ss hc − sc hs)]
            r = r + torch.cat([-minus[n_par:], minus[:n_par]])
        # r = [Re R; Im R] (2P, U); φ_i = Σ_p G_re Re R_p,u(i) − G_im Im R_p,u(i)
        ctx.tables = tables
        ctx.save_for_backward(charges, left, right, weighted)
        return (tables["g"] * r.T.index_select(0, tables["unique_index"])).sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_phi: torch.Tensor):
        charges, left, right, weighted = ctx.saved_tensors
        tables = ctx.tables
        n_par, n_abs = tables["pairs"].shape[0], tables["abs_ls"].shape[0]
        n_layers = tables["h_plus"].shape[1]
        grad_r = torch.zeros(n_layers, 2 * n_par, dtype=left.dtype, device=left.device)
        grad_r = grad_r.index_add_(0, tables["unique_index"], grad_phi[:, None] * tables["g"]).T  # (2P, U)
        grad_table = tables["plus"] * (grad_r @ tables["h_plus"].T)  # (2P, 2L')
        if tables["minus"] is not None:
            grad_minus = torch.cat([grad_r[n_par:], -grad_r[:n_par]])
            grad_table = grad_table + tables["minus"] * (grad_minus @ tables["h_minus"].T)
        grad_left = weighted @ grad_table.T  # (N, 2P)
        grad_weighted = left @ grad_table  # (N, 2L')
        grad_charges = (grad_weighted * right).sum(1) if ctx.needs_input_grad[0] else None
        grad_positions = None
        if ctx.needs_input_grad[1]:
            grad_par = left[:, :n_par] * grad_left[:, n_par:] - left[:, n_par:] * grad_left[:, :n_par]
            grad_z = charges[:, None] * (right[:, :n_abs] * grad_weighted[:, n_abs:]
                                         - right[:, n_abs:] * grad_weighted[:, :n_abs])
            grad_frac = (2.0 * math.pi) * torch.cat([grad_par @ tables["pairs"], grad_z @ tables["abs_ls"][:, None]],
                                                    dim=1)
            grad_positions = grad_frac @ tables["inverse"].T
        return grad_charges, grad_positions, None


def verlet_distances(coordinates: torch.Tensor, j: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """r_n = |x_j(n) − b_n| (P,) Å for coordinates (3, N) Å (one row per Cartesian component, differentiable),
    electrolyte indices j (P,) and fixed ends b (3, P) Å."""
    return _VerletDistances.apply(coordinates, j, base)


class _VerletDistances(torch.autograd.Function):
    @staticmethod
    def forward(ctx, coordinates: torch.Tensor, j: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        # 1-D gathers per component: much cheaper than a (P, 3) row gather
        delta = torch.stack([coordinates[d].index_select(0, j) for d in range(3)]) - base
        r = torch.sqrt((delta * delta).sum(0))
        ctx.save_for_backward(delta, r, j)
        ctx.n_atoms = coordinates.shape[1]
        return r

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_r: torch.Tensor):
        delta, r, j = ctx.saved_tensors
        along = delta * (grad_r / r)  # (3, P): ∂r/∂x_j = (x_j − b)/r
        grad = torch.zeros(3, ctx.n_atoms, dtype=along.dtype, device=along.device)
        for d in range(3):
            grad[d].index_add_(0, j, along[d])
        return grad, None, None


def screened_pair_sum(distances: torch.Tensor, charges: torch.Tensor, i: torch.Tensor, scales: tuple,
                      cutoff: float, n_electrode: int) -> torch.Tensor:
    """φ_i = Σ_n k_e p_n K(r_n) (N_el,) V over the pairs n of electrode atom i with r_n < ``cutoff``.

    Args:
        distances: (P,) Å.  charges: (P,) electrolyte charge of each pair, e.  i: (P,) electrode index.
        scales: (c_W, c_w), each (P,) Å⁻¹: 1/√(2W²) and 1/√(2w²) of the kernel K (module docstring).
        cutoff: r_c, Å (pairs beyond it contribute 0).  n_electrode: N_el.
    Differentiable w.r.t. distances and charges (hand-written gradient).
    """
    return _ScreenedPairSum.apply(distances, charges, i, scales[0], scales[1], cutoff, n_electrode)


class _ScreenedPairSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, charges, i, scale_outer, scale_inner, cutoff, n_electrode):
        x_outer, x_inner = r * scale_outer, r * scale_inner
        inside = r < cutoff
        kernel = torch.where(inside, (torch.erfc(x_outer) - torch.erfc(x_inner)) / r, 0.0)
        phi = torch.zeros(n_electrode, dtype=r.dtype, device=r.device).index_add_(0, i, COULOMB * charges * kernel)
        derivative = None
        if ctx.needs_input_grad[0]:
            gauss = scale_inner * torch.exp(-x_inner * x_inner) - scale_outer * torch.exp(-x_outer * x_outer)
            derivative = torch.where(inside, (_TWO_OVER_SQRT_PI * gauss - kernel) / r, 0.0)
        ctx.save_for_backward(charges, i, kernel, derivative)
        return phi

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_phi):
        charges, i, kernel, derivative = ctx.saved_tensors
        grad_pair = COULOMB * grad_phi.index_select(0, i)
        grad_r = grad_pair * charges * derivative if ctx.needs_input_grad[0] else None
        grad_charges = grad_pair * kernel if ctx.needs_input_grad[1] else None
        return grad_r, grad_charges, None, None, None, None, None
