"""Training data: read labelled structures from extended XYZ (or anything ASE reads) with configurable keys.

A label is looked up first in the ASE calculator results (``atoms.calc.results``, where ASE puts ``energy``,
``forces``, ``stress``, ``dipole`` of extxyz files), then in ``atoms.info`` (per-structure) and ``atoms.arrays``
(per-atom). Units: eV, Å, e; stress in eV/Å³ with ASE's sign (σ = (1/V) ∂E/∂ε), Voigt or 3×3; dipole e·Å;
Born effective charges (N, 3, 3) e.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Frame:
    """One labelled structure (numpy, float64). Optional labels are None when absent."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    dipole: np.ndarray | None = None
    bec: np.ndarray | None = None
    charge: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])


@dataclass
class Keys:
    """Names of the labels in the file (``None`` = not used)."""

    energy: str = "energy"
    forces: str | None = "forces"
    stress: str | None = None
    dipole: str | None = None
    bec: str | None = None
    charge: str = "charge"


def _lookup(atoms, key: str):
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    for source in (results, atoms.info, atoms.arrays):
        if key in source:
            return source[key]
    return None


def _voigt_to_matrix(stress: np.ndarray) -> np.ndarray:
    s = np.asarray(stress, dtype=float).reshape(-1)
    if s.size == 9:
        return s.reshape(3, 3)
    if s.size == 6:
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"stress must have 6 (Voigt) or 9 components, got {s.size}")


def frame_from_atoms(atoms, keys: Keys, index: int = 0) -> Frame:
    """Convert one ``ase.Atoms`` into a :class:`Frame` (ValueError naming a missing or malformed label)."""
    n = len(atoms)
    energy = _lookup(atoms, keys.energy)
    if energy is None:
        raise ValueError(f"structure {index}: no energy under key {keys.energy!r}")

    def optional(key, shape, name):
        if key is None:
            return None
        value = _lookup(atoms, key)
        if value is None:
            raise ValueError(f"structure {index}: no {name} under key {key!r}")
        value = np.asarray(value, dtype=float)
        if name == "stress":
            return _voigt_to_matrix(value)
        if value.size != int(np.prod(shape)):
            raise ValueError(f"structure {index}: {name} {key!r} has shape {value.shape}, expected {shape}")
        return value.reshape(shape)

    pbc = np.asarray(atoms.pbc, dtype=bool)
    charge = atoms.info.get(keys.charge, 0.0)
    return Frame(
        numbers=np.asarray(atoms.numbers, dtype=np.int64),
        positions=np.asarray(atoms.positions, dtype=float),
        cell=np.asarray(atoms.cell.array, dtype=float),
        pbc=pbc,
        energy=float(np.asarray(energy).reshape(-1)[0]),
        forces=optional(keys.forces, (n, 3), "forces"),
        stress=optional(keys.stress, (3, 3), "stress"),
        dipole=optional(keys.dipole, (3,), "dipole"),
        bec=optional(keys.bec, (n, 3, 3), "Born effective charges"),
        charge=float(charge),
    )


def read_frames(path: str | Path, keys: Keys | None = None, index: str = ":") -> list[Frame]:
    """Read labelled frames from ``path`` (extxyz or any ASE format)."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training data not found: {path}")
    keys = keys or Keys()
    images = ase.io.read(path, index)
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise ValueError(f"{path} contains no structures")
    return [frame_from_atoms(atoms, keys, k) for k, atoms in enumerate(images)]


def split_frames(
    frames: list[Frame], *, valid_fraction: float = 0.1, valid_last: int | None = None, seed: int = 0
) -> tuple[list[Frame], list[Frame]]:
    """Train/validation split: the last ``valid_last`` frames, or a random ``valid_fraction`` (seeded)."""
    n = len(frames)
    if valid_last is not None:
        if not 0 < valid_last < n:
            raise ValueError(f"valid_last must be between 1 and {n - 1} for {n} frames, got {valid_last}")
        return frames[: n - valid_last], frames[n - valid_last :]
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    n_valid = max(1, int(round(valid_fraction * n)))
    if n_valid >= n:
        raise ValueError(f"need at least 2 frames for a train/validation split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    valid = set(order[:n_valid].tolist())
    return [f for k, f in enumerate(frames) if k not in valid], [f for k, f in enumerate(frames) if k in valid]


def fit_reference_energies(frames: list[Frame], species: list[int]) -> dict[int, float]:
    """Per-element reference energies ε_Z from the least-squares fit E ≈ Σ_Z n_Z ε_Z (minimum-norm solution
    when the composition does not vary, e.g. pure water)."""
    counts = np.array([[np.count_nonzero(f.numbers == z) for z in species] for f in frames], dtype=float)
    energies = np.array([f.energy for f in frames])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {int(z): float(e) for z, e in zip(species, solution, strict=True)}


def species_of(frames: list[Frame]) -> list[int]:
    """Sorted atomic numbers present in ``frames``."""
    return sorted({int(z) for f in frames for z in np.unique(f.numbers)})
