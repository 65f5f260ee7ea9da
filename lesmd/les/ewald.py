"""Public API: Coulomb energy of Gaussian (and point) charges for open, 3-D periodic and slab boundaries.

The physics (kernels, self terms, neutralising background) is in :mod:`lesmd.les.potentials`; the summation
methods are :mod:`lesmd.les.realspace` (pairs), :mod:`lesmd.les.kspace` (direct k-sum), :mod:`lesmd.les.mesh`
(smooth PME) and :mod:`lesmd.les.slab` (2-D periodic correction); parameters come from :mod:`lesmd.les.tuning`.
The LES case on the mesh (3-D periodic, one width, no real-space part, CPU) runs as a single autograd node
(:mod:`lesmd.les.uniform_mesh`), the same energy with a fraction of the per-step overhead.

LES (Cheng, npj Comput. Mater. 11, 80 (2025); Kim et al., arXiv:2412.15455) is the special case of equal widths
s_i = σ/√2, i.e. the pair kernel k_e erf(r/(√2σ))/r, with the self-interaction removed:

    open:       E = ½ Σ_{i≠j} k_e q_i q_j erf(r_ij/(√2σ))/r_ij
    periodic:   E = (1/(2Vε0)) Σ_{k≠0} e^(−σ²k²/2)/k² |S(k)|² − k_e Σ_i q_i²/(σ√(2π))

Conventions:
* widths: per-charge standard deviations s_i (Å) of Gaussian charge densities, 0 = point charge; the pair kernel
  is k_e erf(r/√(2(s_i²+s_j²)))/r. ``les_energy(sigma=σ)`` uses s_i = σ/√2.
* pbc: all False = open (cell ignored); all True = 3-D periodic; (True, True, False) = slab (see
  :mod:`lesmd.les.slab` for the cell requirements and the vacuum that is added internally).
* accuracy ε: every truncation (reciprocal window, real-space cutoff, mesh) is set so that its error is below
  ε · k_e Σ_i q_i² / W (W the narrowest total Gaussian width, σ for LES): ε relative to the self-energy scale.
  The periodic energy is thus the converged sum, not a truncated one, and it does not depend on the method
  beyond ε. Default 1e-6: errors ≲ 1e-7 of that scale for the energy, ~1e-5 relative for forces and stress.
* method: "direct" (k-vector sum, O(N·N_k)), "mesh" (smooth PME, O(N log N)) or "auto" (mesh from
  ``tuning.MESH_MIN_ATOMS`` charges). The direct LES energy is a C² function of the cell (smooth reciprocal
  window, no k-sphere jumps); the mesh energy steps by less than ε·scale when the integer mesh shape changes.
* charged periodic cells include the uniform neutralising background (tin-foil, k = 0 left out).
* cell rows are lattice vectors (ASE), positions in Å, charges in e, energies in eV, potentials in V;
  everything is differentiable w.r.t. charges, positions and cell (twice, for force training), float32 or
  float64 (the dtype of ``positions``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

from lesmd.les import kspace, mesh, realspace, slab, uniform_mesh
from lesmd.les.checks import all_finite
from lesmd.les.lattice import reduce_cell, volume
from lesmd.les.potentials import background_energy, gaussian_self_energy, reciprocal_self_energy
from lesmd.les.tuning import EwaldParameters, choose_parameters
from lesmd.units import COULOMB

Pbc = bool | Sequence[bool] | torch.Tensor
_METHODS = ("auto", "direct", "mesh")


def les_energy(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: Pbc,
    sigma: float = 1.0,
    *,
    accuracy: float = 1e-6,
    method: str = "auto",
    fused: bool = True,
) -> torch.Tensor:
    """LES long-range energy: Coulomb energy of charges smeared with pair kernel erf(r/(√2σ))/r; eV.

    Args:
        charges: (N,) latent charges in e.
        positions: (N,3) in Å.
        cell: (3,3) rows = lattice vectors in Å (ignored, may be None or zeros, for open boundaries).
        pbc: bool or 3 bools: all False = open, all True = 3-D periodic, (True, True, False) = slab.
        sigma: smearing σ in Å (each charge is a Gaussian of standard deviation σ/√2).
        accuracy: relative accuracy ε of the periodic sums (see :mod:`lesmd.les.tuning`).
        method: "auto", "direct" (k-vector sum) or "mesh" (smooth PME, O(N log N)).
        fused: let the mesh sum of this case run as one autograd node (:mod:`lesmd.les.uniform_mesh`, CPU);
            False keeps the composable operations (the same energy: a baseline for benchmarks and tests).

    Returns:
        Scalar energy in eV (same dtype as ``positions``), self-interaction excluded.
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive finite number (Å), got {sigma!r}")
    return coulomb_energy(
        charges, positions, cell, pbc, sigma / math.sqrt(2.0), accuracy=accuracy, method=method, fused=fused
    )


