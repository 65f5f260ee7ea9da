"""Input must not buy unbounded cost: a huge periodic cell is refused at once with the size it would need."""

import time

import numpy as np
import pytest
import torch

from lesmd.les.ewald import les_energy
from lesmd.potential import LESPotential


@pytest.mark.parametrize("n_atoms", [3, 200])  # the direct k-sum (few charges) and the mesh
def test_vacuum_box_of_ten_thousand_angstrom_is_refused_quickly(n_atoms):
    rng = np.random.default_rng(0)
    pos = torch.tensor(rng.random((n_atoms, 3)) * 10.0)
    q = torch.tensor(rng.standard_normal(n_atoms))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="too large a cell|too large for a periodic") as info:
        les_energy(q - q.mean(), pos, torch.eye(3, dtype=torch.float64) * 1e4, True)
    assert time.perf_counter() - start < 2.0
    assert "open boundaries" in str(info.value) and "\n" not in str(info.value)


def test_water_molecule_in_a_huge_periodic_box_gets_the_fix_named_by_the_calculator():
    potential = LESPotential(None, dtype=torch.float64)
    positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    with pytest.raises(ValueError, match="open boundaries"):
        potential.compute([8, 1, 1], positions, np.eye(3) * 1e4, np.ones(3, bool), ["energy", "forces"])
    # the same molecule with open boundaries is fine
    out = potential.compute([8, 1, 1], positions, np.zeros((3, 3)), np.zeros(3, bool), ["energy", "forces"])
    assert np.isfinite(out["energy"])
