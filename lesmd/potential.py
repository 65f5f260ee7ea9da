"""`LESPotential`: a model plus its settings, behind one numpy call that every adapter uses.

The ASE calculator, the i-PI client and the drivers all talk to an object with
``compute(numbers, positions, cell, pbc, properties) -> dict[str, np.ndarray]`` (eV, Å, e, ASE shapes),
so the electrode and time-dependent-field variants plug into the same adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lesmd.allocator import tune_allocator
from lesmd.evaluate import evaluate, evaluate_batch, validate_structure, wrap_into_cell


class Potential(Protocol):
    """What adapters need from a potential."""

    def compute(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        pbc: np.ndarray,
        properties: Sequence[str],
    ) -> dict[str, np.ndarray]: ...


def check_min_distance(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, min_distance: float) -> None:
    """Raise ``ValueError`` if two atoms (or an atom and a periodic image) are closer than ``min_distance`` Å."""
    if min_distance <= 0 or len(positions) < 1:
        return
    from vesin import NeighborList

    periodic = bool(np.all(pbc))
    box = np.asarray(cell, dtype=np.float64) if periodic else np.zeros((3, 3))
    if not periodic and np.any(pbc):
        # mixed boundaries: vesin needs full pbc; use a large cell in the open directions
        box = np.array(cell, dtype=np.float64)
        periodic = True
        extent = np.ptp(positions, axis=0) + 10.0 * min_distance + 1.0
        for d in range(3):
            if not pbc[d]:
                box[d] = 0.0
                box[d, d] = max(extent[d], 1.0) * 2.0
    # vesin's cell grid is sized by the cutoff: a tiny cutoff makes a huge grid, so search at ≥ 2 Å and filter
    nl = NeighborList(cutoff=max(float(min_distance), 2.0), full_list=False)
    i, j, d = nl.compute(points=np.asarray(positions, np.float64), box=box, periodic=periodic, quantities="ijd")
    close = d < min_distance
    if np.any(close):
        i, j, d = i[close], j[close], d[close]
        k = int(np.argmin(d))
        raise ValueError(
            f"atoms {int(i[k])} and {int(j[k])} are {float(d[k]):.3f} Å apart (< {min_distance} Å): "
            "overlapping atoms"
        )


def _load(model: torch.nn.Module | str | Path | None, dtype: torch.dtype | None, device: str) -> torch.nn.Module:
    if isinstance(model, torch.nn.Module):
        return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
    from lesmd.models.io import load_model

    return load_model(model, dtype=dtype, device=device)


class LESPotential:
    """An LES model with its run settings.

    Args:
        model: an :class:`~lesmd.models.base.AtomisticModel`, a path to a model file, or None for the embedded
            default water model.
        total_charge: total charge Q, e (overridden per call by ``total_charge=``).
        epsilon_inf: ε∞ for the √ε∞ scaling of charges, dipoles and BECs.
        efield: uniform field (3,), V/Å, or None. May be changed between calls (time-dependent fields).
        dtype: torch dtype of the evaluation (default: the model's).
        device: torch device.
        min_distance: atoms closer than this (Å) raise ``ValueError`` (0 disables the check).
    """

    def __init__(
        self,
        model: torch.nn.Module | str | Path | None = None,
        *,
        total_charge: float = 0.0,
        epsilon_inf: float = 1.0,
        efield: Sequence[float] | np.ndarray | None = None,
        dtype: torch.dtype | None = None,
        device: str = "cpu",
        min_distance: float = 0.3,
    ) -> None:
        if epsilon_inf <= 0:
            raise ValueError(f"epsilon_inf must be positive, got {epsilon_inf}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        tune_allocator()
        self.model = _load(model, dtype, device)
        self.model.eval()
        param = next(iter(self.model.parameters()), None)
        buffer = next(iter(self.model.buffers()), None)
        ref = param if param is not None else buffer
        self.dtype = dtype or (ref.dtype if ref is not None else torch.get_default_dtype())
        self.device = device
        self.total_charge = float(total_charge)
        self.epsilon_inf = float(epsilon_inf)
        self.efield = efield
        self.min_distance = float(min_distance)

    @property
    def efield(self) -> np.ndarray | None:
        """Uniform field (3,), V/Å, or None."""
        return self._efield

    @efield.setter
    def efield(self, value: Sequence[float] | np.ndarray | None) -> None:
        if value is None:
            self._efield = None
            return
        field = np.asarray(value, dtype=np.float64).reshape(-1)
        if field.shape != (3,) or not np.all(np.isfinite(field)):
            raise ValueError(f"efield must be 3 finite numbers in V/Å, got {value!r}")
        self._efield = field

    def compute(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        pbc: np.ndarray,
        properties: Sequence[str] = ("energy", "forces"),
        *,
        total_charge: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Energy and requested properties as float64 numpy arrays (eV, Å, e; see :func:`lesmd.evaluate.evaluate`)."""
        numbers = np.asarray(numbers)
        if numbers.ndim != 1 or numbers.size == 0:
            raise ValueError(f"the structure has no atoms (atomic numbers of shape {numbers.shape}): nothing to do")
        if not np.issubdtype(numbers.dtype, np.integer):
            if not (np.issubdtype(numbers.dtype, np.floating) and np.all(numbers == np.round(numbers))):
                raise ValueError(f"atomic numbers must be integers, got {numbers[:5].tolist()}")
        numbers_t = torch.as_tensor(numbers.astype(np.int64), dtype=torch.long, device=self.device)
        positions = np.asarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64)
        pbc = np.asarray(pbc, dtype=bool).reshape(-1)
        if pbc.shape == (1,):
            pbc = np.repeat(pbc, 3)
        if hasattr(self.model, "check_species"):
            self.model.check_species(numbers_t)
        positions, cell, shifts = wrap_into_cell(positions, cell, pbc)
        positions_t = torch.as_tensor(positions, dtype=self.dtype, device=self.device)
        cell_t = torch.as_tensor(cell, dtype=self.dtype, device=self.device)
        pbc_t = torch.as_tensor(pbc, device=self.device)
        validate_structure(numbers_t, positions_t, cell_t, pbc_t)
        check_min_distance(positions, cell, pbc, self.min_distance)
        field = None if self._efield is None else torch.as_tensor(self._efield, dtype=self.dtype)
        results = evaluate(
            self.model,
            numbers_t,
            positions_t,
            cell_t,
            pbc_t,
            properties=properties,
            total_charge=self.total_charge if total_charge is None else float(total_charge),
            efield=field,
            epsilon_inf=self.epsilon_inf,
            image_shifts=None if shifts is None else torch.as_tensor(shifts, device=self.device),
        )
        return {k: v.detach().cpu().to(torch.float64).numpy() for k, v in results.items()}

    def compute_batch(
        self,
        structures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        properties: Sequence[str] = ("energy", "forces"),
        *,
        total_charges: Sequence[float] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`compute` for B structures (numbers, positions, cell, pbc) in one model call
        (:func:`lesmd.evaluate.evaluate_batch`): path-integral beads and replicas. With a field, or a model without
        ``forward_graph``, the structures are evaluated one by one (same results)."""
        if self._efield is not None or not hasattr(self.model, "forward_graph"):
            charges = [None] * len(structures) if total_charges is None else list(total_charges)
            return [self.compute(*s, properties, total_charge=q) for s, q in zip(structures, charges, strict=True)]
        prepared, shifts_all = [], []
        for numbers, positions, cell, pbc in structures:
            numbers = np.asarray(numbers)
            if numbers.ndim != 1 or numbers.size == 0:
                raise ValueError("the structure has no atoms: nothing to do")
            pbc = np.asarray(pbc, dtype=bool).reshape(-1)
            pbc = np.repeat(pbc, 3) if pbc.shape == (1,) else pbc
            numbers_t = torch.as_tensor(numbers.astype(np.int64), device=self.device)
            self.model.check_species(numbers_t)
            positions, cell, shifts = wrap_into_cell(positions, cell, pbc)
            check_min_distance(positions, cell, pbc, self.min_distance)
            prepared.append((numbers_t, torch.as_tensor(positions, dtype=self.dtype, device=self.device),
                             torch.as_tensor(cell, dtype=self.dtype, device=self.device),
                             torch.as_tensor(pbc, device=self.device)))  # fmt: skip
            shifts_all.append(None if shifts is None else torch.as_tensor(shifts, device=self.device))
        charges = [self.total_charge] * len(prepared) if total_charges is None else [float(q) for q in total_charges]
        results = evaluate_batch(self.model, prepared, properties=properties, total_charges=charges,
                                 epsilon_inf=self.epsilon_inf, image_shifts=shifts_all)  # fmt: skip
        return [{k: v.detach().cpu().to(torch.float64).numpy() for k, v in r.items()} for r in results]
