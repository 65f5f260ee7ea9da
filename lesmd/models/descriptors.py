"""Cartesian moment descriptors: rotation-invariant local features up to body order 4.

A moment-tensor / atomic-cluster-expansion construction (Shapeev, Multiscale Model. Simul. 14, 1153 (2016);
Drautz, PRB 99, 014104 (2019)), written with Cartesian tensors:

    radial basis   B_n(r) = sqrt(2/r_c) sin(nπ r/r_c)/r · f_c(r),   n = 1..n_basis
    envelope       f_c(r) = 1 − 28x⁶ + 48x⁷ − 21x⁸,  x = r/r_c   (C² at r_c; Gasteiger et al., ICLR 2020)
    radial channels R_{L,k}(r_ij) = Σ_n W^{(Z_i,Z_j)}_{L,n,k} B_n(r_ij)   (learned, per element pair and per L)
    moments        A_{i,L,k} = (1/n̄) Σ_j R_{L,k}(r_ij) u_ij^{⊗L},   u = r_ij/|r_ij|,  L = 0..3

(n̄ is the mean number of neighbours, a fixed normaliser.) The symmetric tensors u^{⊗L} are stored as their
independent components weighted by √(multiplicity), so an ordinary dot product of two stored moments is the full
tensor contraction. Invariants (body order in brackets):

    A_{0,k} [2],  A_{1,k}·A_{1,l} [3],  A_{2,k}:A_{2,l} [3],  A_{3,k}⋮A_{3,l} [3],
    A_{1,k}ᵀ A_{2,l} A_{1,k} [4],  tr(A_{2,k} A_{2,k} A_{2,l}) [4].

The per-edge work (basis functions, angular components and their sums over neighbours, the *basis moments*) is in
:mod:`lesmd.models.basis_moments`: a C kernel at inference, vectorised torch operations in training. Everything
after it is a few large matrix products over all atoms, differentiable with respect to the edge vectors, hence
positions and cell. The learned radial mixing is applied to basis moments per atom rather than to every edge (see
:meth:`MomentDescriptor.moments`).
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch

from lesmd.models.basis_moments import (  # noqa: F401 (re-exported: the descriptor's basis functions)
    N_COMPONENTS,
    SQRT2,
    angular_components,
    angular_products,
    angular_rows,
    basis_moments,
    bessel_basis,
    cutoff_envelope,
)
from lesmd.native import kernel_threads, load_library

#: C source of the channel contractions (compiled by :mod:`lesmd.native`), and the number of atoms from which
#: they use torch.get_num_threads() threads even off torch's OpenMP pool (:func:`lesmd.native.kernel_threads`)
INVARIANTS_SOURCE = Path(__file__).resolve().parent / "moment_invariants.c"
INVARIANTS_THREADS_MIN_ATOMS = 4096

#: up to this many elements the basis moments carry one block per centre element, so that the element-pair
#: radial weights act as one matrix product; beyond, a batched product with per-atom weights
MAX_CENTRE_BLOCKS = 4


def _bilinear_symmetric(u: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """uᵀ M w per atom and channel for symmetric M given by its stored components (see :func:`angular_rows`).

    Args:
        u, w: (3, ...) vectors (components first); m: (6, ...) stored xx, yy, zz, √2xy, √2xz, √2yz.
    Returns:
        (...), the trailing shape.
    """
    ux, uy, uz = u.unbind(0)
    wx, wy, wz = w.unbind(0)
    diagonal = (m[:3] * u * w).sum(0)
    off = m[3] * (ux * wy + uy * wx) + m[4] * (ux * wz + uz * wx) + m[5] * (uy * wz + uz * wy)
    return diagonal + off / SQRT2


def _trace_cubed_symmetric(m: torch.Tensor) -> torch.Tensor:
    """tr(M³) for symmetric M given by stored components (6, ...) → (...).

    With diagonal a, b, c and off-diagonal d, e, f (M_xy, M_xz, M_yz):
    tr(M³) = a³ + b³ + c³ + 3a(d² + e²) + 3b(d² + f²) + 3c(e² + f²) + 6def; the stored off-diagonal
    components are √2 d, √2 e, √2 f.
    """
    a, b, c, d2, e2, f2 = m.unbind(0)  # d2 = √2 d etc.
    dd, ee, ff = d2 * d2, e2 * e2, f2 * f2
    cubes = a * a * a + b * b * b + c * c * c
    mixed = a * (dd + ee) + b * (dd + ff) + c * (ee + ff)
    return cubes + 1.5 * mixed + (3.0 / SQRT2) * d2 * e2 * f2


def contract_invariants(a0: torch.Tensor, mixed: list[torch.Tensor]) -> torch.Tensor:
    """Features (N, K + l_max·K' [+ 2K']) = [A_0, I_1, …, I_lmax, (T, P)] from A_0 (N, K) and the channel-mixed
    moments [(C_L, N, parts, K')] of L = 1..l_max (4 parts for L = 1, 2; 2 for L = 3); see
    :meth:`MomentDescriptor.invariants`. Torch operations, differentiable to any order."""
    features = [a0]
    parts = [m.unbind(2) for m in mixed]  # each (C_L, N, K')
    for p in parts:
        features.append((p[0] * p[1]).sum(0))
    if len(parts) >= 2:
        (_, _, u, u2), (_, _, v, v2) = parts[0], parts[1]
        features.append(_bilinear_symmetric(u, v, u2))
        features.append(_trace_cubed_symmetric(v2))
    return torch.cat(features, dim=1)


class _NativeInvariants(torch.autograd.Function):
    """:func:`contract_invariants` (l_max = 3) by the C kernel; a requested gradient graph differentiates the torch
    version instead."""

    @staticmethod
    def forward(ctx, a0, p1, p2, p3):  # noqa: D102
        n_atoms, k = a0.shape
        kp = p1.shape[-1]
        inputs = [t.detach().contiguous() for t in (a0, p1, p2, p3)]
        out = a0.new_empty(n_atoms, k + 5 * kp)
        _invariants_library().moment_invariants_forward(
            *(_pointer(t) for t in inputs), n_atoms, k, kp, _pointer(out), int(a0.dtype == torch.float64),
            _threads(n_atoms),
        )  # fmt: skip
        ctx.save_for_backward(a0, p1, p2, p3)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        a0, p1, p2, p3 = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiate the torch version
            wanted = [t for t, need in zip((a0, p1, p2, p3), ctx.needs_input_grad, strict=True) if need]
            grads = iter(torch.autograd.grad(contract_invariants(a0, [p1, p2, p3]), wanted, grad, create_graph=True))
            return tuple(next(grads) if need else None for need in ctx.needs_input_grad)
        n_atoms, k = a0.shape
        kp = p1.shape[-1]
        inputs = [t.detach().contiguous() for t in (p1, p2, p3)]
        grad = grad.contiguous()  # kept alive by the name until the kernel has read it
        grads = [torch.empty_like(t) for t in (a0, *inputs)]
        _invariants_library().moment_invariants_backward(
            _pointer(grad), *(_pointer(t) for t in inputs), n_atoms, k, kp,
            *(_pointer(g) for g in grads), int(a0.dtype == torch.float64), _threads(n_atoms),
        )  # fmt: skip
        return tuple(grads)


def _invariants_library():
    lib = load_library(str(INVARIANTS_SOURCE))
    if lib is not None and not getattr(lib, "_lesmd_typed", False):
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.moment_invariants_forward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, ptr, c_int, i64]
        lib.moment_invariants_backward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, ptr, ptr, ptr, ptr, c_int, i64]
        lib.moment_invariants_forward.restype = lib.moment_invariants_backward.restype = c_int
        lib._lesmd_typed = True
    return lib


def _threads(n_atoms: int) -> int:
    return kernel_threads(_invariants_library(), n_atoms, INVARIANTS_THREADS_MIN_ATOMS)


def _pointer(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def native_invariants_available(like: torch.Tensor | None = None) -> bool:
    """True when the C contraction kernel is loaded (and suits tensors like ``like``: CPU, float32/64)."""
    if like is not None and (like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64)):
        return False
    return _invariants_library() is not None


def native_invariants(a0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
    """:func:`contract_invariants` for l_max = 3 by the C kernel (same numbers, two calls instead of ~150 small
    operations); mixed moments p_L of shapes (3, N, 4, K'), (6, N, 4, K'), (10, N, 2, K')."""
    return _NativeInvariants.apply(a0, p1, p2, p3)


class MomentDescriptor(torch.nn.Module):
    """Invariant per-atom features from Cartesian moments of learned radial channels.

    Args:
        n_species: number of elements (species indices 0..n_species-1).
        cutoff: Å.
        n_basis: radial Bessel functions.
        n_channels: radial channels K.
        l_max: highest tensor order (0..3).
        n_products: K', invariants per contraction type.
        avg_neighbors: normaliser n̄ of the moments.

    In eval mode the basis moments come from the C kernel when it is available (:mod:`lesmd.native`); in training
    mode, and with ``native = False``, from torch operations. Both give the same numbers.
    """

    def __init__(
        self, n_species: int, cutoff: float, n_basis: int = 8, n_channels: int = 32, l_max: int = 3,
        avg_neighbors: float = 30.0, n_products: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if not 0 <= l_max <= 3:
            raise ValueError(f"l_max must be 0..3, got {l_max}")
        self.n_species = n_species
        self.cutoff = float(cutoff)
        self.n_basis = n_basis
        self.n_channels = n_channels
        self.l_max = l_max
        self.native = True
        self.register_buffer("avg_neighbors", torch.tensor(float(avg_neighbors)))
        n_pairs = n_species * n_species
        self.n_products = int(n_products or n_channels)
        kp = self.n_products
        self.mixing = torch.nn.Parameter(torch.randn(max(l_max, 1), n_channels, 4 * kp) / math.sqrt(n_channels))
        self.radial_weights = torch.nn.Parameter(torch.randn(n_pairs * n_basis, n_channels) / math.sqrt(n_basis))

    @property
    def n_features(self) -> int:
        """Number of invariants per atom."""
        extra = {0: 0, 1: 1, 2: 4, 3: 5}[self.l_max]
        return self.n_channels + extra * self.n_products

    def moments(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> list[torch.Tensor]:
        """A_{i,c,k} for L = 0..l_max: a list of (N_COMPONENTS[L], N, K) tensors (components first), for edge
        vectors (E, 3) from centre i to neighbour j.

        Edges must be sorted by ``i``. Because R^{(Z_i Z_j)}_{L,k} = Σ_n W^{(Z_i Z_j)}_{n,k} B_n, the moments
        factor as A_{i,c,k} = Σ_{z,n} G_{c,i,(z,n)} W^{(Z_i z)}_{n,k} with the basis moments
        G_{c,i,(z,n)} = Σ_{j: Z_j = z} Y_c(u_ij) B_n(r_ij) (:mod:`lesmd.models.basis_moments`), so the learned
        radial mixing runs per atom rather than per edge. With few elements G has one block per centre element
        (zero outside the centre's own), and A = G W is a single matrix product over all atoms and components.
        """
        n_atoms = species.shape[0]
        s, nb, k = self.n_species, self.n_basis, self.n_channels
        blocked = s <= MAX_CENTRE_BLOCKS
        g = basis_moments(
            species if blocked else torch.zeros_like(species), species.index_select(0, j), vectors, i, n_atoms,
            s if blocked else 1, s, nb, self.l_max, self.cutoff, native=self.native and not self.training,
        )  # fmt: skip
        n_comp = g.shape[0]
        w = self.radial_weights.to(g.dtype) / self.avg_neighbors.to(g.dtype)  # rows (z_i, z, n)
        if blocked:
            a = (g.view(n_comp * n_atoms, -1) @ w).view(n_comp, n_atoms, k)
        else:  # per-atom weight blocks W[(Z_i, ·, ·)]: (N, S·nb, K)
            w_atom = w.view(s, s * nb, k)[species]
            a = torch.bmm(g.transpose(0, 1), w_atom).transpose(0, 1).contiguous()
        return list(a.split(list(N_COMPONENTS[: self.l_max + 1]), dim=0))

    def invariants(self, moments: list[torch.Tensor]) -> torch.Tensor:
        """Rotation invariants (N, n_features) from the moments of each order, [(N_COMPONENTS[L], N, K)].

        Channels are first mixed linearly per angular order (learned, K → 2K' or 4K'), then contracted channel
        by channel, so the cost is linear in the number of channels:
        I_{L,k} = ⟨(A_L W_L)_k, (A_L W'_L)_k⟩ (L ≥ 1), T_k = (A_1 U)_kᵀ (A_2 V)_k (A_1 U')_k,
        P_k = tr((A_2 V')_k³), plus A_{0,k}. The contractions run in the C kernel ``moment_invariants.c`` where
        the basis moments do (eval mode; l_max = 3), else as torch operations (:func:`contract_invariants`).
        """
        kp = self.n_products
        n_atoms, k = moments[0].shape[1:]
        w = self.mixing.to(moments[0].dtype)
        mixed = []
        for L in range(1, self.l_max + 1):
            used = 4 if L <= 2 else 2  # L = 1, 2 also feed the order-4 invariants
            n_comp = moments[L].shape[0]
            wide = moments[L].view(n_comp * n_atoms, k) @ w[L - 1, :, : used * kp]
            mixed.append(wide.view(n_comp, n_atoms, used, kp))
        if self.l_max == 3 and self.native and not self.training and native_invariants_available(moments[0]):
            return native_invariants(moments[0][0], *mixed)
        return contract_invariants(moments[0][0], mixed)

    def forward(self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Invariant features (N, n_features) of every atom."""
        return self.invariants(self.moments(species, vectors, i, j))
