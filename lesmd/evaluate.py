"""Turn a model into the quantities MD needs: energy, forces, stress, charges, dipole, polarisation, BEC.

All derivatives come from autograd through one graph:
- forces F = −∂H/∂r where H = E0 − E·M is the electric enthalpy (H = E0 without a field);
- stress σ = (1/V) ∂H/∂ε (ASE sign convention) with a symmetric strain ε applied to positions and cell;
- Born effective charges Z* = ∂M/∂r by one batched vector-Jacobian product (only when asked).
Units: eV, Å, e, V/Å (see :mod:`lesmd.units`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import torch

from lesmd.les.lattice import reduction_matrix, volume
from lesmd.les.response import (
    born_effective_charges,
    dipole_moment,
    enforce_acoustic_sum_rule,
    field_enthalpy,
)
from lesmd.properties import NAMES

#: the property names evaluate() accepts (shapes and units: :mod:`lesmd.properties`)
PROPERTIES = NAMES


def validate_structure(numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the problem: wrong shapes, NaN/inf, or a singular periodic cell."""
    n = numbers.shape[0]
    if numbers.dim() != 1:
        raise ValueError(f"numbers must have shape (N,), got {tuple(numbers.shape)}")
    if positions.shape != (n, 3):
        raise ValueError(f"positions must have shape ({n}, 3), got {tuple(positions.shape)}")
    if cell.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3), got {tuple(cell.shape)}")
    if pbc.shape != (3,):
        raise ValueError(f"pbc must have shape (3,), got {tuple(pbc.shape)}")
    if not torch.isfinite(positions).all():
        bad = int((~torch.isfinite(positions)).any(dim=1).nonzero()[0])
        raise ValueError(f"positions contain NaN or inf (first at atom {bad})")
    _check_cell(cell.detach().cpu().double().numpy().tobytes(), tuple(bool(p) for p in pbc.tolist()))


