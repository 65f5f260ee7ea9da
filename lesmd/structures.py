"""Starting structures built from scratch (no data files): periodic liquid-water boxes.

Water molecules (O–H 0.9572 Å, H–O–H 104.52°, the TIP3P/experimental gas-phase geometry) sit on a simple cubic
lattice filling a cubic cell at the requested mass density, each with a random orientation (uniform on SO(3));
orientations are re-drawn until no intermolecular atom pair (minimum image) is closer than ``min_distance``.
The result is a reasonable, overlap-free start for an equilibration run, not an equilibrated liquid.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms

#: molar mass of H2O in g/mol and Avogadro's number (only for the box size)
_H2O_MOLAR_MASS = 18.01528
_AVOGADRO = 6.02214076e23
OH_BOND = 0.9572  # Å
HOH_ANGLE = 104.52  # degrees


def water_molecule() -> np.ndarray:
    """(3, 3) positions (Å) of O, H, H with O at the origin and the molecule in the xy plane."""
    half = math.radians(HOH_ANGLE) / 2
    return np.array([
        [0.0, 0.0, 0.0],
        [OH_BOND * math.sin(half), OH_BOND * math.cos(half), 0.0],
        [-OH_BOND * math.sin(half), OH_BOND * math.cos(half), 0.0],
    ])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3×3 rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def water_box_length(n_molecules: int, density: float = 1.0) -> float:
    """Edge (Å) of the cubic box holding ``n_molecules`` H2O at ``density`` g/cm³."""
    volume_cm3 = n_molecules * _H2O_MOLAR_MASS / _AVOGADRO / density
    return (volume_cm3 * 1e24) ** (1.0 / 3.0)


def _closest_contact(new: np.ndarray, others: np.ndarray, length: float) -> float:
    if len(others) == 0:
        return np.inf
    d = new[:, None, :] - others[None, :, :]
    d -= length * np.round(d / length)
    return float(np.sqrt((d**2).sum(-1)).min())


def water_box(n_molecules: int = 64, density: float = 1.0, seed: int = 0, min_distance: float = 1.5,
              max_tries: int = 200) -> Atoms:
    """Periodic cubic box of randomly oriented water molecules on a lattice.

    Args:
        n_molecules: number of H2O molecules (≥ 1).
        density: mass density, g/cm³ (0.1–2).
        seed: random seed of the orientations.
        min_distance: smallest allowed intermolecular atom–atom distance, Å.
        max_tries: orientation draws per molecule before giving up.

    Returns:
        ``Atoms`` with 3·n atoms ordered O, H, H per molecule, a cubic periodic cell, and
        ``info["molecules"] = n_molecules``.

    Raises:
        ValueError: bad arguments, or no overlap-free orientation found (density too high for ``min_distance``).
    """
    if n_molecules < 1:
        raise ValueError(f"n_molecules must be ≥ 1, got {n_molecules}")
    if not 0.1 <= density <= 2.0:
        raise ValueError(f"density must be within 0.1–2 g/cm³, got {density}")
    rng = np.random.default_rng(seed)
    length = water_box_length(n_molecules, density)
    n_side = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    spacing = length / n_side
    sites = np.array([(i, j, k) for i in range(n_side) for j in range(n_side) for k in range(n_side)], float)
    sites = (sites[rng.permutation(len(sites))[:n_molecules]] + 0.5) * spacing
    template = water_molecule() - water_molecule().mean(axis=0)
    placed = np.zeros((0, 3))
    for site in sites:
        for _ in range(max_tries):
            mol = template @ random_rotation(rng).T + site
            if _closest_contact(mol, placed, length) >= min_distance:
                break
        else:
            raise ValueError(f"could not place {n_molecules} water molecules at {density} g/cm³ with "
                             f"intermolecular distances ≥ {min_distance} Å; lower density or min_distance")
        placed = np.vstack([placed, mol])
    atoms = Atoms("OH2" * n_molecules, positions=placed, cell=[length] * 3, pbc=True)
    atoms.info["molecules"] = n_molecules
    return atoms


def equilibrated_water64() -> Atoms:
    """64 H₂O (12.4 Å periodic box) equilibrated at 300 K with the shipped water model, with its velocities.

    Made by ``scripts/make_water_init.py`` (relaxation, then 5 ps Langevin NVT); the start of every water
    example, so that "300 K" runs begin at 300 K instead of heating from a built lattice.
    """
    from pathlib import Path

    from ase.io import read

    return read(Path(__file__).resolve().parent / "pretrained" / "water64_300K.xyz")
