"""Basis moments of the moment descriptor: per-atom sums over neighbours of angular × radial basis functions.

    G[c, i, (b, z, n)] = Σ_{j: Z_j = z} Y_c(u_ij) B_n(r_ij)      b = block of the centre's element (or 0)

Y_c are the stored components of u^{⊗L} (:func:`angular_products`), B_n the Bessel
basis with its envelope (:func:`bessel_basis`). Layout (C, N, F), F = n_blocks · S · n_basis,
component-major so that the learned radial mixing is one matrix product over all atoms and components
(Σ_{(b,z,n)} G[c, i, (b,z,n)] W[(b,z,n), k] with W = the (Z_i, z, n) → k weights when blocks are the centre's
element; see :class:`~lesmd.models.descriptors.MomentDescriptor`).

Two implementations with the same result:
- :func:`basis_moments_torch`: padded (atom, neighbour slot) tables and a batched matrix product; differentiable to
  any order (training, where forces enter the loss);
- the C kernel ``basis_moments.c`` (compiled by :mod:`lesmd.native`), a loop over edges with a hand-written
  backward: one call forward and one backward instead of ~150 small tensor operations (inference). If a graph of
  the gradient is requested its backward recomputes the torch version, so higher derivatives stay exact.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch

from lesmd.native import kernel_threads, load_library

SQRT2 = math.sqrt(2.0)
SQRT3 = math.sqrt(3.0)
SQRT6 = math.sqrt(6.0)
#: number of stored components of u^{⊗L}, L = 0..3
N_COMPONENTS = (1, 3, 6, 10)


def cutoff_envelope(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Polynomial envelope f_c(r) = 1 − 28x⁶ + 48x⁷ − 21x⁸ (x = r/r_c), zero with two zero derivatives at r_c."""
    x = (r / cutoff).clamp(max=1.0)
    x6 = x**6
    return 1.0 - 28.0 * x6 + 48.0 * x6 * x - 21.0 * x6 * x * x


def bessel_basis(r: torch.Tensor, cutoff: float, n_basis: int) -> torch.Tensor:
    """Radial basis B_n(r) = sqrt(2/r_c) sin(nπr/r_c)/r · f_c(r), shape (E, n_basis), r in Å."""
    n = torch.arange(1, n_basis + 1, dtype=r.dtype, device=r.device)
    r_col = r.unsqueeze(-1)
    values = math.sqrt(2.0 / cutoff) * torch.sin(n * (math.pi / cutoff) * r_col) / r_col
    return values * cutoff_envelope(r_col, cutoff)


def angular_products(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, l_max: int) -> list[torch.Tensor]:
    """Stored components of u^{⊗L}, L = 0..l_max, from the Cartesian components of unit vectors (any equal shapes).

    Order: L=0: 1; L=1: x, y, z; L=2: xx, yy, zz, √2xy, √2xz, √2yz;
    L=3: xxx, yyy, zzz, √3xxy, √3xxz, √3xyy, √3yyz, √3xzz, √3yzz, √6xyz.
    Written out one elementwise product at a time: the fastest form on CPU.
    """
    rows = [torch.ones_like(x)]
    if l_max >= 1:
        rows += [x, y, z]
    if l_max >= 2:
        xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
        rows += [xx, yy, zz, SQRT2 * xy, SQRT2 * xz, SQRT2 * yz]
    if l_max >= 3:
        rows += [
            xx * x,
            yy * y,
            zz * z,
            SQRT3 * xx * y,
            SQRT3 * xx * z,
            SQRT3 * yy * x,
            SQRT3 * yy * z,
            SQRT3 * zz * x,
            SQRT3 * zz * y,
            SQRT6 * xy * z,
        ]
    return rows


def angular_rows(u: torch.Tensor, l_max: int) -> torch.Tensor:
    """Stored components of u^{⊗L} (:func:`angular_products`) of unit vectors u (E, 3), component-major:
    shape (Σ_L N_COMPONENTS[L], E)."""
    return torch.stack(angular_products(*u.t().contiguous().unbind(0), l_max), dim=0)


