"""The overlap guard's Verlet list (:mod:`lesmd.electrode.overlaps`) raises exactly when a brute-force search over
periodic images finds two atoms closer than the minimum distance, step after step, while searching rarely."""

import itertools

import numpy as np
import pytest

from lesmd.electrode.overlaps import OverlapGuard

CELL = np.diag([9.0, 8.0, 30.0])
MIN_DISTANCE = 0.8


def _brute_force_min_distance(positions, cell, periodic_z):
    images = [np.array(n) @ cell for n in itertools.product((-1, 0, 1), (-1, 0, 1), (-1, 0, 1) if periodic_z else (0,))]
    best = np.inf
    for a, b in itertools.combinations(range(len(positions)), 2):
        best = min(best, min(np.linalg.norm(positions[b] - positions[a] + shift) for shift in images))
    return best


@pytest.mark.parametrize("periodic_z", [True, False])
def test_overlap_guard_raises_exactly_when_brute_force_finds_a_close_pair(periodic_z):
    rng = np.random.default_rng(5)
    positions = np.array([[2.9, 4.0, 12.0], [8.5, 4.2, 12.3], [4.0, 1.0, 14.0], [4.5, 6.0, 16.0], [2.0, 7.5, 13.0]])
    guard = OverlapGuard(MIN_DISTANCE, periodic_z)
    raised = 0
    steps = 60
    for step in range(steps):
        positions = positions + rng.normal(scale=0.02, size=positions.shape)
        positions[0, 0] -= 0.06  # atoms 0 and 1 (3.4 Å apart, beyond the list) approach through the x boundary
        if step == 20:
            positions[3, 1] += CELL[1, 1]  # an atom jumps by a lattice vector (re-wrapped by the MD code)
        close = _brute_force_min_distance(positions, CELL, periodic_z) < MIN_DISTANCE
        try:
            guard.check(positions, CELL)
        except ValueError as error:
            assert "overlapping atoms" in str(error)
            raised += 1
            assert close, step
        else:
            assert not close, step
    assert 0 < raised < steps  # both outcomes occur along the trajectory
    assert guard.searches < steps / 2  # the list is reused between searches


def test_overlap_guard_names_the_pair_and_its_distance():
    positions = np.array([[1.0, 1.0, 10.0], [5.0, 5.0, 10.0], [5.3, 5.0, 10.2]])
    with pytest.raises(ValueError, match=r"atoms 1 and 2 of the same group are 0\.361 Å apart"):
        OverlapGuard(0.5, periodic_z=False).check(positions, CELL)