@functools.lru_cache(maxsize=64)
def _check_cell(values: bytes, pbc: tuple[bool, bool, bool]) -> None:
    """ValueError for a cell with NaN/inf or degenerate periodic lattice vectors (cached on the cell's bytes, so
    MD at a fixed cell checks it once; numpy, since LAPACK calls on 3×3 torch tensors cost ~0.1 ms each)."""
    cell = np.frombuffer(values, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(cell).all():
        raise ValueError("cell contains NaN or inf")
    if any(pbc):
        periodic = cell[list(pbc)]
        lengths = np.linalg.norm(periodic, axis=1)
        if bool((lengths < 1e-6).any()) or float(np.linalg.det(periodic @ periodic.T)) <= 1e-12 * lengths.prod() ** 2:
            raise ValueError(f"singular cell: periodic lattice vectors {periodic.tolist()} are degenerate")


def wrap_into_cell(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The structure in the canonical reduced basis of its lattice with atoms wrapped into that cell, in float64.

    Args:
        positions: (N, 3) Å.  cell: (3, 3) Å, rows are lattice vectors.  pbc: (3,) bool.

    Returns:
        (positions (N, 3), cell (3, 3), shifts): the same crystal (:func:`lesmd.les.lattice.reduction_matrix`) with
        r_i = wrapped_i + shifts_i · reduced cell; shifts is None when nothing is periodic or nothing moved. Done
        before a cast to float32, so that atoms many cells away keep their precision.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    periodic = np.asarray(pbc, dtype=bool)
    if not periodic.any():
        return positions, cell, None
    reduced = reduction_matrix(cell, tuple(bool(p) for p in periodic)) @ cell
    try:
        fractional = np.linalg.solve(reduced.T, positions.T).T
    except np.linalg.LinAlgError:
        return positions, cell, None  # singular: the cell checks name it
    shifts = np.where(periodic, np.floor(fractional), 0.0)
    if not np.isfinite(shifts).all():
        return positions, cell, None  # NaN/inf positions: the value checks name them
    if not shifts.any():
        return positions, reduced, None
    return positions - shifts @ reduced, reduced, shifts


def evaluate(
    model: torch.nn.Module,
    numbers: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    *,
    properties: Iterable[str] = ("energy", "forces"),
    total_charge: float = 0.0,
    efield: torch.Tensor | None = None,
    epsilon_inf: float = 1.0,
    image_shifts: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Evaluate a model and its derivatives for one structure.

    Args:
        model: an :class:`lesmd.models.base.AtomisticModel`.
        numbers: (N,) int64 atomic numbers.
        positions: (N, 3) Å; for periodic cells the itinerant (unwrapped) positions.
        cell: (3, 3) Å, rows are lattice vectors.
        pbc: (3,) bool.
        properties: subset of :data:`PROPERTIES`.
        total_charge: total charge Q, e.
        efield: optional uniform field (3,), V/Å; the energy is then the enthalpy E0 − E·M.
        epsilon_inf: ε∞; charges, dipole, polarisation and BEC are scaled by √ε∞ (and so is the field coupling).
        image_shifts: (N, 3) integer lattice shifts n_i (float64) already taken off the positions (the caller's
            positions were r_i + n_i·cell, wrapped in float64 before a cast, :func:`wrap_into_cell`): energies,
            forces, stress and BECs do not depend on them; the dipole is that of the caller's positions.

    Periodic cells: when the model offers ``born_effective_charges`` (a local charge model such as
    :class:`lesmd.models.les.LESModel`), Z* is built from minimum-image relative vectors, made to obey the
    acoustic sum rule Σ_i Z*_i = Q·I (:func:`lesmd.les.response.enforce_acoustic_sum_rule`), and the field
    force is F = −∂E0/∂r + Z*ᵀE with that Z* (Zhong et al.). The snapshot dipole Σ q r of wrapped positions is
    ill-defined in a periodic cell when the model's raw charges are not locally conserved (the total-charge shift
    moves charge through the whole cell), so the conserved quantity of field MD uses the polarisation integrated
    along the path, dM = Σ_i Z*_i dr_i (see :mod:`lesmd.field_md`); "energy" then reports E0 − E·M with the
    snapshot M, and the stress is that of E0. Open boundaries (and models without a local BEC) use the exact
    Jacobian of M = √ε∞ Σ q_i r_i and one backward pass of H = E0 − E·M.

    Returns:
        Detached tensors: "energy"/"free_energy" (scalar, eV, enthalpy when a field is on),
        "energy_zero_field" (eV), "forces" (N, 3) eV/Å, "stress" (3, 3) eV/Å³, "charges" (N,) e, "dipole" (3,) e·Å,
        "polarization" (3,) e/Å² (3-D periodic only), "born_effective_charges" (N, 3, 3) e [atom, α dipole,
        β displacement]. Only the requested ones (energy always).
    """
    props = set(properties)
    unknown = props - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown properties {sorted(unknown)}; known: {', '.join(PROPERTIES)}")
    pbc = torch.as_tensor(pbc, dtype=torch.bool, device=positions.device)
    validate_structure(numbers, positions, cell, pbc)
    if "polarization" in props and not bool(pbc.all()):
        raise ValueError("polarization needs a 3-D periodic cell (pbc all True); use the dipole instead")

    need_forces = "forces" in props
    need_stress = "stress" in props
    need_bec = "born_effective_charges" in props
    if need_stress and not bool(pbc.all()):
        raise ValueError("stress needs a 3-D periodic cell (pbc all True)")

    pos = positions.detach().clone().requires_grad_(need_forces or need_bec)
    cell0 = cell.detach().clone()
    strain = torch.zeros(3, 3, dtype=pos.dtype, device=pos.device, requires_grad=need_stress)
    if need_stress:
        sym = 0.5 * (strain + strain.T)
        pos_s = pos + pos @ sym
        cell_s = cell0 + cell0 @ sym
    else:
        pos_s, cell_s = pos, cell0

    out = model(numbers, pos_s, cell_s, pbc, total_charge)
    energy0 = out["energy"]
    field = None if efield is None else torch.as_tensor(efield, dtype=pos.dtype, device=pos.device)
    # Periodic cells with a local charge model: BEC from relative (minimum-image) vectors, and field forces Z*ᵀE
    local = bool(pbc.any()) and hasattr(model, "born_effective_charges")
    field_by_bec = local and field is not None
    # the dipole enters a derivative only through the field enthalpy or the Jacobian BEC of open boundaries
    with torch.set_grad_enabled(field is not None or (need_bec and not local)):
        dipole = dipole_moment(out["charges"], pos_s, epsilon_inf)
        if image_shifts is not None:  # Σ_i q_i n_i·h, the sum over atoms in float64
            lattice_sum = (out["charges"].double() @ image_shifts.to(torch.float64)).to(pos.dtype)
            dipole = dipole + epsilon_inf**0.5 * (lattice_sum @ cell_s)
    enthalpy = field_enthalpy(energy0, dipole, field)

    results: dict[str, torch.Tensor] = {
        "energy": enthalpy.detach(),
        "free_energy": enthalpy.detach(),
        "energy_zero_field": energy0.detach(),
        "charges": (out["charges"] * epsilon_inf**0.5).detach(),
        "dipole": dipole.detach(),
    }
    if "polarization" in props:
        results["polarization"] = dipole.detach() / volume(cell0)

    inputs = [t for t, want in ((pos, need_forces), (strain, need_stress)) if want]
    if inputs:
        grads = torch.autograd.grad(energy0 if field_by_bec else enthalpy, inputs, retain_graph=need_bec)
        k = 0
        if need_forces:
            results["forces"] = -grads[k].detach()
            k += 1
        if need_stress:
            results["stress"] = grads[k].detach() / volume(cell0)
    if need_bec or (field_by_bec and need_forces):
        if local:
            bec = model.born_effective_charges(numbers, pos.detach(), cell0, pbc, total_charge, epsilon_inf)
            bec = enforce_acoustic_sum_rule(bec, total_charge * epsilon_inf**0.5)
        else:
            bec = born_effective_charges(dipole, pos)
        if need_bec:
            results["born_effective_charges"] = bec.detach()
        if field_by_bec and need_forces:
            results["forces"] = results["forces"] + torch.einsum("iab,a->ib", bec.detach(), field)
    return results


def evaluate_batch(
    model: torch.nn.Module,
    structures: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    properties: Iterable[str] = ("energy", "forces"),
    total_charges: list[float] | None = None,
    epsilon_inf: float = 1.0,
    image_shifts: list[torch.Tensor | None] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Evaluate B structures (any sizes, open or periodic, each with its own cell and total charge) in one model
    call: the structures are concatenated into one graph (:meth:`lesmd.models.les.LESModel.forward_graph`), one
    backward pass gives every force and, through one strain per structure, every stress.

    Args:
        model: an :class:`~lesmd.models.les.LESModel` (anything with ``forward_graph``).
        structures: B tuples (numbers (N_b,), positions (N_b, 3) Å, cell (3, 3) Å, pbc (3,) bool), positions in
            the model's dtype.
        properties: as in :func:`evaluate` (no field: field runs use :func:`evaluate` per structure).
        total_charges: B total charges, e (default 0).
        epsilon_inf, image_shifts: as in :func:`evaluate`, per structure.

    Returns:
        B result dicts, the same keys, shapes and units as :func:`evaluate`; equal to B separate calls to round-off.
    """
    from lesmd.neighbors import neighbor_list

    props = set(properties)
    unknown = props - set(PROPERTIES)
    if unknown:
        raise ValueError(f"unknown properties {sorted(unknown)}; known: {', '.join(PROPERTIES)}")
    n_frames = len(structures)
    if n_frames == 0:
        return []
    total_charges = [0.0] * n_frames if total_charges is None else [float(q) for q in total_charges]
    image_shifts = [None] * n_frames if image_shifts is None else list(image_shifts)
    need_forces, need_stress = "forces" in props, "stress" in props
    pbcs = [torch.as_tensor(s[3], dtype=torch.bool, device=s[1].device) for s in structures]
    for (numbers, positions, cell, _), pbc in zip(structures, pbcs, strict=True):
        validate_structure(numbers, positions, cell, pbc)
        if need_stress and not bool(pbc.all()):
            raise ValueError("stress needs a 3-D periodic cell (pbc all True)")
        if "polarization" in props and not bool(pbc.all()):
            raise ValueError("polarization needs a 3-D periodic cell (pbc all True); use the dipole instead")
    dtype, device = structures[0][1].dtype, structures[0][1].device
    counts = torch.tensor([s[1].shape[0] for s in structures], device=device)
    positions = torch.cat([s[1].detach() for s in structures]).clone().requires_grad_(need_forces)
    cells = torch.stack([s[2].detach().to(dtype) for s in structures])
    species, i_all, j_all, shifts, edge_frames = [], [], [], [], []
    start = 0
    for b, (numbers, pos, cell, _) in enumerate(structures):
        species.append(model.species_indices(numbers))
        edges = neighbor_list(pos.detach(), cell.detach().to(dtype), pbcs[b], model.cutoff)
        i_all.append(edges.i + start)
        j_all.append(edges.j + start)
        shifts.append(edges.shifts.to(dtype))
        edge_frames.append(torch.full((edges.i.shape[0],), b, dtype=torch.long, device=device))
        start += pos.shape[0]
    i_all, j_all, shifts, edge_frames = torch.cat(i_all), torch.cat(j_all), torch.cat(shifts), torch.cat(edge_frames)
    frame = torch.repeat_interleave(torch.arange(n_frames, device=device), counts)
    strain = torch.zeros(n_frames, 3, 3, dtype=dtype, device=device, requires_grad=need_stress)
    if need_stress:
        sym = 0.5 * (strain + strain.transpose(1, 2))
        pos_s = positions + torch.bmm(positions.unsqueeze(1), sym[frame]).squeeze(1)
        cells_s = cells + torch.bmm(cells, sym)
    else:
        pos_s, cells_s = positions, cells
    lattice = torch.bmm(shifts.unsqueeze(1), cells_s[edge_frames]).squeeze(1)
    vectors = pos_s.index_select(0, j_all) - pos_s.index_select(0, i_all) + lattice
    out = model.forward_graph(torch.cat(species), vectors, i_all, j_all, pos_s, cells_s, torch.stack(pbcs), counts,
                              total_charges)  # fmt: skip
    inputs = [t for t, want in ((positions, need_forces), (strain, need_stress)) if want]
    grads = torch.autograd.grad(out["energy"].sum(), inputs) if inputs else ()
    scale = epsilon_inf**0.5
    charges = out["charges"].detach()
    results = []
    start = 0
    for b, (numbers, pos, cell, _) in enumerate(structures):
        n = pos.shape[0]
        q = charges[start : start + n]
        dipole = scale * (q.unsqueeze(1) * pos.detach()).sum(0)
        if image_shifts[b] is not None:
            dipole = dipole + scale * ((q.double() @ image_shifts[b].to(torch.float64)).to(dtype) @ cell.to(dtype))
        energy = out["energy"][b].detach()
        result = {"energy": energy, "free_energy": energy, "energy_zero_field": energy, "charges": scale * q,
                  "dipole": dipole}  # fmt: skip
        k = 0
        if need_forces:
            result["forces"] = -grads[0][start : start + n].detach()
            k = 1
        if need_stress:
            result["stress"] = grads[k][b].detach() / volume(cell.detach().to(dtype))
        if "polarization" in props:
            result["polarization"] = dipole / volume(cell.detach().to(dtype))
        if "born_effective_charges" in props:  # per structure (not a PIMD hot path)
            result["born_effective_charges"] = evaluate(
                model, numbers, pos, cell, pbcs[b], properties=["born_effective_charges"],
                total_charge=total_charges[b], epsilon_inf=epsilon_inf,
            )["born_effective_charges"]  # fmt: skip
        results.append(result)
        start += n
    return results
