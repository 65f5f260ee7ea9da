"""Overlap guard: raise when two atoms of one group (or periodic images) come closer than a minimum distance.

A fresh cell-list search (vesin) every MD step costs about as much as the rest of the electrolyte's electrode
work, so :class:`OverlapGuard` keeps a Verlet list: the pairs within r_s = max(d_min, 2 Å) + ``SKIN`` at the last
search, with their lattice images fixed. While no atom has moved by ``SKIN``/2 or more since that search (and the
cell is unchanged), no pair outside the list can have come within r_s − ``SKIN`` ≥ d_min, so checking the listed
pairs is exact; otherwise the search is repeated. The search cutoff is at least 2 Å because a tiny cutoff would
make vesin allocate millions of cells. Slab boundary (z not periodic): the search runs in a box padded along z.
Plain numpy; positions in Å.
"""

from __future__ import annotations

import numpy as np

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
        self.cutoff = max(self.min_distance, 2.0) + SKIN
        self._list: dict | None = None
        self.searches = 0  # number of neighbour searches so far (for tests)

    def check(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Raise ``ValueError`` naming the two atoms (indices within the group) if any pair is too close."""
        if len(positions) < 2:
            return
        listed = self._list
        if listed is None or listed["reference"].shape != positions.shape or not np.array_equal(listed["cell"], cell) \
                or np.max(np.sum((positions - listed["reference"]) ** 2, axis=1)) >= 0.25 * SKIN * SKIN:
            listed = self._search(positions, cell)
        i, j = listed["i"], listed["j"]
        if len(i) == 0:
            return
        d = np.linalg.norm(positions[j] - positions[i] + listed["shift"], axis=1)
        k = int(np.argmin(d))
        if d[k] < self.min_distance:
            raise ValueError(f"atoms {int(i[k])} and {int(j[k])} of the same group are {float(d[k]):.3f} Å apart "
                             f"(< {self.min_distance} Å): overlapping atoms")

    def _search(self, positions: np.ndarray, cell: np.ndarray) -> dict:
        from vesin import NeighborList

        box = np.array(cell, dtype=np.float64)
        if not self.periodic_z:
            box[2, 2] = np.ptp(positions[:, 2]) + 2.0 * self.cutoff + 1.0
        frac = positions @ np.linalg.inv(box)
        offsets = np.floor(frac)
        search = NeighborList(cutoff=self.cutoff, full_list=False)
        i, j, s = search.compute(points=(frac - offsets) @ box, box=box, periodic=True, quantities="ijS")
        # wrapped_j − wrapped_i + S·box = r_j − r_i + (S − offset_j + offset_i)·box for the unwrapped positions
        shift = (s - offsets[j] + offsets[i]) @ box
        self._list = {"i": i, "j": j, "shift": shift, "reference": positions.copy(), "cell": np.array(cell)}
        self.searches += 1
        return self._list
