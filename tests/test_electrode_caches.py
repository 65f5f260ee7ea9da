"""Frozen-electrode shortcuts of the coupling sum: the separable reciprocal sum (electrode tables built once) and the
Verlet pair list agree with the general path (mobile electrodes, fresh pair search) step after step, and their
hand-written gradients (:mod:`lesmd.electrode.frozen`, Lennard-Jones) equal finite differences."""

import math

import numpy as np
import pytest
import torch

from lesmd.electrode.electrostatics import Electrostatics
from lesmd.electrode.frozen import frozen_reciprocal, screened_pair_sum, verlet_distances
from lesmd.electrode.geometry import au100_capacitor
from lesmd.electrode.lennard_jones import lennard_jones_energy

BOX = (12.520032, 12.520032, 44.346687)
AU_NUMBERS, AU_POSITIONS, CELL = au100_capacitor(repeats=3, box=BOX)
N_EL = len(AU_NUMBERS)
IONS = np.array([[2.0, 3.0, 16.0], [3.2, 4.1, 17.1], [8.0, 9.5, 24.0], [12.4, 8.2, 25.2], [0.1, 11.9, 20.0]])
CHARGES = torch.tensor([0.5, -0.5, 0.7, -0.2, -0.5], dtype=torch.float64)


def _widths():
    widths = torch.full((N_EL,), 1.0 / (math.sqrt(2.0) * 1.979), dtype=torch.float64)
    widths[N_EL // 2:] *= 1.3  # two electrodes with different η: the separable tables group by (z, width)
    return widths


def _phi_and_grad(es, pos_el, ions, cell, with_charges=False):
    pl = torch.tensor(ions, requires_grad=True)
    charges = CHARGES.clone().requires_grad_(with_charges)
    phi = es.coupling_potential(pos_el, pl, charges, cell, _widths(), 0.5)
    weights = torch.linspace(-1.0, 1.0, N_EL, dtype=torch.float64)
    if with_charges:
        grad_positions, grad_charges = torch.autograd.grad(phi @ weights, (pl, charges))
        return phi.detach(), torch.cat([grad_positions.reshape(-1), grad_charges])
    return phi.detach(), torch.autograd.grad(phi @ weights, pl)[0]


def test_frozen_separable_sum_equals_general_sum_for_skewed_cell():
    for boundary in ("slab", "finite_field"):
        cell = torch.tensor(CELL)
        cell[1, 0] = 3.1  # in-plane skew: b₁, b₂ not along x, y
        frozen, general = Electrostatics(boundary, 1e-8, real_space_cutoff=6.0), Electrostatics(boundary, 1e-8,
                                                                                           real_space_cutoff=6.0)
        pe = torch.tensor(AU_POSITIONS)
        phi_f, grad_f = _phi_and_grad(frozen, pe, IONS, cell, with_charges=True)
        phi_g, grad_g = _phi_and_grad(general, pe.clone().requires_grad_(), IONS, cell, with_charges=True)  # mobile
        assert "electrode_tables" in frozen._kcache and "electrode_tables" not in general._kcache
        assert float((phi_f - phi_g).abs().max()) < 1e-11 * float(phi_g.abs().max())
        assert float((grad_f - grad_g).abs().max()) < 1e-11 * float(grad_g.abs().max())


def test_verlet_pair_list_matches_fresh_search_along_a_trajectory():
    rng = np.random.default_rng(3)
    cell = torch.tensor(CELL)
    pe = torch.tensor(AU_POSITIONS)
    cached = Electrostatics("finite_field", 1e-8, real_space_cutoff=6.0)
    ions = IONS.copy()
    rebuilds = 0
    for step in range(12):
        ions = ions + rng.normal(scale=0.12, size=ions.shape)  # several steps per skin, then a rebuild
        if step == 5:
            ions[3, 0] -= BOX[0]  # an ion re-enters through the periodic boundary: a different image
        before = cached._pair_cache
        phi_c, grad_c = _phi_and_grad(cached, pe, ions, cell)
        rebuilds += cached._pair_cache is not before
        phi_f, grad_f = _phi_and_grad(Electrostatics("finite_field", 1e-8, real_space_cutoff=6.0), pe, ions, cell)
        assert float((phi_c - phi_f).abs().max()) < 1e-12 * float(phi_f.abs().max()), step
        assert float((grad_c - grad_f).abs().max()) < 1e-12 * float(grad_f.abs().max()), step
    assert 2 <= rebuilds < 12  # the list is reused between rebuilds (Verlet skin)


@pytest.mark.parametrize("boundary", ["slab", "finite_field"])
def test_frozen_reciprocal_gradient_equals_finite_differences(boundary):
    es = Electrostatics(boundary, 1e-6, real_space_cutoff=6.0)
    tables = es.prepare(torch.tensor(AU_POSITIONS), torch.tensor(CELL), _widths(), 0.5)["electrode_tables"]
    weights = torch.linspace(-1.0, 1.0, N_EL, dtype=torch.float64)
    charges, ions = CHARGES.clone().requires_grad_(), torch.tensor(IONS, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, x: frozen_reciprocal(q, x, tables) @ weights, (charges, ions))


def test_pair_sum_distance_and_lennard_jones_gradients_equal_finite_differences():
    rng = np.random.default_rng(2)
    n_pairs, n_atoms = 40, 6
    coordinates = torch.tensor(rng.uniform(0.0, 6.0, (3, n_atoms)), requires_grad=True)
    j = torch.tensor(rng.integers(0, n_atoms, n_pairs))
    base = torch.tensor(rng.uniform(-2.0, 8.0, (3, n_pairs)))
    assert torch.autograd.gradcheck(lambda x: verlet_distances(x, j, base), (coordinates,))
    r = torch.tensor(rng.uniform(1.5, 9.0, n_pairs), requires_grad=True)  # some beyond the cutoffs below
    pair_charges = torch.tensor(rng.normal(size=n_pairs), requires_grad=True)
    i = torch.tensor(rng.integers(0, 5, n_pairs))
    scales = (torch.full((n_pairs,), 0.3, dtype=torch.float64), torch.tensor(rng.uniform(0.5, 1.2, n_pairs)))
    assert torch.autograd.gradcheck(lambda d, q: screened_pair_sum(d, q, i, scales, 7.0, 5), (r, pair_charges))
    eps, sigma = torch.tensor(rng.uniform(0.0, 0.2, n_pairs)), torch.tensor(rng.uniform(2.0, 3.2, n_pairs))
    assert torch.autograd.gradcheck(lambda d: lennard_jones_energy(d, eps, sigma, 7.0), (r,))
