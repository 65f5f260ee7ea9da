"""How it is summed (3b): smooth PME for charges of one width (the LES case) as a single autograd node.

The same energy as :func:`lesmd.les.mesh.mesh_energy` minus :func:`lesmd.les.potentials.reciprocal_self_energy`
for equal widths s:

    E = Σ_m W(m) |FFT[Q](m)|² − (C + c_self) Σ_i q_i²

(W the half-mesh mode weights with e^(−k² s²) and the B-spline factors folded in, C the self-aliasing correction
and c_self = k_e / (√(2π) W_ii) the reciprocal self term, all in :mod:`lesmd.les.mesh`), but forward and
backward are each a handful of tensor operations instead of the ~130 of the composable version: at MD sizes
(a few hundred atoms) the step is dominated by the fixed cost per operation, not by arithmetic.

Gradients, with u = r X K (X = h⁻¹, K = diag(K1, K2, K3)) and ū the gather of ∂E/∂Q (:mod:`lesmd.les.mesh`):

    ∂E/∂q_i = (gather of ∂E/∂Q)_i − 2 (C + c_self) q_i,      ∂E/∂Q = 2 K1K2K3 · irfftn(W/mult ⊙ FFT[Q])
    ∂E/∂r = ū K Xᵀ,      X̄ = rᵀ ū K
    ∂E/∂h = −Xᵀ (X̄ + 8π² X M̄) Xᵀ − (E_W + C̄ C) Xᵀ,     M̄ = Σ_m slope(m) [|FFT[Q](m)|² B mult + C̄ aliasing] m mᵀ

with E_W = Σ W |FFT Q|², C̄ = −Σ q², and slope = ∂(weight)/∂k² at fixed volume (the derivation is that of
:class:`lesmd.les.mesh._SingleWidthCellTerms`; k² = mᵀ M m with M = 4π² XᵀX, weights ∝ 1/V). The per-cell
quantities are cached, so MD at a fixed cell computes them once. When a graph of the gradient is requested
(forces or stress in a training loss), the backward differentiates the composable version instead, so higher
derivatives are exact. CPU only: the spreading is the C kernel of :mod:`lesmd.les.mesh`, the arithmetic
around the FFTs that of ``uniform_mesh.c``, and the FFTs of MD-sized meshes (up to 32³ points) run inside the
same C calls (``fft3d.h``: a batched Stockham FFT; torch.fft's per-call cost was a fifth of the LES step at 192
atoms), larger ones are torch.fft's.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from lesmd.les import mesh
from lesmd.les.checks import all_finite
from lesmd.les.potentials import reciprocal_self_energy
from lesmd.native import kernel_threads, load_library

#: C source of the arithmetic around the FFTs and of the small-mesh FFTs (compiled by :mod:`lesmd.native`)
SOURCE = Path(__file__).resolve().parent / "uniform_mesh.c"
#: meshes up to this many points are transformed by the C FFT of ``fft3d.h`` inside the node's kernels, larger ones
#: by torch.fft (whose FFT is faster there; the C one saves the per-call cost at MD sizes, 24³ for 192 atoms)
NATIVE_FFT_MAX_POINTS = 32**3
#: mesh points from which the C FFT uses all of torch's threads when not on torch's OpenMP pool (on the pool: always;
#: off it, starting POSIX threads costs more than a transform of up to NATIVE_FFT_MAX_POINTS points)
FFT_THREADS_MIN_POINTS = 32**3


@dataclass(frozen=True)
class _UniformSetup:
    """Per-cell quantities of the single-width mesh energy (no gradient). The per-step arithmetic around the FFTs
    is one C call each (``uniform_mesh.c``: where each tensor operation costs ~10 µs, and several times that when
    the caches are cold, a dozen small operations cost more than the FFTs); the tables it reads are float64."""

    scaled_inverse: torch.Tensor  # (3, 3) X K in the positions' dtype: u = r @ scaled_inverse
    scaled_inverse64: np.ndarray  # (3, 3) X K, float64
    weights: np.ndarray  # (M,) half mesh, flat: W(m), multiplicity of the rfft planes included
    convolution: np.ndarray  # (M,) 2 K1K2K3 W(m) / mult, the ∂E/∂Q filter
    slope_weights: np.ndarray  # (M,) ∂W/∂k² at fixed volume
    frequencies: tuple[np.ndarray, np.ndarray, np.ndarray]  # signed mode numbers m per axis (K1,), (K2,), (K3//2+1,)
    correction_slopes: np.ndarray  # (6,): Σ_m m_a m_b ∂(aliasing correction of m)/∂k²
    q2_coefficient: float  # C + c_self, eV/e²
    correction: float  # C, eV/e²
    inverse: np.ndarray  # (3, 3) X
    sizes: np.ndarray  # (3,) K
    cell_map: np.ndarray  # (9, 15): ∂E/∂h from (rᵀ ū, slope sums), see _cell_map
    shape: np.ndarray  # (3,) int64 mesh shape K
    coefficients: np.ndarray  # (p, p) B-spline coefficients of the spreading (mesh._bspline_coefficients)
    fft_work_size: int  # doubles of work space for the C transforms

    @property
    def at(self) -> dict[str, int]:
        """Addresses of the tables for the C calls (an array's ``.ctypes.data`` costs a µs per access)."""
        return self._addresses

    def __post_init__(self) -> None:
        names = ("scaled_inverse64", "weights", "convolution", "slope_weights", "correction_slopes", "inverse",
                 "cell_map", "shape", "coefficients")  # fmt: skip
        addresses = {name: getattr(self, name).ctypes.data for name in names}
        addresses.update({f"f{d + 1}": f.ctypes.data for d, f in enumerate(self.frequencies)})
        object.__setattr__(self, "_addresses", addresses)


@lru_cache(maxsize=8)
def _uniform_setup(
    cell_bytes: bytes, dtype: torch.dtype, shape: tuple[int, int, int], order: int,
    window: tuple[float, float, float], width2: float,
) -> _UniformSetup:  # fmt: skip
    cell = torch.from_numpy(np.frombuffer(cell_bytes, dtype=np.float64).reshape(3, 3).copy()).to(dtype)
    s = mesh._single_width_setup(cell, shape, order, window, width2)
    sizes = torch.tensor(shape, dtype=dtype)
    mult = mesh._half_mesh_multiplicity(shape, dtype, cell.device)
    self_coefficient = float(
        reciprocal_self_energy(torch.ones(1, dtype=torch.float64), torch.full((1,), width2, dtype=torch.float64),
                               window[0])  # fmt: skip
    )
    correction = float(s.correction)
    sizes64 = np.asarray(shape, dtype=np.int64)  # named: its buffer must outlive the call that reads it

    def table(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().double().numpy())

    return _UniformSetup(
        scaled_inverse=(s.inverse * sizes).contiguous(),
        scaled_inverse64=table(s.inverse * sizes),
        weights=table(s.weights.reshape(-1)),
        convolution=table((s.weights / mult * (2.0 * math.prod(shape))).reshape(-1)),
        slope_weights=table(s.slope_weights.reshape(-1)),
        frequencies=tuple(table(f) for f in mesh._cached_factors(shape, order, torch.float64, cell.device)[2]),
        correction_slopes=table(s.mode_products.double() @ s.slope_correction.double().reshape(-1)),
        q2_coefficient=correction + self_coefficient,
        correction=correction,
        inverse=table(s.inverse),
        sizes=np.asarray(shape, dtype=np.float64),
        cell_map=np.ascontiguousarray(_cell_map(table(s.inverse), np.asarray(shape, dtype=np.float64))),
        shape=sizes64,
        coefficients=np.ascontiguousarray(mesh._bspline_coefficients(order), dtype=np.float64),
        fft_work_size=int(_library().mesh_fft_work_size(sizes64.ctypes.data)),
    )


class _UniformMeshEnergy(torch.autograd.Function):
    """E(q, r, h) of the module docstring in one node; ``params`` = (shape, order, window, width2, spacing),
    ``cell_bytes`` the bytes of the cell's float64 values (the key of the per-cell cache). Charges and positions
    are CPU tensors of one float dtype (see :func:`available`); the spreading, the arithmetic around the FFTs and,
    up to ``NATIVE_FFT_MAX_POINTS`` mesh points, the FFTs themselves are C (``mesh_spread.c``, ``uniform_mesh.c``,
    ``fft3d.h``); larger meshes use torch.fft."""

    @staticmethod
    def forward(ctx, charges, positions, cell, params, cell_bytes):  # noqa: D102
        shape, order, window, width2, _ = params
        s = _uniform_setup(cell_bytes, positions.dtype, shape, order, window, width2)
        q = charges.detach().to(positions.dtype).contiguous()
        r = positions.detach().contiguous()
        small = math.prod(shape) <= NATIVE_FFT_MAX_POINTS  # then the kernels take u = r X K themselves
        u = None if small else r @ s.scaled_inverse
        # the backward's inputs (the filtered spectrum, the six slope sums) in the same pass over the modes
        wanted, cell_slopes = any(ctx.needs_input_grad[:3]), ctx.needs_input_grad[2]
        sums = np.empty(8)
        at = s.at
        slopes = at["slope_weights"] if cell_slopes else None
        convolution = at["convolution"] if wanted else None
        is_double = int(q.dtype == torch.float64)
        if small:  # scaled coordinates, spreading, FFT and the pass over the modes in one C call
            spectrum = np.empty((2, s.weights.shape[0]))  # real and imaginary planes, then the filtered spectrum
            work = np.empty(s.fft_work_size)
            status = _library().mesh_energy_forward(
                q.data_ptr(), r.data_ptr(), q.shape[0], at["scaled_inverse64"], at["shape"], order, at["coefficients"],
                spectrum[0].ctypes.data, spectrum[1].ctypes.data, work.ctypes.data, at["weights"], convolution, slopes,
                at["f1"], at["f2"], at["f3"], sums.ctypes.data, is_double, _spread_threads(q.shape[0]),
                _fft_threads(shape),
            )  # fmt: skip
            _check_status(status, r)
        else:
            structure = torch.fft.rfftn(mesh.native_spread_forward(q, u, shape, order))
            spectrum = torch.empty_like(structure) if wanted else None  # then the filtered spectrum
            _library().mesh_forward_terms(
                structure.data_ptr(), at["weights"], convolution, slopes, at["f1"], at["f2"], at["f3"],
                *structure.shape, q.data_ptr(), q.shape[0], _pointer(spectrum), sums.ctypes.data, is_double,
            )  # fmt: skip
        mode_energy, q2 = float(sums[0]), float(sums[1])
        if not math.isfinite(q2):  # the spreading kernel has refused NaN/inf positions already
            raise ValueError("charges contain NaN or inf" if not all_finite(q) else "charges too large: Σq² overflows")
        ctx.save_for_backward(charges, positions, cell)
        ctx.params, ctx.setup = params, s
        ctx.state = (q, r, u, spectrum, sums, mode_energy, q2)
        return torch.tensor(mode_energy - s.q2_coefficient * q2, dtype=positions.dtype)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        charges, positions, cell = ctx.saved_tensors
        needed = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # a graph of the gradient is wanted: differentiate the composable version
            with torch.enable_grad():
                energy = reference_energy(charges, positions, cell, ctx.params)
            return (*mesh._grads_of(energy, (charges, positions, cell), grad, needed), None, None)
        s, (q, r, u, filtered, sums, mode_energy, q2) = ctx.setup, ctx.state
        shape, order = ctx.params[:2]
        grad_charges = torch.empty_like(q) if needed[0] else None
        grad_positions = torch.empty_like(r) if needed[1] else None
        grad_cell = np.empty((3, 3)) if needed[2] else None
        scalars = np.array([float(grad), s.q2_coefficient, mode_energy, q2, s.correction])
        is_double = int(q.dtype == torch.float64)
        at = s.at
        cell_terms = (at["scaled_inverse64"], sums[2:].ctypes.data, at["correction_slopes"], at["cell_map"],
                      at["inverse"], scalars.ctypes.data)  # fmt: skip
        outputs = (_pointer(grad_charges), _pointer(grad_positions), _pointer(grad_cell))
        if isinstance(filtered, np.ndarray):  # planes of the C transform: inverse FFT, gather and gradients in C
            work = np.empty(s.fft_work_size)
            status = _library().mesh_energy_backward(
                filtered[0].ctypes.data, filtered[1].ctypes.data, at["shape"], work.ctypes.data, q.data_ptr(),
                r.data_ptr(), q.shape[0], order, at["coefficients"], *cell_terms, *outputs, is_double,
                _spread_threads(q.shape[0]), _fft_threads(shape),
            )  # fmt: skip
            _check_status(status, r)
        else:
            potential, grad_u = mesh.native_spread_backward(torch.fft.irfftn(filtered, s=shape), q, u, shape, order)
            _library().mesh_energy_gradients(
                potential.data_ptr(), grad_u.data_ptr(), q.data_ptr(), r.data_ptr(), q.shape[0], *cell_terms,
                *outputs, is_double,
            )  # fmt: skip
        if grad_charges is not None:
            grad_charges = grad_charges.to(charges.dtype)
        if grad_positions is not None:
            grad_positions = grad_positions.to(positions.dtype)
        if grad_cell is not None:
            grad_cell = torch.from_numpy(grad_cell).to(cell.dtype)
        return grad_charges, grad_positions, grad_cell, None, None


def _fft_threads(shape: tuple[int, int, int]) -> int:
    return kernel_threads(_library(), math.prod(shape), FFT_THREADS_MIN_POINTS)


def _spread_threads(n_atoms: int) -> int:
    return kernel_threads(_library(), n_atoms, mesh.NATIVE_THREADS_MIN_ATOMS)


def _check_fft(status: int) -> None:
    if status != 0:
        reason = {1: "a mesh size with a prime factor beyond 64", 2: "out of memory"}.get(status, f"status {status}")
        raise RuntimeError(f"mesh FFT kernel failed: {reason}")


def _check_status(status: int, positions: torch.Tensor) -> None:
    """Errors of mesh_energy_forward/backward: spreading (10 + its status), FFT (20 + its status), memory (2)."""
    if status == 13:
        raise mesh.refused_coordinates(positions)
    if 10 < status < 20:
        raise RuntimeError(mesh._spread_failure(status - 10))
    if status > 20:
        _check_fft(status - 20)
    if status != 0:
        raise RuntimeError("LES mesh kernel: out of memory")


def _pointer(x: torch.Tensor | np.ndarray | None) -> int | None:
    if x is None:
        return None
    return x.data_ptr() if isinstance(x, torch.Tensor) else x.ctypes.data


def _library():
    lib = load_library(str(SOURCE))
    if lib is not None and not getattr(lib, "_lesmd_typed", False):
        i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.mesh_forward_terms.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, i64, ptr, i64, ptr, ptr, c_int]
        lib.mesh_fft_work_size.argtypes, lib.mesh_fft_work_size.restype = [ptr], i64
        lib.mesh_forward_fft.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, i64, ptr, c_int,
                                         i64]  # fmt: skip
        lib.mesh_inverse_fft.argtypes = [ptr, ptr, ptr, ptr, ptr, c_int, i64]
        lib.mesh_forward_fft.restype = lib.mesh_inverse_fft.restype = c_int
        lib.mesh_energy_forward.argtypes = [ptr, ptr, i64, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr,
                                            ptr, ptr, c_int, i64, i64]  # fmt: skip
        lib.mesh_energy_backward.argtypes = [ptr, ptr, ptr, ptr, ptr, ptr, i64, i64, ptr, ptr, ptr, ptr, ptr, ptr,
                                             ptr, ptr, ptr, ptr, c_int, i64, i64]  # fmt: skip
        lib.mesh_energy_forward.restype = lib.mesh_energy_backward.restype = c_int
        lib.mesh_energy_gradients.argtypes = [ptr, ptr, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr,
                                              c_int]  # fmt: skip
        for f in (lib.mesh_forward_terms, lib.mesh_energy_gradients):
            f.restype = None
        lib._lesmd_typed = True
    return lib


