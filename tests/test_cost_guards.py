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


def test_two_hundred_angstrom_box_with_a_few_hundred_charges_is_refused_but_dense_cells_pass():
    rng = np.random.default_rng(1)
    pos = torch.tensor(rng.random((200, 3)) * 10.0)
    q = torch.tensor(rng.standard_normal(200))
    with pytest.raises(ValueError, match="Ewald mesh .* for 200 charges"):
        les_energy(q - q.mean(), pos, torch.eye(3, dtype=torch.float64) * 200.0, True)
    from lesmd.les.mesh import check_mesh_cost

    check_mesh_cost((448, 448, 448), 800_000)  # the same box full of water (800k atoms, 112 points each) passes


def test_open_boundary_sum_recomputing_its_blocks_gives_the_same_energy_forces_and_second_derivatives(monkeypatch):
    from lesmd.les import realspace

    rng = np.random.default_rng(2)
    pos = torch.tensor(rng.random((300, 3)) * 20.0, requires_grad=True)
    q = torch.tensor(rng.standard_normal(300), requires_grad=True)
    widths2 = torch.full((300,), 0.5, dtype=torch.float64)
    monkeypatch.setattr(realspace, "_CHUNK_PAIRS", 300 * 37)  # several blocks
    results = []
    for threshold in (10**9, 10):  # stored blocks, recomputed blocks
        monkeypatch.setattr(realspace, "CHECKPOINT_MIN_ATOMS", threshold)
        energy = realspace.open_energy(q, pos, widths2)
        (forces,) = torch.autograd.grad(energy, pos, create_graph=True)
        (second,) = torch.autograd.grad((forces**2).sum(), q)  # training differentiates forces once more
        results.append((energy.detach(), forces.detach(), second))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_twenty_thousand_charges_with_open_boundaries_fit_in_a_few_gigabytes():
    import subprocess
    import sys

    code = (
        "import resource, torch, numpy as np\n"
        "resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))\n"
        "from lesmd.les.ewald import les_energy\n"
        "torch.set_num_threads(2)\n"
        "rng = np.random.default_rng(0)\n"
        "pos = torch.tensor(rng.random((20000, 3)) * 60.0, requires_grad=True)\n"
        "q = torch.tensor(rng.standard_normal(20000)); q = q - q.mean()\n"
        "e = les_energy(q, pos, None, False)\n"
        "f = torch.autograd.grad(e, pos)[0]\n"
        "print(float(e), bool(torch.isfinite(f).all()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("True")