def coulomb_energy(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: Pbc,
    widths: float | torch.Tensor = 0.0,
    *,
    accuracy: float = 1e-6,
    method: str = "auto",
    self_energy: bool = False,
    fused: bool = True,
) -> torch.Tensor:
    """Coulomb energy of Gaussian charges of per-atom widths (pair kernel k_e erf(r/√(2(s_i²+s_j²)))/r); eV.

    Args:
        charges, positions, cell, pbc, accuracy, method: as in :func:`les_energy`.
        widths: per-charge standard deviations s_i in Å, scalar or (N,); 0 means a point charge.
        self_energy: add each Gaussian's own electrostatic energy k_e q_i²/(2√π s_i) (electrode convention;
            all widths must be positive). Default: self-interaction excluded.
        fused: as in :func:`les_energy` (applies to one common width on a 3-D periodic mesh).
    """
    _check_inputs(charges, positions, accuracy, method, values=False)
    if fused and not self_energy and isinstance(widths, (int, float)):
        # NaN/inf positions and charges are caught by the node's kernels, with the messages of _check_values
        energy = _uniform_periodic_energy(charges, positions, cell, pbc, float(widths), accuracy, method)
        if energy is not None:
            return energy
    _check_values(charges, positions)
    system = _system(charges, positions, cell, pbc, widths, accuracy)
    q, pos, box, widths2, mode = system
    if mode == "open":
        energy = realspace.open_energy(q, pos, widths2)
    else:
        energy = _periodic_energy(q, pos, box, widths2, _choose(system, accuracy, method))
        if mode == "slab":
            energy = energy + slab.slab_correction(q, pos, widths2, box)
    if self_energy:
        energy = energy + gaussian_self_energy(q, widths2)
    return energy


def electrostatic_potential(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: Pbc,
    widths: float | torch.Tensor = 0.0,
    *,
    accuracy: float = 1e-6,
    method: str = "auto",
    self_energy: bool = False,
    create_graph: bool = False,
) -> torch.Tensor:
    """Electrostatic potential φ_i = ∂E/∂q_i at each charge (eV/e = V), (N,).

    Arguments as in :func:`coulomb_energy`; ``create_graph=True`` keeps φ differentiable (e.g. for forces).
    """
    q = charges.detach().clone().requires_grad_(True) if not create_graph else charges
    if create_graph and not q.requires_grad:
        q = q.clone().requires_grad_(True)
    energy = coulomb_energy(q, positions, cell, pbc, widths, accuracy=accuracy, method=method, self_energy=self_energy)
    (phi,) = torch.autograd.grad(energy, q, create_graph=create_graph)
    return phi


def coulomb_matrix(
    positions: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: Pbc,
    widths: float | torch.Tensor = 0.0,
    *,
    accuracy: float = 1e-6,
    self_energy: bool = False,
) -> torch.Tensor:
    """Dense symmetric Coulomb matrix A (N,N) in eV/e² with E = ½ qᵀ A q (direct sums; for a few hundred atoms).

    Same energy as :func:`coulomb_energy` for every q (background term included for charged periodic q);
    differentiable w.r.t. positions and cell.
    """
    if not isinstance(positions, torch.Tensor):
        raise ValueError(f"positions must be a tensor of shape (N, 3), got {_shape(positions)}")
    ones = torch.ones(positions.shape[:1], dtype=positions.dtype, device=positions.device)
    system = _prepare(ones, positions, cell, pbc, widths, accuracy, "direct")
    _, pos, box, widths2, mode = system
    if mode == "open":
        matrix = realspace.open_matrix(pos, widths2)
    else:
        params = _choose(system, accuracy, "direct")
        matrix = kspace.kspace_matrix(pos, box, widths2, params.split2, params.k_on, params.k_cut)
        matrix = matrix + realspace.realspace_matrix(pos, box, widths2, params.split2, params.r_cut)
        total2 = 2.0 * widths2 + 2.0 * params.split2
        matrix = matrix - torch.diag(2.0 * COULOMB * torch.rsqrt(total2) / math.sqrt(2.0 * math.pi))
        box_volume = volume(box)
        matrix = matrix + 2.0 * background_energy(torch.ones_like(box_volume), box_volume, params.split2)
        if mode == "slab":
            matrix = matrix + slab.slab_correction_matrix(pos, widths2, box)
    if self_energy:
        matrix = matrix + torch.diag(COULOMB * torch.rsqrt(widths2) / math.sqrt(math.pi))
    return matrix