def angular_components(u: torch.Tensor, l_max: int) -> torch.Tensor:
    """Stored components of u^{⊗L}, L = 0..l_max (see :func:`angular_rows`), shape (E, Σ_L N_COMPONENTS[L])."""
    return angular_rows(u, l_max).t()


SOURCE = Path(__file__).resolve().parent / "basis_moments.c"
#: sizes the C kernel is compiled for (larger ones use the torch version)
MAX_SPECIES, MAX_BASIS = 16, 32
#: from this many edges on, torch.get_num_threads() threads even when the kernel cannot use torch's OpenMP pool
#: (:func:`lesmd.native.kernel_threads`); below, one. Extra threads started next to torch's pool (whose idle
#: workers keep spinning after each parallel operation) wait for a core: measured on a 2-core VM, 2 POSIX threads
#: cost 4 ms more than 1 at 192 atoms (13k edges), break even at 1536 (140k edges) and save 80 ms at 12288 atoms
#: (850k edges). On torch's own pool, 2 threads save ~1 ms at 192 atoms already.
THREADS_MIN_EDGES = 200_000


def basis_moments_torch(
    centre_block: torch.Tensor, neighbor_species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor,
    n_atoms: int, n_blocks: int, n_species: int, n_basis: int, l_max: int, cutoff: float,
) -> torch.Tensor:  # fmt: skip
    """G (C, N, n_blocks·S·n_basis) with torch operations (see module docstring).

    Args:
        centre_block: (N,) block index of each centre (its species index, or zeros for one block).
        neighbor_species: (E,) species index of each edge's neighbour.
        vectors: (E, 3) edge vectors, Å, sorted by centre ``i`` (E,).
    """
    n_edges = vectors.shape[0]
    counts = torch.bincount(i, minlength=n_atoms)
    width = max(int(counts.max()), 1) if n_edges > 0 else 1
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n_edges, device=i.device) - start.index_select(0, i)
    # (N, M) tables; empty slots hold a vector of length r_c, where every basis function vanishes
    table = vectors.new_zeros(n_atoms, width, 3)
    table[:, :, 0] = cutoff
    table = table.index_put((i, slot), vectors).view(n_atoms * width, 3)
    block = centre_block.index_select(0, i) * n_species + neighbor_species
    block_table = block.new_zeros(n_atoms, width).index_put((i, slot), block).view(-1)
    r = torch.linalg.norm(table, dim=-1)
    basis = bessel_basis(r, cutoff, n_basis)  # (N·M, nb)
    slots = torch.arange(n_atoms * width, device=i.device)
    by_block = basis.new_zeros(n_atoms * width, n_blocks * n_species, n_basis).index_put((slots, block_table), basis)
    # angular components in (N, C, M) layout, so neither the product below nor its backward needs a transposed copy
    x, y, z = (table / r.unsqueeze(-1)).t().contiguous().view(3, n_atoms, width).unbind(0)
    angular = torch.stack(angular_products(x, y, z, l_max), dim=1)  # (N, C, M)
    g = torch.bmm(angular, by_block.view(n_atoms, width, -1))  # (N, C, F)
    return g.transpose(0, 1).contiguous()


def _failure(status: int) -> str:
    reason = {1: "sizes beyond its compiled limits", 2: "out of memory for its work buffers"}.get(status, "error")
    return f"basis_moments kernel failed: {reason} (status {status})"


def _pointer(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _library():
    lib = load_library(str(SOURCE))
    if lib is not None and not getattr(lib, "_lesmd_typed", False):
        i64, ptr, dbl, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
        lib.basis_moments_forward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, dbl, ptr, c_int, i64]
        lib.basis_moments_backward.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i64, i64, i64, dbl, ptr, c_int, i64]
        lib.basis_moments_forward.restype = lib.basis_moments_backward.restype = c_int
        lib._lesmd_typed = True
    return lib


