"""Extrapolation guards of LES models (latent-charge bound, data walls): their mathematics, that a model file
carries them, and that the default water model with them is unchanged on its training data."""

import numpy as np
import pytest
import torch

from lesmd.evaluate import evaluate
from lesmd.models.io import default_model_path, load_model, model_from_dict, read_model_file, save_model
from lesmd.models.les import bound_charges
from lesmd.models.repulsion import DataWall

F64 = torch.float64


def test_bound_charges_is_identity_inside_and_saturates_smoothly_outside():
    q = torch.linspace(-2.0, 2.0, 4001, dtype=F64, requires_grad=True)
    lower, upper = torch.full_like(q, -0.2), torch.full_like(q, 0.1)
    b = bound_charges(q, lower, upper, 0.05)
    inside = (q > -0.2) & (q < 0.1)
    torch.testing.assert_close(b[inside], q[inside], rtol=0, atol=0)
    b0 = b.detach()
    assert float(b0.max()) == pytest.approx(0.15, abs=1e-12) and float(b0.min()) == pytest.approx(-0.25, abs=1e-12)
    assert float(bound_charges(q.new_tensor([0.2]), q.new_tensor([-0.2]), q.new_tensor([0.1]), 0.05)) < 0.15
    assert torch.all(torch.diff(b0) >= 0)  # monotonic
    (g,) = torch.autograd.grad(b.sum(), q)
    # continuous first derivative: slope 1 at both edges, e^{-…}-small far out
    edge = torch.tensor([0.1 + 1e-9, -0.2 - 1e-9], dtype=F64, requires_grad=True)
    (ge,) = torch.autograd.grad(bound_charges(edge, torch.full_like(edge, -0.2), torch.full_like(edge, 0.1),
                                              0.05).sum(), edge)
    torch.testing.assert_close(ge, torch.ones(2, dtype=F64), rtol=0, atol=1e-6)
    assert float(g[-1]) < 1e-20
    # the slope just outside: d/dq [u + w tanh((q−u)/w)] = sech²((q−u)/w)
    x = torch.tensor([0.13], dtype=F64, requires_grad=True)
    (gx,) = torch.autograd.grad(bound_charges(x, x.new_tensor([-0.2]), x.new_tensor([0.1]), 0.05).sum(), x)
    assert float(gx) == pytest.approx(1 / np.cosh(0.03 / 0.05) ** 2, rel=1e-12)


def test_data_wall_is_zero_beyond_the_data_and_cubic_below_with_exact_forces():
    wall = DataWall([1, 8], {"8-8": 2.38}, strength=0.05, length=0.1)
    species = torch.tensor([1, 1])
    i, j = torch.tensor([0, 1]), torch.tensor([1, 0])

    def energy(r: float):
        v = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=F64, requires_grad=True)
        return wall(species, v, i, j).sum(), v

    assert float(energy(2.3801)[0].detach()) == 0.0
    assert float(energy(2.33)[0].detach()) == pytest.approx(0.05 * 0.5**3, rel=1e-9)  # 1.25 meV, one pair (not two)
    assert float(energy(1.78)[0].detach()) == pytest.approx(0.05 * 6.0**3, rel=1e-9)
    for r in (1.9, 2.2, 2.37):
        e, v = energy(r)
        (g,) = torch.autograd.grad(e, v)
        h = 1e-6
        fd = (float(energy(r + h)[0].detach()) - float(energy(r - h)[0].detach())) / (2 * h)
        assert float(g[0, 0] - g[1, 0]) == pytest.approx(fd, rel=1e-6)
        assert fd < 0
    with pytest.raises(ValueError, match="positive"):
        DataWall([1, 8], {"8-8": 2.0}, strength=-1.0)


def _default_without_guards():
    data = read_model_file(default_model_path())
    data["architecture"]["charge_bound"] = None
    data["architecture"]["data_walls"] = None
    return model_from_dict(data).double().eval()  # eval mode like load_model: the same (C) descriptor kernel


def test_default_model_guards_leave_training_frames_unchanged(shared_data):
    from ase.io import read

    model = load_model(None, dtype=F64)
    bare = _default_without_guards()
    assert model.charge_bound is not None and model.data_walls is not None
    for k in (0, 37, 79, 99):
        atoms = read(shared_data / "water_rpbe_d3_bec_100.xyz", k)
        args = (torch.tensor(atoms.numbers), torch.tensor(atoms.positions), torch.tensor(atoms.cell.array),
                torch.tensor([True] * 3))
        a = evaluate(model, *args, properties=["energy", "forces", "charges"])
        b = evaluate(bare, *args, properties=["energy", "forces", "charges"])
        assert float(a["energy"]) == float(b["energy"])
        torch.testing.assert_close(a["forces"], b["forces"], rtol=0, atol=0)
        torch.testing.assert_close(a["charges"], b["charges"], rtol=0, atol=0)


