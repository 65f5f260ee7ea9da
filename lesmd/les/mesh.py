"""How it is summed (3): smooth particle-mesh Ewald (SPME), O(N log N).

Essmann, Perera, Berkowitz, Darden, Lee, Pedersen, J. Chem. Phys. 103, 8577 (1995). Charges are spread on a
regular K1×K2×K3 mesh over the (triclinic) cell with cardinal B-splines M_p of order p in scaled fractional
coordinates u_d = K_d (r · a*_d); the structure factor is S(m) ≈ b1(m1) b2(m2) b3(m3) FFT[Q](m), with the
Euler exponential-spline factors |b_d(m)|² = 1 / |Σ_{j=0}^{p−2} M_p(j+1) e^(2πi m j/K_d)|². The energy is

    E_recip = (1/(2Vε0)) Σ_{m≠0} e^(−k²a²)/k² · e^(−k² s²) · window(k) · B(m) |FFT[Q](m)|²,  k = Σ_d m_d b_d

(rfftn: half the modes, counted twice). Charges of different widths s are spread on separate meshes (one per
distinct width) and combined in Fourier space. Forces and the cell derivative (stress) are exact derivatives of
the discrete mesh energy: the spreading step and, for a single width (LES), the cell dependence of the mode
weights have closed-form backward passes (:class:`_Spread`, :class:`_SingleWidthCellTerms`; the weights of a cell
are cached, so a fixed cell costs nothing per step); everything else is autograd. Where a graph of the gradient is
requested (force or stress terms in a training loss) those two recompute with autograd, so higher derivatives are
exact as well.

Self-aliasing correction: the mesh energy of a lone charge deviates from the exact reciprocal self term by an
amount that depends only weakly on where the charge sits between mesh points, and this offset (∝ Σ q_i²)
dominates the mesh error. Its average over positions is exact and cheap: with w_d(m, t) = Σ_j M_p(t+j) e^(2πi m j/K),
⟨Π_d |w_d|²⟩ = Π_d ⟨|w_d|²⟩_t (t uniform in [0,1), Gauss–Legendre quadrature is exact for these polynomials), so

    E_mesh,corrected = E_mesh − Σ_groups Q2_g Σ_m G(m) e^(−k² s_g²) (B(m) Π_d ⟨|w_d(m)|²⟩ − 1),

G(m) = e^(−k²a²) window(k) / (2Vε0 k²) being the exact reciprocal weight of mode m,

Q2_g = Σ_{i in group} q_i². This lowers the mesh error by one to two orders of magnitude at no cost
(the same idea as the self-force/energy corrections of Ballenegger, Cerdà, Holm, JCTC 8, 936 (2012)).
"""

from __future__ import annotations

import ctypes
import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from numpy.polynomial import polynomial as P

from lesmd.les.checks import all_finite
from lesmd.les.kspace import smooth_window
from lesmd.les.lattice import inverse_cell, volume
from lesmd.les.potentials import fourier_prefactor
from lesmd.native import kernel_threads, load_library
from lesmd.units import EPSILON0

#: Number of charges from which :func:`spread` visits atoms in mesh order (faster from ~4000 on, measured).
SORT_MIN_ATOMS = 2048
#: C source of the spreading kernel (compiled by :mod:`lesmd.native`), its largest B-spline order, and the
#: number of charges from which its backward uses torch.get_num_threads() threads even off torch's OpenMP pool
#: (:func:`lesmd.native.kernel_threads`; lesmd.models.basis_moments.THREADS_MIN_EDGES on threads next to it)
NATIVE_SOURCE = Path(__file__).resolve().parent / "mesh_spread.c"
NATIVE_MAX_ORDER = 12
NATIVE_THREADS_MIN_ATOMS = 4096