def _cell_gradient_terms(x: np.ndarray, sizes: np.ndarray, moments: np.ndarray, slopes: np.ndarray,
                         volume_grad: float) -> np.ndarray:  # fmt: skip
    """−Xᵀ (X̄ + 8π² X M̄) Xᵀ − (volume term) Xᵀ (3, 3), X̄ = (rᵀ ū) K, M̄ the symmetric matrix of the six slope sums
    (module docstring); linear in its inputs, so the setup tabulates it as one (9, 15) map per cell."""
    d00, d11, d22, d01, d02, d12 = slopes
    metric_grad = np.array([[d00, d01, d02], [d01, d11, d12], [d02, d12, d22]])
    grad_x = moments.reshape(3, 3) * sizes[None, :] + 8.0 * math.pi**2 * (x @ metric_grad)
    return -(x.T @ grad_x @ x.T) - volume_grad * x.T


def _cell_map(x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(9, 15) matrix of :func:`_cell_gradient_terms` in (rᵀ ū flattened, six slope sums), volume term apart."""
    basis = np.eye(15)
    return np.stack([_cell_gradient_terms(x, sizes, e[:9], e[9:], 0.0).reshape(-1) for e in basis], axis=1)


def reference_energy(
    charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, params: tuple
) -> torch.Tensor:
    """The same energy by the composable operations of :mod:`lesmd.les.mesh` (differentiable to any order)."""
    shape, order, (split2, k_on, k_cut), width2, spacing = params
    widths2 = torch.full(charges.shape, width2, dtype=positions.dtype, device=positions.device)
    q = charges.to(positions.dtype)
    energy = mesh.mesh_energy(q, positions, cell, widths2, split2, k_on, k_cut, spacing, order)
    return energy - reciprocal_self_energy(q, widths2, split2)


def available(positions: torch.Tensor) -> bool:
    """True when the single-node path can run: CPU float32/float64 and the C kernels are loaded."""
    return (
        positions.device.type == "cpu" and positions.dtype in (torch.float32, torch.float64)
        and mesh.native_spread_available() and _library() is not None
    )  # fmt: skip


def uniform_mesh_energy(
    charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, width2: float, split2: float,
    k_on: float, k_cut: float, spacing: float, order: int, cell_bytes: bytes | None = None,
) -> torch.Tensor:  # fmt: skip
    """Reciprocal mesh energy of equal-width charges, reciprocal self term removed; eV (scalar).

    Args:
        charges: (N,) e; positions: (N, 3) Å (CPU, see :func:`available`); cell: (3, 3) rows = lattice vectors, Å.
        width2: the common per-charge variance s², Å²; split2: Ewald splitting variance a², Å²;
        k_on, k_cut: reciprocal window, Å⁻¹; spacing: target mesh spacing, Å; order: B-spline order.
        cell_bytes: the bytes of the cell's float64 values, when the caller has them already.
    """
    if cell_bytes is None:
        cell_bytes = cell.detach().double().numpy().tobytes()
    shape = mesh._mesh_shape(cell_bytes, float(spacing), int(order))
    mesh.check_mesh_cost(shape, positions.shape[0])
    params = (shape, int(order), (float(split2), float(k_on), float(k_cut)), float(width2), float(spacing))
    return _UniformMeshEnergy.apply(charges, positions, cell, params, cell_bytes)