def native_available() -> bool:
    """True when the C kernel is compiled and loaded (and not switched off by ``LESMD_NATIVE=0``)."""
    return _library() is not None


def _threads(n_edges: int) -> int:
    """Threads of the C kernel for ``n_edges`` edges (:func:`lesmd.native.kernel_threads`)."""
    return kernel_threads(_library(), n_edges, THREADS_MIN_EDGES)


class _NativeBasisMoments(torch.autograd.Function):
    """G from the C kernel; backward by the C kernel, or by the torch version when a graph is requested."""

    @staticmethod
    def forward(ctx, vectors, centre_block, neighbor_species, i, offsets, sizes):  # noqa: D102
        n_atoms, n_blocks, n_species, n_basis, l_max, cutoff = sizes
        n_comp = sum(N_COMPONENTS[: l_max + 1])
        vec = vectors.detach().contiguous()
        out = vec.new_zeros(n_comp, n_atoms, n_blocks * n_species * n_basis)
        threads = _threads(vec.shape[0])
        status = _library().basis_moments_forward(
            _pointer(vec), _pointer(offsets), _pointer(neighbor_species), _pointer(centre_block), n_atoms,
            n_species, n_blocks, n_basis, l_max, cutoff, _pointer(out), int(vec.dtype == torch.float64), threads,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(_failure(status))
        ctx.save_for_backward(vectors, centre_block, neighbor_species, i, offsets)
        ctx.sizes = sizes
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        vectors, centre_block, neighbor_species, i, offsets = ctx.saved_tensors
        n_atoms, n_blocks, n_species, n_basis, l_max, cutoff = ctx.sizes
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiate the torch version
            g = basis_moments_torch(centre_block, neighbor_species, vectors, i, *ctx.sizes)
            (grad_vectors,) = torch.autograd.grad(g, vectors, grad, create_graph=True)
            return grad_vectors, None, None, None, None, None
        vec = vectors.detach().contiguous()
        grad = grad.to(vec.dtype).contiguous()
        grad_vectors = torch.empty_like(vec)
        threads = _threads(vec.shape[0])
        status = _library().basis_moments_backward(
            _pointer(grad), _pointer(vec), _pointer(offsets), _pointer(neighbor_species), _pointer(centre_block),
            n_atoms, n_species, n_blocks, n_basis, l_max, cutoff, _pointer(grad_vectors),
            int(vec.dtype == torch.float64), threads,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(_failure(status))
        return grad_vectors, None, None, None, None, None


def basis_moments(
    centre_block: torch.Tensor, neighbor_species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor,
    n_atoms: int, n_blocks: int, n_species: int, n_basis: int, l_max: int, cutoff: float, native: bool = True,
) -> torch.Tensor:  # fmt: skip
    """G (C, N, n_blocks·S·n_basis): the C kernel when ``native`` and available (CPU, float32/64, sizes within
    its limits), else :func:`basis_moments_torch`. Arguments as there; edges sorted by ``i``."""
    use_native = (
        native and vectors.device.type == "cpu" and vectors.dtype in (torch.float32, torch.float64)
        and n_species <= MAX_SPECIES and n_basis <= MAX_BASIS and _library() is not None
    )  # fmt: skip
    sizes = (n_atoms, n_blocks, n_species, n_basis, l_max, float(cutoff))
    if not use_native:
        return basis_moments_torch(centre_block, neighbor_species, vectors, i, *sizes)
    offsets = torch.zeros(n_atoms + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(i, minlength=n_atoms), 0, out=offsets[1:])
    return _NativeBasisMoments.apply(
        vectors, centre_block.to(torch.int64).contiguous(), neighbor_species.to(torch.int64).contiguous(), i,
        offsets, sizes,
    )  # fmt: skip
