"""Overlap guard: raise when two atoms of one group (or periodic images) come closer than a minimum distance.

A fresh cell-list search every MD step costs about as much as the rest of the electrolyte's electrode work, so
:class:`OverlapGuard` keeps the model's Verlet list (:class:`lesmd.neighbors.VerletList`, skin ``SKIN``): the pairs
within r_s = max(d_min, 2 Å) + ``SKIN`` at the last search are reused while no atom has moved by ``SKIN``/2 or more
(and the cell is unchanged), so checking the listed pairs is exact. The search cutoff is at least 2 Å because a
tiny cutoff would make the cell-list search allocate millions of cells. Slab boundary: z is not periodic.
Positions in Å.
"""

from __future__ import annotations

import numpy as np
import torch

from lesmd.neighbors import VerletList, edge_vectors

SKIN = 1.0  # Å


class OverlapGuard:
    """Minimum-distance check for one group of atoms, with a Verlet list reused across MD steps.

    Args:
        min_distance: atoms closer than this (Å) raise ``ValueError``.
        periodic_z: whether the third lattice vector is periodic (finite field) or not (slab).
    """

    def __init__(self, min_distance: float, periodic_z: bool) -> None:
        self.min_distance = float(min_distance)
        self.periodic_z = periodic_z
        self._verlet = VerletList(max(self.min_distance, 2.0), skin=SKIN)
        self._pbc = torch.tensor([True, True, bool(periodic_z)])

    @property
    def searches(self) -> int:
        """Number of neighbour searches so far (for tests)."""
        return self._verlet.searches

    def check(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Raise ``ValueError`` naming the two atoms (indices within the group) if any pair is too close."""
        if len(positions) < 2:
            return
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        box = torch.as_tensor(np.asarray(cell, dtype=np.float64))
        edges = self._verlet(pos, box, self._pbc)
        if edges.i.shape[0] == 0:
            return
        d = torch.linalg.norm(edge_vectors(pos, box, edges), dim=1)
        k = int(torch.argmin(d))
        if float(d[k]) < self.min_distance:
            raise ValueError(f"atoms {int(edges.i[k])} and {int(edges.j[k])} of the same group are "
                             f"{float(d[k]):.3f} Å apart (< {self.min_distance} Å): overlapping atoms")