def _periodic_energy(
    q: torch.Tensor, pos: torch.Tensor, box: torch.Tensor, widths2: torch.Tensor, params: EwaldParameters
) -> torch.Tensor:
    if params.method == "mesh":
        energy = mesh.mesh_energy(
            q, pos, box, widths2, params.split2, params.k_on, params.k_cut, params.mesh_spacing, params.order
        )
    else:
        energy = kspace.kspace_energy(q, pos, box, widths2, params.split2, params.k_on, params.k_cut)
    energy = energy - reciprocal_self_energy(q, widths2, params.split2)
    if params.split2 > 0.0:
        energy = energy + realspace.realspace_energy(q, pos, box, widths2, params.split2, params.r_cut)
        energy = energy + background_energy(q.sum(), volume(box), params.split2)
    return energy


def _uniform_periodic_energy(
    charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor | None, pbc: Pbc, width: float,
    accuracy: float, method: str,
) -> torch.Tensor | None:  # fmt: skip
    """The LES case in one autograd node (:mod:`lesmd.les.uniform_mesh`): 3-D periodic, one width wide enough for
    a pure reciprocal sum, the mesh method, CPU. None when another path applies (inputs already checked)."""
    if _mode(pbc) != "periodic" or not uniform_mesh.available(positions):
        return None
    box = reduce_cell(_cell_tensor(cell, positions, pbc), (True, True, True))
    cell_bytes = box.detach().numpy().astype(np.float64).tobytes()
    params = _uniform_parameters(cell_bytes, positions.shape[0], _width2(width), accuracy, method)
    if params is None:
        return None
    return uniform_mesh.uniform_mesh_energy(
        charges.to(positions.dtype), positions, box, params.width2, params.split2, params.k_on, params.k_cut,
        params.mesh_spacing, params.order, cell_bytes=cell_bytes,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _UniformParameters(EwaldParameters):
    width2: float = 0.0


@functools.lru_cache(maxsize=64)
def _uniform_parameters(
    cell_bytes: bytes, n_atoms: int, width2: float, accuracy: float, method: str
) -> _UniformParameters | None:
    """Checked cell → mesh parameters of the single-node path, None when it does not apply (a split or the direct
    sum); cached, so an MD step at a fixed cell pays one dictionary lookup."""
    params = choose_parameters(width2, width2, _check_periodic_cell(cell_bytes), n_atoms, accuracy, method)
    if params.method != "mesh" or params.split2 > 0.0:
        return None
    return _UniformParameters(**dataclasses.asdict(params), width2=width2)


def _choose(system: tuple, accuracy: float, method: str) -> EwaldParameters:
    q, pos, box, widths2, _ = system
    w2 = widths2.detach()
    box_volume = float(volume(box.detach()))
    return choose_parameters(float(w2.min()), float(w2.max()), box_volume, pos.shape[0], accuracy, method)


def _prepare(
    charges: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: Pbc,
    widths: float | torch.Tensor,
    accuracy: float,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, str]:
    """Validate inputs; return charges, positions, cell (positions' dtype), widths² (N,) and the boundary mode."""
    _check_inputs(charges, positions, accuracy, method)
    return _system(charges, positions, cell, pbc, widths, accuracy)


def _check_inputs(
    charges: torch.Tensor, positions: torch.Tensor, accuracy: float, method: str, values: bool = True
) -> None:
    """ValueError naming the problem with the charges, positions (shapes, and NaN/inf unless ``values`` is False:
    then the caller runs :func:`_check_values` itself), accuracy or method."""
    if not isinstance(positions, torch.Tensor) or positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be a tensor of shape (N, 3), got {_shape(positions)}")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be floating point, got {positions.dtype}")
    n_atoms = positions.shape[0]
    if n_atoms == 0:
        raise ValueError("positions is empty: need at least one charge")
    if not isinstance(charges, torch.Tensor) or charges.shape != (n_atoms,):
        raise ValueError(f"charges must have shape ({n_atoms},) to match positions, got {_shape(charges)}")
    if not (isinstance(accuracy, (int, float)) and 0.0 < accuracy < 1.0):
        raise ValueError(f"accuracy must be a number in (0, 1), got {accuracy!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if values:
        _check_values(charges, positions)


def _check_values(charges: torch.Tensor, positions: torch.Tensor) -> None:
    if not all_finite(positions):
        raise ValueError("positions contain NaN or inf")
    if not all_finite(charges):
        raise ValueError("charges contain NaN or inf")


def _system(
    charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor | None, pbc: Pbc,
    widths: float | torch.Tensor, accuracy: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, str]:  # fmt: skip
    """Checked inputs → charges, positions, cell (positions' dtype), widths² (N,) and the boundary mode."""
    dtype, device = positions.dtype, positions.device
    charges = charges.to(dtype)
    widths2 = _widths2(widths, positions.shape[0], dtype, device)
    mode = _mode(pbc)
    if mode == "open":
        return charges, positions, None, widths2, mode
    if mode == "slab":
        cell = _cell_tensor(cell, positions, pbc)
        if not all_finite(cell):
            raise ValueError("cell contains NaN or inf")
        cell = reduce_cell(cell, (True, True, False))
        return charges, positions, slab.extended_cell(cell, positions, widths2, accuracy), widths2, mode
    return charges, positions, _periodic_cell(cell, positions, pbc)[0], widths2, mode


def _cell_tensor(cell: torch.Tensor | None, positions: torch.Tensor, pbc: Pbc) -> torch.Tensor:
    if cell is None:
        raise ValueError(f"a cell is required for periodic boundaries (pbc={_pbc_tuple(pbc)})")
    cell = torch.as_tensor(cell).to(dtype=positions.dtype, device=positions.device)
    if cell.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3), got {tuple(cell.shape)}")
    return cell


