"""The near-field Coulomb term that LES models with ``near_field_cutoff`` move into their short range."""

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from lesmd.les.ewald import les_energy
from lesmd.les.near_field import SWITCH_ON, near_field_energies, switch
from lesmd.models.les import LESModel
from lesmd.models.shortrange import MomentNetwork
from lesmd.neighbors import edge_vectors, neighbor_list
from lesmd.units import COULOMB

F64 = torch.float64


def _switch_numpy(r, rn):
    t = np.clip((r - SWITCH_ON * rn) / ((1 - SWITCH_ON) * rn), 0, 1)
    return 1 - (10 * t**3 - 15 * t**4 + 6 * t**5)


def test_switch_is_one_inside_zero_outside_and_twice_continuously_differentiable():
    rn = 2.0
    r = torch.linspace(0.1, 2.5, 24001, dtype=F64, requires_grad=True)
    s = switch(r, rn)
    (d1,) = torch.autograd.grad(s.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert torch.all(s[r <= SWITCH_ON * rn] == 1) and torch.all(s[r >= rn] == 0)
    for values in (s, d1, d2):  # no jumps on a 0.1 mÅ grid, including at r_on and r_n
        assert float(values.diff().abs().max()) < 0.01 * float(values.abs().max())


@pytest.mark.parametrize("periodic", [False, True])
def test_near_field_energy_equals_a_direct_pair_sum(periodic):
    rng = np.random.default_rng(0)
    cell = np.diag([6.0, 6.5, 7.0])
    pos = rng.random((30, 3)) * np.diag(cell)
    q = rng.normal(size=30)
    rn, sigma = 2.5, 1.0
    pbc = torch.tensor([periodic] * 3)
    t_pos, t_cell = torch.tensor(pos), torch.tensor(cell if periodic else np.zeros((3, 3)))
    edges = neighbor_list(t_pos, t_cell, pbc, rn)
    got = near_field_energies(torch.tensor(q), edge_vectors(t_pos, t_cell, edges), edges.i, edges.j, sigma, rn)
    expected = 0.0
    images = [np.array(s) for s in np.ndindex(3, 3, 3)] if periodic else [np.ones(3, int)]
    for i in range(30):
        for j in range(30):
            for s in images:
                d = pos[j] - pos[i] + (s - 1) @ cell
                r = np.linalg.norm(d)
                if 0 < r < rn:
                    expected += 0.5 * COULOMB * q[i] * q[j] * erf(r / (math.sqrt(2) * sigma)) / r * _switch_numpy(r, rn)
    assert float(got.sum()) == pytest.approx(expected, rel=1e-12)


def _model(near_field):
    torch.manual_seed(0)
    sr = MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8])
    return LESModel(sr, charge_hidden=(8,), near_field_cutoff=near_field).double()


def test_model_energy_is_network_minus_near_field_plus_les_and_forces_are_its_gradient():
    rng = np.random.default_rng(1)
    numbers = torch.tensor([8, 1, 1] * 6)
    pos = torch.tensor(rng.random((18, 3)) * 6.0, requires_grad=True)
    cell, pbc = torch.eye(3, dtype=F64) * 6.0, torch.ones(3, dtype=torch.bool)
    model = _model(2.0)
    out = model(numbers, pos, cell, pbc)
    atomic, raw = model.short_range_and_raw_charges(numbers, pos, cell, pbc)
    q = raw - raw.mean()
    parts = atomic.sum() - model.near_field_energy(q, pos, cell, pbc) + les_energy(q, pos, cell, pbc, model.sigma)
    assert float(out["energy"]) == pytest.approx(float(parts), rel=1e-10)
    assert float(out["energy_sr"]) == pytest.approx(float(atomic.sum() - model.near_field_energy(q, pos, cell, pbc)),
                                                    rel=1e-10)  # fmt: skip
    # and it is not the plain model: the term is there
    plain = _model(None)(numbers, pos, cell, pbc)
    assert abs(float(plain["energy"] - out["energy"])) > 1e-3
    (grad,) = torch.autograd.grad(out["energy"], pos)
    h = 1e-5
    for atom, axis in ((0, 0), (4, 2), (11, 1)):
        shifted = []
        for sign in (1, -1):
            p = pos.detach().clone()
            p[atom, axis] += sign * h
            shifted.append(float(model(numbers, p, cell, pbc)["energy"]))
        assert float(grad[atom, axis]) == pytest.approx((shifted[0] - shifted[1]) / (2 * h), rel=1e-6, abs=1e-8)


def test_near_field_models_round_trip_and_the_batched_graph_agrees(tmp_path):
    from lesmd.models.io import load_model, save_model

    model = _model(2.0)
    path = save_model(model, tmp_path / "nf.pt")
    loaded = load_model(path, dtype=F64)
    assert loaded.near_field_cutoff == 2.0
    numbers = torch.tensor([8, 1, 1])
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], dtype=F64)
    open_cell, no_pbc = torch.zeros(3, 3, dtype=F64), torch.zeros(3, dtype=torch.bool)
    a, b = model(numbers, pos, open_cell, no_pbc), loaded(numbers, pos, open_cell, no_pbc)
    assert float(a["energy"]) == float(b["energy"])
    edges = neighbor_list(pos, open_cell, no_pbc, model.cutoff)
    species = model.species_indices(numbers)
    graph = model.forward_graph(species, edge_vectors(pos, open_cell, edges), edges.i, edges.j, pos,
                                open_cell[None], no_pbc[None], torch.tensor([3]), [0.0])  # fmt: skip
    assert float(graph["energy"][0]) == pytest.approx(float(a["energy"]), rel=1e-12)
    with pytest.raises(ValueError, match="near_field_cutoff must be in"):
        _model(3.5)
