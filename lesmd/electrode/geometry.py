"""Electrode geometries: fcc(100) metal layers and the Au(100) parallel-plate capacitor benchmark.

The capacitor is the LAMMPS ELECTRODE / OpenMM ConstantPotentialForce test system: a = 4.173345 Å, each electrode
two fcc(100) layers of 72 atoms (6 × 6 square cells of side a, 2 atoms each), layers at z = 8.000, 10.086673
(bottom) and 32.173344, 34.260021 Å (top), box 25.040064 × 25.040064 × 44.346687 Å³ (Ahrens-Iwers et al.,
JCP 157, 084801 (2022)). Plain numpy, no ASE.
"""

from __future__ import annotations

import numpy as np

AU_LATTICE = 4.173345
AU_LAYERS_Z = (8.000, 10.086673, 32.173344, 34.260021)
AU_BOX = (25.040064, 25.040064, 44.346687)
AU_ETA = 1.979


def fcc100_layer(lattice: float, repeats: int, z: float, shifted: bool) -> np.ndarray:
    """(2·repeats², 3) positions (Å) of one fcc(100) layer at height z; ``shifted`` gives the B stacking."""
    base = np.array([[0.5, 0.0], [0.0, 0.5]]) if shifted else np.array([[0.0, 0.0], [0.5, 0.5]])
    cells = np.array([[i, j] for i in range(repeats) for j in range(repeats)], dtype=np.float64)
    xy = (cells[:, None, :] + base[None, :, :]).reshape(-1, 2) * lattice
    return np.column_stack([xy, np.full(len(xy), z)])


def au100_capacitor(lattice: float = AU_LATTICE, repeats: int = 6, layers_z: tuple[float, ...] = AU_LAYERS_Z,
                    box: tuple[float, float, float] = AU_BOX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atomic numbers (N,), positions (N, 3) Å and cell (3, 3) Å of the Au(100) capacitor.

    Atoms are ordered layer by layer from the bottom: the first half is the bottom electrode.
    """
    layers = [fcc100_layer(lattice, repeats, z, shifted=bool(k % 2)) for k, z in enumerate(layers_z)]
    positions = np.concatenate(layers)
    return np.full(len(positions), 79, dtype=np.int64), positions, np.diag(np.asarray(box, dtype=np.float64))


def water_between_electrodes(
    n_per_side: int = 4,
    n_layers: int = 4,
    box: tuple[float, float, float] = AU_BOX,
    z_range: tuple[float, float] = (13.5, 28.5),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Water molecules on a grid between the electrodes: atomic numbers (3M,) and positions (3M, 3) Å (O, H, H).

    M = n_per_side² · n_layers molecules with random orientations (O–H 0.9572 Å, H–O–H 104.52°), centred on
    the cells of a regular grid spanning the lateral box and ``z_range`` (Å).
    """
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(104.52)
    local = np.array([[0.0, 0.0, 0.0], [0.9572, 0.0, 0.0], [0.9572 * np.cos(angle), 0.9572 * np.sin(angle), 0.0]])
    xs = (np.arange(n_per_side) + 0.5) * box[0] / n_per_side
    ys = (np.arange(n_per_side) + 0.5) * box[1] / n_per_side
    zs = z_range[0] + (np.arange(n_layers) + 0.5) * (z_range[1] - z_range[0]) / n_layers
    positions = []
    for x in xs:
        for y in ys:
            for z in zs:
                q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
                positions.append(local @ q.T + np.array([x, y, z]))
    n_mol = len(positions)
    return np.tile([8, 1, 1], n_mol).astype(np.int64), np.concatenate(positions)