def _periodic_cell(cell: torch.Tensor | None, positions: torch.Tensor, pbc: Pbc) -> tuple[torch.Tensor, float]:
    """The checked 3-D periodic cell in the positions' dtype, in the canonical reduced basis of its lattice
    (:func:`lesmd.les.lattice.reduce_cell`: the sums do not depend on the basis given), and its volume (Å³)."""
    cell = _cell_tensor(cell, positions, pbc)
    volume = _check_periodic_cell(cell.detach().cpu().double().numpy().tobytes())
    return reduce_cell(cell, (True, True, True)), volume


@functools.lru_cache(maxsize=64)
def _check_periodic_cell(values: bytes) -> float:
    """The volume (Å³) of a periodic cell given as the bytes of its float64 values; ValueError for NaN/inf or a
    singular or degenerate cell (cached, so MD at a fixed cell checks it once)."""
    cell = np.frombuffer(values, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(cell).all():
        raise ValueError("cell contains NaN or inf")
    lengths = np.linalg.norm(cell, axis=1)
    cell_volume = abs(float(np.linalg.det(cell)))
    if bool((lengths <= 0).any()) or cell_volume <= 1e-8 * float(lengths.prod()):
        raise ValueError(f"cell is singular or degenerate (volume {cell_volume:.3g} Å³) for periodic boundaries")
    return cell_volume


def _widths2(widths: float | torch.Tensor, n_atoms: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(widths, (int, float)):  # one width for all (LES): checked in Python, one tensor operation
        return torch.full((n_atoms,), _width2(widths), dtype=dtype, device=device)
    w = torch.as_tensor(widths, dtype=dtype, device=device).detach()
    if w.ndim == 0:
        w = w.expand(n_atoms)
    if w.shape != (n_atoms,):
        raise ValueError(f"widths must be a scalar or have shape ({n_atoms},), got {tuple(w.shape)}")
    if not torch.isfinite(w).all() or bool((w < 0).any()):
        raise ValueError("widths must be finite and non-negative (Å)")
    return (w * w).contiguous()


def _width2(width: float) -> float:
    """s² (Å²) of one common width s, ValueError unless finite and non-negative."""
    if not (math.isfinite(width) and width >= 0):
        raise ValueError("widths must be finite and non-negative (Å)")
    return float(width) ** 2


def _pbc_tuple(pbc: Pbc) -> tuple[bool, bool, bool]:
    if isinstance(pbc, torch.Tensor):
        values = (pbc if pbc.dim() == 1 else pbc.reshape(-1)).tolist()
    elif isinstance(pbc, (bool, int)):
        values = [bool(pbc)] * 3
    else:
        values = list(pbc)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"pbc must be a bool or 3 bools, got {pbc!r}")
    return tuple(bool(v) for v in values)


def _mode(pbc: Pbc) -> str:
    flags = _pbc_tuple(pbc)
    if flags == (False, False, False):
        return "open"
    if flags == (True, True, True):
        return "periodic"
    if flags == (True, True, False):
        return "slab"
    raise ValueError(f"unsupported pbc {flags}: use all False, all True or (True, True, False)")


def _shape(x: object) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
