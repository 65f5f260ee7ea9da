"""Latent charges of one structure in one autograd node: charge head, smooth bound and total-charge shift.

    h = F W1ᵀ + b1,   a = silu(h),   raw = a w2 + b2                 (the one-hidden-layer charge head)
    r_i = bound(raw_i)   (identity inside [lower, upper], u + w·tanh((raw − u)/w) above, the mirror image below:
                          :func:`lesmd.models.les.bound_charges`)
    q = r − (Σ r − Q)/N                                               (:func:`lesmd.les.charges.apply_total_charge`)

Backward, written out: ∂L/∂r = ∂L/∂q − mean(∂L/∂q); ∂L/∂raw = ∂L/∂r · bound'(raw); ∂L/∂h = ∂L/∂raw w2 ⊙ silu'(h)
with silu'(x) = σ(x)(1 + x(1 − σ(x))); ∂L/∂F = (∂L/∂h) W1; and the parameter gradients when they are wanted.
The same quantities as the composable modules (the reference, used for training batches and wherever this node
does not apply), with one matrix product each way and the rest as numpy on (N, H) arrays: at MD sizes each
tensor operation costs ~10 µs, far more than its arithmetic. When a graph of the gradient is requested (force
training), the backward differentiates the composable version instead, so higher derivatives are exact.
"""

from __future__ import annotations

import numpy as np
import torch

from lesmd.les.charges import apply_total_charge


def fused_head_applies(head: torch.nn.Sequential, features: torch.Tensor) -> bool:
    """Whether :func:`latent_charges` can run: a head Linear → SiLU → Linear(→ 1) on CPU float32/float64."""
    return (
        len(head) == 3 and isinstance(head[0], torch.nn.Linear) and isinstance(head[1], torch.nn.SiLU)
        and isinstance(head[2], torch.nn.Linear) and head[2].out_features == 1
        and features.device.type == "cpu" and features.dtype in (torch.float32, torch.float64)
        and head[0].weight.dtype == features.dtype
    )  # fmt: skip


def latent_charges(
    head: torch.nn.Sequential, features: torch.Tensor, bounds: tuple[np.ndarray, np.ndarray, float] | None,
    total_charge: float,
) -> torch.Tensor:  # fmt: skip
    """Charges q (N,) e of one structure (module docstring), differentiable w.r.t. features and head parameters.

    Args:
        head: the charge head (see :func:`fused_head_applies`).
        features: (N, F) per-atom features.
        bounds: per-atom (lower (N,), upper (N,), width) of the smooth bound in e (float64), or None for none.
        total_charge: Q, e.
    """
    if not np.isfinite(total_charge):
        raise ValueError(f"total_charge must be finite, got {total_charge}")
    first, last = head[0], head[2]
    return _LatentCharges.apply(features, first.weight, first.bias, last.weight, last.bias, bounds, float(total_charge))


def reference_charges(
    head: torch.nn.Sequential, features: torch.Tensor, bounds: tuple[np.ndarray, np.ndarray, float] | None,
    total_charge: float, parameters: tuple | None = None,
) -> torch.Tensor:  # fmt: skip
    """The same charges by the composable torch modules (differentiable to any order); ``parameters`` (W1, b1, W2,
    b2) replace the head's own when given."""
    from lesmd.models.les import bound_charges

    w1, b1, w2, b2 = parameters if parameters is not None else (head[0].weight, head[0].bias, head[2].weight,
                                                                 head[2].bias)  # fmt: skip
    raw = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(features, w1, b1)), w2, b2)
    raw = raw.squeeze(-1)
    if bounds is not None:
        lower, upper, width = bounds
        raw = bound_charges(raw, torch.as_tensor(lower, dtype=raw.dtype), torch.as_tensor(upper, dtype=raw.dtype),
                            width)  # fmt: skip
    return apply_total_charge(raw, total_charge)


def _bound(
    raw: np.ndarray, bounds: tuple[np.ndarray, np.ndarray, float] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """bound(raw) and its derivative (None: the identity, when every charge is inside its range)."""
    if bounds is None:
        return raw, None
    lower, upper, width = bounds
    above, below = raw > upper, raw < lower
    if not (above.any() or below.any()):
        return raw, None
    t_up = np.tanh(np.clip(raw - upper, 0.0, None) / width)
    t_low = np.tanh(np.clip(lower - raw, 0.0, None) / width)
    value = np.where(above, upper + width * t_up, np.where(below, lower - width * t_low, raw))
    slope = np.where(above, 1.0 - t_up * t_up, np.where(below, 1.0 - t_low * t_low, 1.0))
    return value.astype(raw.dtype), slope.astype(raw.dtype)


class _LatentCharges(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, w1, b1, w2, b2, bounds, total_charge):  # noqa: D102
        h = torch.addmm(b1.detach(), features.detach(), w1.detach().T).numpy()  # (N, H)
        sigma = 1.0 / (1.0 + np.exp(-h))
        a = h * sigma
        w2_row = w2.detach().numpy()[0]
        raw = np.einsum("nh,h->n", a, w2_row) + b2.detach().numpy()[0]
        if not np.isfinite(raw).all():
            raise ValueError("raw_charges contains NaN or inf")
        bounded, slope = _bound(raw, bounds)
        q = bounded - (bounded.sum() - total_charge) / bounded.shape[0]
        ctx.save_for_backward(features, w1, b1, w2, b2)
        ctx.bounds, ctx.total_charge = bounds, total_charge
        ctx.state = (h, sigma, a, w2_row, slope)
        return torch.from_numpy(q.astype(h.dtype, copy=False))

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        features, w1, b1, w2, b2 = ctx.saved_tensors
        needed = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiate the composable version
            with torch.enable_grad():
                q = reference_charges(None, features, ctx.bounds, ctx.total_charge, (w1, b1, w2, b2))
            wanted = [t for t, need in zip((features, w1, b1, w2, b2), needed, strict=True) if need]
            grads = iter(torch.autograd.grad(q, wanted, grad, create_graph=True)) if wanted else iter(())
            return (*(next(grads) if need else None for need in needed), None, None)
        h, sigma, a, w2_row, slope = ctx.state
        g = grad.numpy()
        g_raw = g - g.mean()  # through the total-charge shift
        if slope is not None:
            g_raw = g_raw * slope
        g_h = np.outer(g_raw, w2_row) * (sigma * (1.0 + h * (1.0 - sigma)))  # (N, H)
        g_h_t = torch.from_numpy(g_h.astype(h.dtype, copy=False))
        out = [None] * 5
        if needed[0]:
            out[0] = g_h_t @ w1.detach()
        if needed[1]:
            out[1] = g_h_t.T @ features.detach()
        if needed[2]:
            out[2] = torch.from_numpy(g_h.sum(0).astype(h.dtype))
        if needed[3]:
            out[3] = torch.from_numpy(np.einsum("n,nh->h", g_raw, a).astype(h.dtype)[None, :])
        if needed[4]:
            out[4] = torch.from_numpy(np.asarray([g_raw.sum()], dtype=h.dtype))
        return (*out, None, None)
