"""Core repulsion (switched ZBL) of LES models: the physics of the term and that it closes the short-range holes
of the default water model without changing it on its training data."""

import math

import numpy as np
import pytest
import torch

from lesmd.evaluate import evaluate
from lesmd.models.io import default_model_path, load_model, model_from_dict, read_model_file
from lesmd.models.repulsion import CoreRepulsion, zbl_pair_energy
from lesmd.units import COULOMB

F64 = torch.float64
OPEN = (torch.zeros(3, 3, dtype=F64), torch.tensor([False] * 3))


def test_zbl_tends_to_bare_coulomb_at_short_range_and_is_screened_at_long_range():
    z1, z2 = torch.tensor([8]), torch.tensor([1])
    r = torch.tensor([1e-4], dtype=F64)
    assert float(zbl_pair_energy(r, z1, z2)) == pytest.approx(COULOMB * 8 / 1e-4, rel=1e-3)  # φ(0) = 1
    r = torch.tensor([1.0], dtype=F64)
    a = 0.46850 / (8**0.23 + 1)
    phi = sum(c * math.exp(-d * 1.0 / a) for c, d in [(0.18175, 3.1998), (0.50986, 0.94229), (0.28022, 0.4029),
                                                         (0.02817, 0.20162)])
    assert float(zbl_pair_energy(r, z1, z2)) == pytest.approx(COULOMB * 8 * phi, rel=1e-12)


def test_switched_repulsion_vanishes_smoothly_at_the_cutoff_and_forces_match_finite_differences():
    rep = CoreRepulsion([1, 8], {"1-8": 0.9})
    species = torch.tensor([0, 1])
    i, j = torch.tensor([0, 1]), torch.tensor([1, 0])

    def energy(r: float) -> torch.Tensor:
        v = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=F64, requires_grad=True)
        return rep(species, v, i, j).sum(), v

    assert float(energy(0.9001)[0]) == 0.0
    e_close = float(energy(0.8999)[0])
    assert 0 < e_close < 1e-9  # (1 − x²)³ makes value, slope and curvature vanish at r_c
    for r in (0.3, 0.6, 0.85):
        e, v = energy(r)
        (g,) = torch.autograd.grad(e, v)
        dedr = float(g[0, 0] - g[1, 0])
        h = 1e-6
        fd = (float(energy(r + h)[0]) - float(energy(r - h)[0])) / (2 * h)
        assert dedr == pytest.approx(fd, rel=1e-6)
        assert dedr < 0  # repulsive


def test_bad_repulsion_pairs_are_named():
    with pytest.raises(ValueError, match="'1-x'"):
        CoreRepulsion([1, 8], {"1-x": 1.0})
    with pytest.raises(ValueError, match="does not know"):
        CoreRepulsion([1, 8], {"1-6": 1.0})


def _default_without_repulsion():
    data = read_model_file(default_model_path())
    data["architecture"]["core_repulsion"] = None
    return model_from_dict(data).double().eval()  # eval mode like load_model: the same (C) descriptor kernel


def test_default_model_repulsion_leaves_training_frames_unchanged(shared_data):
    from ase.io import read

    model = load_model(None, dtype=F64)
    bare = _default_without_repulsion()
    assert model.core_repulsion is not None
    for k in (0, 50, 99):
        atoms = read(shared_data / "water_rpbe_d3_bec_100.xyz", k)
        args = (torch.tensor(atoms.numbers), torch.tensor(atoms.positions), torch.tensor(atoms.cell.array),
                torch.tensor([True] * 3))
        a = evaluate(model, *args)
        b = evaluate(bare, *args)
        assert float(a["energy"]) == float(b["energy"])
        torch.testing.assert_close(a["forces"], b["forces"], rtol=0, atol=0)


def test_default_model_energy_rises_as_the_two_hydrogens_of_a_water_molecule_are_pushed_together():
    model = load_model(None, dtype=F64)
    numbers = torch.tensor([8, 1, 1])
    energies = []
    for angle in (104.0, 80.0, 60.0, 45.0, 30.0, 20.0):
        s, c = np.sin(np.radians(angle / 2)), np.cos(np.radians(angle / 2))
        pos = torch.tensor([[0, 0, 0], [0.97 * s, 0.97 * c, 0], [-0.97 * s, 0.97 * c, 0]], dtype=F64)
        energies.append(float(evaluate(model, numbers, pos, *OPEN)["energy"]))
    assert np.all(np.diff(energies) > 0), energies