def fft_size(minimum: int) -> int:
    """Smallest integer ≥ ``minimum`` whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    n = max(int(minimum), 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def mesh_shape(cell: torch.Tensor, spacing: float, order: int) -> tuple[int, int, int]:
    """Mesh points per lattice direction, K_d = fft_size(max(d_d / spacing, 2·order)).

    d_d = 2π/|b_d| is the spacing of the lattice planes normal to b_d, so the mesh resolves wave numbers up to
    π/``spacing`` along every reciprocal direction. The periodic sums call this with the canonical reduced cell
    (:func:`lesmd.les.lattice.reduce_cell`), whose vectors are close to orthogonal, so d_d ≈ |a_d|; sizing by |a_d|
    instead (every mode of the sphere on the mesh even for a skewed cell) was tried and was 10× less accurate
    against torch-pme on a triclinic cell (2.3e-6 against 2.6e-7 eV at ε = 1e-8).
    """
    return _mesh_shape(cell.detach().cpu().double().numpy().tobytes(), float(spacing), int(order))


@lru_cache(maxsize=64)
def _mesh_shape(cell: bytes, spacing: float, order: int) -> tuple[int, int, int]:
    inverse = np.linalg.inv(np.frombuffer(cell, dtype=np.float64).reshape(3, 3))  # columns: b_d / 2π
    plane_spacing = 1.0 / np.linalg.norm(inverse, axis=0)
    return tuple(fft_size(max(math.ceil(float(d) / spacing), 2 * order)) for d in plane_spacing)


#: a mesh above this many points is refused when it also exceeds MAX_POINTS_PER_CHARGE per charge (mostly vacuum);
#: a dense system at water density needs ~30-110 points per charge, so large real systems pass
MAX_MESH_POINTS = 1 << 24
MAX_POINTS_PER_CHARGE = 2000


def check_mesh_cost(shape: tuple[int, int, int], n_charges: int) -> None:
    """ValueError naming the mesh size and memory when a cell needs more than :data:`MAX_MESH_POINTS` points and
    more than :data:`MAX_POINTS_PER_CHARGE` per charge: a box that is mostly vacuum (seconds and GB per call)."""
    points = math.prod(shape)
    if points > MAX_MESH_POINTS and points > MAX_POINTS_PER_CHARGE * max(n_charges, 1):
        gib = points * 8 * 4 / 2**30  # a few float64 meshes (charges, transform, gradients)
        raise ValueError(
            f"the periodic cell needs a {shape[0]}x{shape[1]}x{shape[2]} Ewald mesh ({points:.3g} points, ~{gib:.0f} "
            f"GiB) for {n_charges} charges: too large a cell for a periodic LES sum (mostly vacuum?); use open "
            "boundaries (pbc=False) for an isolated system, or a smaller cell"
        )


@lru_cache(maxsize=16)
def _bspline_coefficients(order: int) -> np.ndarray:
    """(p, p) coefficients C with M_p(t + j) = Σ_k C[j, k] t^k for t in [0, 1) (Cox–de Boor recursion)."""
    weights = [np.array([0.0, 1.0]), np.array([1.0, -1.0])]  # M_2(t) = t, M_2(t + 1) = 1 − t
    for n in range(3, order + 1):
        new = []
        for j in range(n):
            term = np.zeros(1)
            if j < n - 1:  # (t + j) M_{n−1}(t + j)
                term = P.polyadd(term, P.polymul([j, 1.0], weights[j]))
            if j > 0:  # (n − t − j) M_{n−1}(t + j − 1)
                term = P.polyadd(term, P.polymul([n - j, -1.0], weights[j - 1]))
            new.append(term / (n - 1))
        weights = new
    coefficients = np.zeros((order, order))
    for j, w in enumerate(weights):
        coefficients[j, : len(w)] = w
    return coefficients


@lru_cache(maxsize=32)
def _coefficient_tensors(order: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, p) Cᵀ and (p−1, p) slope matrix Dᵀ: weights = powers(t) @ Cᵀ, derivatives = powers(t)[..., :−1] @ Dᵀ."""
    coefficients = torch.as_tensor(_bspline_coefficients(order), dtype=torch.float64)
    slope = coefficients[:, 1:] * torch.arange(1, order, dtype=torch.float64)
    return tuple(m.T.contiguous().to(device=device, dtype=dtype) for m in (coefficients, slope))


def _powers(t: torch.Tensor, count: int) -> torch.Tensor:
    """(..., count) powers t^0 … t^(count−1)."""
    ones = torch.ones_like(t)[..., None]
    if count == 1:
        return ones
    return torch.cat([ones, torch.cumprod(t[..., None].expand(*t.shape, count - 1), dim=-1)], dim=-1)