def test_guards_stop_interpenetrating_water_molecules_and_runaway_charges():
    """Two water molecules pushed to O–O 1.7 Å (never in the data, min 2.386 Å): the guarded default model is
    strongly repulsive there, and its charges stay within the bound however the molecules are squeezed."""
    model = load_model(None, dtype=F64)
    numbers = torch.tensor([8, 1, 1, 8, 1, 1])
    mol = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    cell, pbc = torch.zeros(3, 3, dtype=F64), torch.tensor([False] * 3)
    energies = []
    for d in (2.9, 2.4, 2.1, 1.9, 1.7):
        pos = np.vstack([mol, mol @ np.diag([1, -1, 1]) + [0, 0, d]])
        out = evaluate(model, numbers, torch.tensor(pos), cell, pbc, properties=["energy", "charges"])
        energies.append(float(out["energy"]))
        assert float(out["charges"].abs().max()) < 0.3
    assert energies[-1] - energies[0] > 1.0, energies  # > 1 eV = 40 kT up the wall


def test_guards_survive_a_model_file_round_trip(tmp_path):
    model = load_model(None)
    path = save_model(model, tmp_path / "m.pt")
    again = load_model(path)
    assert again.architecture()["charge_bound"] == model.architecture()["charge_bound"]
    assert again.architecture()["data_walls"] == model.architecture()["data_walls"]
    data = read_model_file(path)
    data["architecture"]["charge_bound"] = {"width": 0.05, "ranges": {"8": [0.1, -0.1], "1": [-0.1, 0.1]}}
    with pytest.raises(ValueError, match="element 8"):
        model_from_dict(data)


def test_pair_guards_follow_atoms_that_move_within_the_reused_neighbour_list():
    """MD between Verlet-list rebuilds: the per-edge guard cutoffs are kept with the graph, and an O–O pair moved
    in small steps across the data wall's cutoff (2.38 Å) gets exactly the energy and forces of a fresh model."""
    reused = load_model(None, dtype=F64)
    numbers = torch.tensor([8, 1, 1, 8, 1, 1])
    mol = np.array([[0.0, 0.0, 0.0], [0.757, 0.586, 0.0], [-0.757, 0.586, 0.0]])
    cell, pbc = torch.zeros(3, 3, dtype=F64), torch.tensor([False] * 3)
    graphs, walls = [], []
    for d in (2.50, 2.45, 2.40, 2.35, 2.30):  # 0.2 Å in all: below the skin/2 = 0.25 Å of the list
        pos = torch.tensor(np.vstack([mol, mol @ np.diag([1, -1, 1]) + [0, 0, d]]))
        got = evaluate(reused, numbers, pos, cell, pbc, properties=["energy", "forces"])
        fresh = evaluate(load_model(None, dtype=F64), numbers, pos, cell, pbc, properties=["energy", "forces"])
        assert float(got["energy"]) == pytest.approx(float(fresh["energy"]), rel=0, abs=1e-10)
        assert torch.allclose(got["forces"], fresh["forces"], rtol=0, atol=1e-10)
        graphs.append(reused._pair_cutoff_cache[0])
        walls.append(float(reused.data_walls(reused.species_indices(numbers), pos[[3]] - pos[[0]],
                                             torch.tensor([0]), torch.tensor([3])).sum()))  # fmt: skip
    assert all(g is graphs[0] for g in graphs)  # one graph, one table of cutoffs, five positions
    assert walls[0] == 0.0 and walls[-1] > 0.0  # the pair really crossed the wall
    # and the model applied it: its energy exceeds that of the same model without walls by the wall energy of all
    # edges of the full neighbour list
    from lesmd.neighbors import edge_vectors, neighbor_list

    unwalled = load_model(None, dtype=F64)
    unwalled.data_walls = None
    edges = neighbor_list(pos, cell, pbc, reused.cutoff)
    wall = reused.data_walls(reused.species_indices(numbers), edge_vectors(pos, cell, edges), edges.i, edges.j)
    plain = evaluate(unwalled, numbers, pos, cell, pbc, properties=["energy"])
    assert float(got["energy"] - plain["energy"]) == pytest.approx(float(wall.sum()), rel=1e-9)