def bspline_weights(u: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cardinal B-spline weights M_p(t + j), j = 0..p−1, for scaled coordinates u = floor(u) + t.

    Args:
        u: (...) scaled fractional coordinates.
    Returns:
        base index floor(u) (long, (...)) and weights (..., p) for mesh points floor(u) − j (differentiable).
    """
    base = torch.floor(u.detach())
    coefficients_t, _ = _coefficient_tensors(order, u.dtype, u.device)
    return base.long(), _powers(u - base, order) @ coefficients_t


def bspline_derivatives(u: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Base index, weights M_p(t+j) and their derivatives d/du M_p(t+j), each (..., p) (differentiable)."""
    base = torch.floor(u.detach())
    coefficients_t, slope_t = _coefficient_tensors(order, u.dtype, u.device)
    powers = _powers(u - base, order)
    return base.long(), powers @ coefficients_t, powers[..., :-1] @ slope_t


def euler_factor(size: int, order: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """|b(m)|² for m in FFT order (length ``size``): the SPME exponential-spline correction (dimensionless)."""
    t = torch.zeros((), dtype=torch.float64)
    _, m_p = bspline_weights(t[None], order)  # M_p(j), j = 0..p−1 (M_p(0) = 0)
    values = m_p[0]
    m = torch.arange(size, dtype=torch.float64)
    j = torch.arange(order, dtype=torch.float64)
    angle = 2.0 * math.pi * m[:, None] * (j[None, :] - 1.0) / size  # Σ_j M_p(j) e^(2πi m (j−1)/K)
    re = (values * torch.cos(angle)).sum(-1)
    im = (values * torch.sin(angle)).sum(-1)
    return (1.0 / (re * re + im * im)).to(dtype=dtype, device=device)


@lru_cache(maxsize=32)
def _half_mesh_factors(shape: tuple[int, int, int], order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """B(m) and B(m) Π_d ⟨|w_d(m)|²⟩ − 1 on the rfft half mesh (float64, cell independent)."""
    half = shape[2] // 2 + 1
    euler = [euler_factor(shape[d], order, torch.float64, torch.device("cpu")) for d in range(3)]
    b = euler[0][:, None, None] * euler[1][None, :, None] * euler[2][None, None, :half]
    nodes, quad = np.polynomial.legendre.leggauss(order + 1)
    t = torch.tensor((nodes + 1.0) / 2.0, dtype=torch.float64)
    quad = torch.tensor(quad / 2.0, dtype=torch.float64)
    _, w = bspline_weights(t, order)  # (T, p)
    mean = []
    for d in range(3):
        angle = 2.0 * math.pi * torch.arange(shape[d], dtype=torch.float64)[:, None] * torch.arange(order) / shape[d]
        re, im = w @ torch.cos(angle).T, w @ torch.sin(angle).T  # (T, K)
        mean.append(((re * re + im * im) * quad[:, None]).sum(0))
    average = mean[0][:, None, None] * mean[1][None, :, None] * mean[2][None, None, :half]
    return b, b * average - 1.0


@lru_cache(maxsize=32)
def _stencil(shape: tuple[int, int, int], order: int, device: torch.device) -> torch.Tensor:
    """(p³,) int32 flat offsets of the points b − j (j = 0..p−1 per direction, layout (j0, j1, j2)) from the
    padded index of b, on the mesh padded by p − 1 points in front of every direction (padded coordinate
    c = b − j + p − 1, so no point wraps)."""
    pad = order - 1
    j = torch.arange(pad, -1, -1, device=device)
    offsets = (j[:, None, None] * (shape[1] + pad) + j[None, :, None]) * (shape[2] + pad) + j[None, None, :]
    return offsets.reshape(-1).int()


def _padded_indices(base: torch.Tensor, shape: tuple[int, int, int], order: int) -> torch.Tensor:
    """(N·p³,) int32 flat indices on the padded mesh (:func:`_stencil`) of the points floor(u) − j."""
    pad = order - 1
    b = base % torch.tensor(shape, device=base.device)
    corner = ((b[:, 0] * (shape[1] + pad) + b[:, 1]) * (shape[2] + pad) + b[:, 2]).int()
    return (corner[:, None] + _stencil(shape, order, base.device)).reshape(-1)


def _fold(padded: torch.Tensor, order: int) -> torch.Tensor:
    """Periodic mesh (K1, K2, K3) from the padded one: padded coordinate c lands on (c − (p − 1)) mod K."""
    pad = order - 1
    mesh = padded
    for d in range(3):
        size = mesh.shape[d] - pad
        core = mesh.narrow(d, pad, size).clone()
        core.narrow(d, size - pad, pad).add_(mesh.narrow(d, 0, pad))
        mesh = core
    return mesh


def _unfold(mesh: torch.Tensor, order: int) -> torch.Tensor:
    """Padded mesh from a periodic one: its periodic extension by p − 1 points in front (the adjoint of
    :func:`_fold`; differentiable)."""
    pad = order - 1
    for d in range(3):
        mesh = torch.cat([mesh.narrow(d, mesh.shape[d] - pad, pad), mesh], dim=d)
    return mesh


class _Spread(torch.autograd.Function):
    """Q = Σ_i q_i Π_d M_p(u_id − k_d) with a hand-written, separable backward (gather + small contractions).

    The forward keeps the spline weights and their derivatives for a plain backward pass. When a graph of the
    gradient is requested (forces in a training loss), the backward recomputes them from u with differentiable
    torch operations instead, so double backward is exact.
    """

    @staticmethod
    def forward(ctx, charges, u, shape, order):  # noqa: D102
        base, w, dw = bspline_derivatives(u, order)
        index = _padded_indices(base, shape, order)
        qw = (charges[:, None] * w[:, 0])[:, :, None] * w[:, 1, None, :]
        values = qw[:, :, :, None] * w[:, 2, None, None, :]
        padded = [k + order - 1 for k in shape]
        mesh = charges.new_zeros(padded[0] * padded[1] * padded[2]).index_add_(0, index, values.reshape(-1))
        ctx.save_for_backward(charges, u)
        ctx.index, ctx.order, ctx.splines = index, order, (w, dw)
        return _fold(mesh.view(padded), order)

    @staticmethod
    def backward(ctx, grad_mesh):  # noqa: D102
        charges, u = ctx.saved_tensors
        p = ctx.order
        w, dw = bspline_derivatives(u, p)[1:] if torch.is_grad_enabled() else ctx.splines
        g = _unfold(grad_mesh, p).reshape(-1).index_select(0, ctx.index).reshape(-1, p * p, p)
        g_c = torch.bmm(g, torch.stack([w[:, 2], dw[:, 2]], dim=-1)).reshape(-1, p, p, 2)  # contract k3
        g_bc = torch.bmm(g_c[..., 0], torch.stack([w[:, 1], dw[:, 1]], dim=-1))  # (N, p, 2): contract k2
        g_b_dc = torch.bmm(g_c[..., 1], w[:, 1, :, None])[..., 0]  # (N, p)
        grad_q = (g_bc[..., 0] * w[:, 0]).sum(-1)
        grad_u = torch.stack(
            [(g_bc[..., 0] * dw[:, 0]).sum(-1), (g_bc[..., 1] * w[:, 0]).sum(-1), (g_b_dc * w[:, 0]).sum(-1)],
            dim=-1,
        )
        return grad_q, grad_u * charges[:, None], None, None


def _native_library():
    lib = load_library(str(NATIVE_SOURCE))
    if lib is not None and not getattr(lib, "_lesmd_typed", False):
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.mesh_spread_forward.argtypes = [ptr, ptr, i64, ptr, i64, ptr, ptr, c_int, i64]
        lib.mesh_spread_backward.argtypes = [ptr, ptr, ptr, i64, ptr, i64, ptr, ptr, ptr, c_int, i64]
        lib.mesh_spread_forward.restype = lib.mesh_spread_backward.restype = c_int
        lib._lesmd_typed = True
    return lib


def native_spread_available() -> bool:
    """True when the C spreading kernel is compiled and loaded (see :mod:`lesmd.native`)."""
    return _native_library() is not None


@lru_cache(maxsize=32)
def _native_arguments(shape: tuple[int, int, int], order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 mesh shape and float64 (p, p) B-spline coefficients, as the C kernel takes them."""
    return torch.tensor(shape, dtype=torch.int64), torch.as_tensor(_bspline_coefficients(order)).contiguous()


class _NativeSpread(torch.autograd.Function):
    """:class:`_Spread` by the C kernel ``mesh_spread.c``: one call forward, one backward. When a graph of the
    gradient is requested, the backward differentiates the torch version instead (exact higher derivatives)."""

    @staticmethod
    def forward(ctx, charges, u, shape, order):  # noqa: D102
        q, uu = charges.detach().contiguous(), u.detach().to(charges.dtype).contiguous()
        ctx.save_for_backward(charges, u)
        ctx.shape, ctx.order = shape, order
        return native_spread_forward(q, uu, shape, order)

    @staticmethod
    def backward(ctx, grad_mesh):  # noqa: D102
        charges, u = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiate the torch version
            mesh = _Spread.apply(charges, u, ctx.shape, ctx.order)
            return (*_grads_of(mesh, (charges, u), grad_mesh, ctx.needs_input_grad[:2]), None, None)
        q, uu = charges.detach().contiguous(), u.detach().to(charges.dtype).contiguous()
        grad_q, grad_u = native_spread_backward(grad_mesh, q, uu, ctx.shape, ctx.order)
        return grad_q, grad_u.to(u.dtype), None, None


def native_spread_forward(
    charges: torch.Tensor, u: torch.Tensor, shape: tuple[int, int, int], order: int
) -> torch.Tensor:
    """Charge mesh (K1, K2, K3) by the C kernel, no autograd.

    Args:
        charges: (N,) e, contiguous; u: (N, 3) scaled fractional coordinates, contiguous, same dtype
            (float32 or float64).
    """
    size, coefficients = _native_arguments(shape, order)
    mesh = charges.new_zeros(shape)
    threads = kernel_threads(_native_library(), charges.shape[0], NATIVE_THREADS_MIN_ATOMS)
    status = _native_library().mesh_spread_forward(
        _ptr(charges), _ptr(u), charges.shape[0], _ptr(size), order, _ptr(coefficients), _ptr(mesh),
        int(charges.dtype == torch.float64), threads,
    )  # fmt: skip
    if status == 3:
        raise refused_coordinates(u)
    if status != 0:
        raise RuntimeError(_spread_failure(status))
    return mesh


def refused_coordinates(coordinates: torch.Tensor) -> ValueError:
    """The error for coordinates the spreading kernel refuses (status 3: a floor that does not fit an int64, NaN and
    inf included), given the positions or scaled coordinates it was called with."""
    if not all_finite(coordinates):
        return ValueError("positions contain NaN or inf")
    return ValueError("positions lie too far outside the cell for the mesh (|u| > 1e15 mesh spacings)")


def native_spread_backward(
    grad_mesh: torch.Tensor, charges: torch.Tensor, u: torch.Tensor, shape: tuple[int, int, int], order: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂E/∂q (N,), ∂E/∂u (N, 3)) from ∂E/∂Q (K1, K2, K3) by the C kernel (the gather), no autograd; arguments
    as :func:`native_spread_forward`."""
    grad = grad_mesh.to(charges.dtype).contiguous()
    size, coefficients = _native_arguments(shape, order)
    grad_q, grad_u = torch.empty_like(charges), torch.empty_like(u)
    threads = kernel_threads(_native_library(), charges.shape[0], NATIVE_THREADS_MIN_ATOMS)
    status = _native_library().mesh_spread_backward(
        _ptr(grad), _ptr(charges), _ptr(u), charges.shape[0], _ptr(size), order, _ptr(coefficients), _ptr(grad_q),
        _ptr(grad_u), int(charges.dtype == torch.float64), threads,
    )  # fmt: skip
    if status == 3:
        raise refused_coordinates(u)
    if status != 0:
        raise RuntimeError(_spread_failure(status))
    return grad_q, grad_u


def _spread_failure(status: int) -> str:
    reason = {1: f"B-spline order beyond {NATIVE_MAX_ORDER}", 2: "out of memory for the per-thread meshes"}
    return f"mesh_spread kernel failed: {reason.get(status, f'status {status}')}"


def _grads_of(output: torch.Tensor, inputs: tuple, grad: torch.Tensor, needed: tuple) -> tuple:
    """Gradients (with their graph) of ``output`` along ``grad`` w.r.t. the ``inputs`` marked in ``needed``; None
    for the others: the double-backward path of the hand-written backward passes."""
    wanted = [t for t, need in zip(inputs, needed, strict=True) if need]
    grads = iter(torch.autograd.grad(output, wanted, grad, create_graph=True)) if wanted else iter(())
    return tuple(next(grads) if need else None for need in needed)


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def spread(
    charges: torch.Tensor, positions: torch.Tensor, inverse_cell: torch.Tensor, shape: tuple[int, int, int],
    order: int, native: bool = True,
) -> torch.Tensor:  # fmt: skip
    """Charge mesh Q (K1,K2,K3) in e: Σ_i q_i Π_d M_p(u_id − k_d) with u = K · fractional coordinates.

    By the C kernel (:class:`_NativeSpread`) when ``native`` and it is available (CPU, float32/64); else by torch
    operations (:class:`_Spread`), where from ``SORT_MIN_ATOMS`` charges on atoms are visited in mesh order (sorted
    by their base mesh point) so that scatter and gather stay local in memory.
    """
    if min(shape) < order - 1:
        raise ValueError(f"mesh {shape} needs at least order − 1 = {order - 1} points per direction")
    if math.prod(k + order - 1 for k in shape) >= 2**31:
        raise ValueError(f"mesh {shape} is too large (int32 indices)")
    sizes = torch.tensor(shape, dtype=positions.dtype, device=positions.device)
    u = (positions @ inverse_cell) * sizes
    if (
        native and u.device.type == "cpu" and charges.dtype in (torch.float32, torch.float64)
        and order <= NATIVE_MAX_ORDER and _native_library() is not None
    ):  # fmt: skip
        return _NativeSpread.apply(charges, u, shape, order)
    if positions.shape[0] < SORT_MIN_ATOMS:
        return _Spread.apply(charges, u, shape, order)
    with torch.no_grad():
        cells = torch.floor(u).long() % torch.tensor(shape, device=u.device)
        order_key = (cells[:, 0] * shape[1] + cells[:, 1]) * shape[2] + cells[:, 2]
        perm = torch.argsort(order_key)
    return _Spread.apply(charges[perm], u[perm], shape, order)


@lru_cache(maxsize=32)
def _cached_factors(
    shape: tuple[int, int, int], order: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """B·mult, aliasing factor (both on the half mesh) and the integer mode numbers m_d, in dtype/device."""
    b, aliasing = _half_mesh_factors(shape, order)
    mult = _half_mesh_multiplicity(shape, torch.float64, torch.device("cpu"))
    m = [torch.fft.fftfreq(shape[d], 1.0 / shape[d], dtype=dtype, device=device) for d in range(2)]
    m.append(torch.fft.rfftfreq(shape[2], 1.0 / shape[2], dtype=dtype, device=device))
    return (b * mult).to(dtype=dtype, device=device), (aliasing * mult).to(dtype=dtype, device=device), m


def _mode_k2(inverse_cell: torch.Tensor, m: list[torch.Tensor]) -> torch.Tensor:
    """|k|² on the half mesh, k = Σ_d m_d b_d, as a quadratic form in m (differentiable w.r.t. the cell)."""
    recip = 2.0 * math.pi * inverse_cell.mT
    metric = recip @ recip.T
    m0, m1, m2 = m[0][:, None, None], m[1][None, :, None], m[2][None, None, :]
    k2 = metric[0, 0] * m0 * m0 + metric[1, 1] * m1 * m1 + (2.0 * metric[0, 1]) * m0 * m1
    return k2 + m2 * (metric[2, 2] * m2 + (2.0 * metric[0, 2]) * m0 + (2.0 * metric[1, 2]) * m1)


@dataclass
class _MeshSetup:
    """Cell-dependent mesh quantities: inverse cell, mode weights, per-group form factors and self corrections."""

    inverse: torch.Tensor
    weights: torch.Tensor  # G(m) B(m) mult (× e^(−k² s²) for a single width group)
    forms: list[torch.Tensor]  # e^(−k² s_g²/2) per group (empty for a single group)
    corrections: list[torch.Tensor]  # Σ_m G e^(−k² s_g²) (B Π⟨|w|²⟩ − 1) mult, per group


def _setup_terms(
    cell: torch.Tensor, shape: tuple[int, int, int], order: int, window: tuple[float, float, float], groups: tuple
) -> _MeshSetup:
    """Mesh quantities of this cell as plain (autograd-differentiable) torch expressions."""
    split2, k_on, k_cut = window
    b_mult, aliasing, m = _cached_factors(shape, order, cell.dtype, cell.device)
    inverse = inverse_cell(cell)
    k2 = _mode_k2(inverse, m)
    kernel = _mode_kernel(k2, volume(cell), window)  # G(m) without B(m): the exact weights
    if len(groups) == 1:  # one width: fold the form factor into the kernel
        kernel = kernel * torch.exp(-k2 * groups[0])
        return _MeshSetup(inverse, kernel * b_mult, [], [(kernel * aliasing).sum()])
    forms = [torch.exp(-0.5 * k2 * width2) for width2 in groups]
    corrections = [(kernel * form * form * aliasing).sum() for form in forms]
    return _MeshSetup(inverse, kernel * b_mult, forms, corrections)


def _mode_kernel(k2: torch.Tensor, cell_volume: torch.Tensor, window: tuple[float, float, float]) -> torch.Tensor:
    """G(m) = e^(−k²a²) window(k) / (2Vε0 k²) on the half mesh, 0 for m = 0; Å⁻¹·eV/e²."""
    split2, k_on, k_cut = window
    k2_safe = torch.where(k2 > 0, k2, torch.ones_like(k2))
    kernel = fourier_prefactor(k2_safe, split2) * smooth_window(k2_safe, k_on, k_cut) / (2.0 * cell_volume * EPSILON0)
    return torch.where(k2 > 0, kernel, torch.zeros_like(kernel))


@dataclass
class _SingleWidthSetup:
    """Single-width mesh quantities of one cell (no gradient) plus what the analytic cell gradient needs."""

    inverse: torch.Tensor  # (3, 3) X = h⁻¹
    weights: torch.Tensor  # half mesh: G(m) e^(−k² s²) B(m) mult
    correction: torch.Tensor  # scalar: Σ_m G e^(−k² s²) (B Π⟨|w|²⟩ − 1) mult
    slope_weights: torch.Tensor  # half mesh: ∂weights/∂k² at fixed volume
    slope_correction: torch.Tensor  # half mesh: ∂(correction term of mode m)/∂k² at fixed volume
    mode_products: torch.Tensor  # (6, half mesh size): m_a m_b for ab = 00, 11, 22, 01, 02, 12


_SETUP_CACHE: OrderedDict = OrderedDict()
_SETUP_CACHE_SIZE = 4


def _single_width_setup(
    cell: torch.Tensor, shape: tuple[int, int, int], order: int, window: tuple[float, float, float], width2: float
) -> _SingleWidthSetup:
    """:class:`_SingleWidthSetup` of this cell, cached on the cell's values (NVT: computed once per run)."""
    cell = cell.detach()
    key = (cell.cpu().numpy().tobytes(), cell.dtype, cell.device, shape, order, window, width2)
    if key in _SETUP_CACHE:
        _SETUP_CACHE.move_to_end(key)
        return _SETUP_CACHE[key]
    b_mult, aliasing, m = _cached_factors(shape, order, cell.dtype, cell.device)
    inverse = inverse_cell(cell)
    with torch.enable_grad():
        k2 = _mode_k2(inverse, m).requires_grad_(True)
        kernel = _mode_kernel(k2, volume(cell), window) * torch.exp(-k2 * width2)
        (slope,) = torch.autograd.grad(kernel.sum(), k2)  # elementwise function of k²: its derivative
    kernel = kernel.detach()
    m0, m1, m2 = m[0][:, None, None], m[1][None, :, None], m[2][None, None, :]
    products = torch.stack([x.expand(kernel.shape) for x in (m0 * m0, m1 * m1, m2 * m2, m0 * m1, m0 * m2, m1 * m2)])
    setup = _SingleWidthSetup(inverse, kernel * b_mult, (kernel * aliasing).sum(), slope * b_mult, slope * aliasing,
                              products.reshape(6, -1))  # fmt: skip
    _SETUP_CACHE[key] = setup
    if len(_SETUP_CACHE) > _SETUP_CACHE_SIZE:
        _SETUP_CACHE.popitem(last=False)
    return setup


class _SingleWidthCellTerms(torch.autograd.Function):
    """(X = h⁻¹, mode weights, self-aliasing correction) as functions of the cell h, with an analytic gradient.

    The weights and correction depend on h through k²(m) = mᵀ M m, M = 4π² XᵀX, and through 1/V. For incoming
    gradients X̄, W̄(m), C̄:
        M̄ = Σ_m slope(m) [W̄(m) B(m) mult + C̄ aliasing(m)] m mᵀ,   X̄_tot = X̄ + 8π² X M̄,
        h̄ = −Xᵀ X̄_tot Xᵀ − (Σ_m W̄ W + C̄ C) Xᵀ          (∂V/∂h = V X ᵀ, ∂X = −X ∂h X).
    The forward values come from the per-cell cache, so a fixed cell (NVT) costs nothing per step but these
    contractions. When a graph of the gradient is requested (force or stress terms in a training loss) the
    backward recomputes the quantities with autograd instead, so higher derivatives are exact.
    """

    @staticmethod
    def forward(ctx, cell, shape, order, window, width2):  # noqa: D102
        setup = _single_width_setup(cell, shape, order, window, width2)
        ctx.save_for_backward(cell)
        ctx.setup, ctx.args = setup, (shape, order, window, width2)
        return setup.inverse.clone(), setup.weights.clone(), setup.correction.clone()

    @staticmethod
    def backward(ctx, grad_inverse, grad_weights, grad_correction):  # noqa: D102
        (cell,) = ctx.saved_tensors
        shape, order, window, width2 = ctx.args
        if torch.is_grad_enabled():  # create_graph: differentiate the plain expressions
            with torch.enable_grad():
                terms = _setup_terms(cell, shape, order, window, (width2,))
                outputs = (terms.inverse, terms.weights, terms.corrections[0])
                (grad,) = torch.autograd.grad(
                    outputs, cell, (grad_inverse, grad_weights, grad_correction), create_graph=True
                )
            return grad, None, None, None, None
        s = ctx.setup
        x = s.inverse
        per_mode = grad_weights * s.slope_weights + grad_correction * s.slope_correction
        d00, d11, d22, d01, d02, d12 = (s.mode_products @ per_mode.reshape(-1)).unbind(0)
        metric_grad = torch.stack([d00, d01, d02, d01, d11, d12, d02, d12, d22]).view(3, 3)  # Σ_m per_mode m mᵀ
        grad_x = grad_inverse + (8.0 * math.pi**2) * (x @ metric_grad)
        volume_grad = (grad_weights * s.weights).sum() + grad_correction * s.correction
        return -(x.T @ grad_x @ x.T) - volume_grad * x.T, None, None, None, None


def _mesh_setup(
    cell: torch.Tensor, shape: tuple[int, int, int], order: int, window: tuple[float, float, float], groups: tuple
) -> _MeshSetup:
    """Mesh quantities for this cell, differentiable w.r.t. the cell.

    One width group (LES): cached per cell with an analytic cell gradient (:class:`_SingleWidthCellTerms`).
    Several groups: plain autograd expressions, cached only when the cell carries no gradient.
    """
    if len(groups) == 1:
        if cell.requires_grad and torch.is_grad_enabled():
            inverse, weights, correction = _SingleWidthCellTerms.apply(cell, shape, order, window, groups[0])
        else:
            s = _single_width_setup(cell, shape, order, window, groups[0])
            inverse, weights, correction = s.inverse, s.weights, s.correction
        return _MeshSetup(inverse, weights, [], [correction])
    if cell.requires_grad:
        return _setup_terms(cell, shape, order, window, groups)
    key = (cell.detach().cpu().numpy().tobytes(), cell.dtype, cell.device, shape, order, window, groups)
    if key not in _SETUP_CACHE:
        _SETUP_CACHE[key] = _setup_terms(cell, shape, order, window, groups)
        if len(_SETUP_CACHE) > _SETUP_CACHE_SIZE:
            _SETUP_CACHE.popitem(last=False)
    _SETUP_CACHE.move_to_end(key)
    return _SETUP_CACHE[key]


@lru_cache(maxsize=32)
def _half_mesh_multiplicity(shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(K3//2 + 1,) number of full-mesh modes each rfft plane stands for: 1 for m3 = 0 (and m3 = K3/2), else 2."""
    mult = torch.full((shape[2] // 2 + 1,), 2.0, dtype=dtype, device=device)
    mult[0] = 1.0
    if shape[2] % 2 == 0:
        mult[-1] = 1.0
    return mult


def _weighted_power(mesh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_m W(m) |FFT[Q](m)|² over the rfft half mesh, as plain differentiable torch operations."""
    return (weights * torch.view_as_real(torch.fft.rfftn(mesh)).square().sum(-1)).sum()


class _MeshPower(torch.autograd.Function):
    """E = Σ_m W(m) |FFT[Q](m)|² (half mesh, W including the multiplicity of each rfft plane) with the
    convolution backward of PME: ∂E/∂Q = 2 K1K2K3 · irfftn(G ⊙ FFT[Q]), G = W / multiplicity the weight of one
    full-mesh mode (Essmann et al. 1995, Eq. 4.7–4.9); ∂E/∂W = |FFT[Q]|². One inverse FFT instead of the
    complex-to-complex adjoint autograd would run. A requested gradient graph differentiates the plain expression.
    """

    @staticmethod
    def forward(ctx, mesh, weights):  # noqa: D102
        structure = torch.fft.rfftn(mesh.detach())
        power = torch.view_as_real(structure).square().sum(-1)
        ctx.save_for_backward(mesh, weights)
        ctx.structure, ctx.power = structure, power
        return (weights.detach() * power).sum()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        mesh, weights = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _grads_of(_weighted_power(mesh, weights), (mesh, weights), grad, ctx.needs_input_grad)
        shape = tuple(mesh.shape)
        mode_weight = weights / _half_mesh_multiplicity(shape, weights.dtype, weights.device)
        grad_mesh = torch.fft.irfftn(mode_weight * ctx.structure, s=shape) * (2.0 * math.prod(shape) * grad)
        grad_weights = ctx.power * grad if ctx.needs_input_grad[1] else None
        return grad_mesh, grad_weights


def mesh_energy(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    widths2: torch.Tensor,
    split2: float,
    k_on: float,
    k_cut: float,
    spacing: float,
    order: int,
) -> torch.Tensor:
    """Reciprocal-space energy on the mesh in eV, self term included (the same quantity as kspace_energy).

    Args:
        charges (N,) e, positions (N,3) Å, cell (3,3) rows = lattice vectors Å, widths2 (N,) Å²,
        split2 a² Å², window k_on/k_cut Å⁻¹, mesh ``spacing`` Å, B-spline ``order``.
    """
    shape = mesh_shape(cell, spacing, order)
    check_mesh_cost(shape, positions.shape[0])
    groups = tuple(float(w) for w in torch.unique(widths2.detach()).tolist())
    setup = _mesh_setup(cell, shape, order, (split2, k_on, k_cut), groups)
    if len(groups) == 1:
        power = _MeshPower.apply(spread(charges, positions, setup.inverse, shape, order), setup.weights)
        return power - (charges * charges).sum() * setup.corrections[0]
    structure, correction = None, positions.new_zeros(())
    for width2, form, coefficient in zip(groups, setup.forms, setup.corrections, strict=True):
        select = widths2 == width2
        part = torch.fft.rfftn(spread(charges[select], positions[select], setup.inverse, shape, order)) * form
        structure = part if structure is None else structure + part
        correction = correction + (charges[select] ** 2).sum() * coefficient
    power = torch.view_as_real(structure).square().sum(-1)
    return (setup.weights * power).sum() - correction
