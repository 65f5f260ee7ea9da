"""Frozen-electrode shortcuts of the coupling sum: the separable reciprocal sum (electrode tables built once) and the
Verlet pair list agree with the general path (mobile electrodes, fresh pair search) step after step."""

import math

import numpy as np
import torch

from lesmd.electrode.electrostatics import Electrostatics
from lesmd.electrode.geometry import au100_capacitor

BOX = (12.520032, 12.520032, 44.346687)
AU_NUMBERS, AU_POSITIONS, CELL = au100_capacitor(repeats=3, box=BOX)
N_EL = len(AU_NUMBERS)
IONS = np.array([[2.0, 3.0, 16.0], [3.2, 4.1, 17.1], [8.0, 9.5, 24.0], [12.4, 8.2, 25.2], [0.1, 11.9, 20.0]])
CHARGES = torch.tensor([0.5, -0.5, 0.7, -0.2, -0.5], dtype=torch.float64)


def _widths():
    widths = torch.full((N_EL,), 1.0 / (math.sqrt(2.0) * 1.979), dtype=torch.float64)
    widths[N_EL // 2:] *= 1.3  # two electrodes with different η: the separable tables group by (z, width)
    return widths


def _phi_and_grad(es, pos_el, ions, cell):
    pl = torch.tensor(ions, requires_grad=True)
    phi = es.coupling_potential(pos_el, pl, CHARGES, cell, _widths(), 0.5)
    weights = torch.linspace(-1.0, 1.0, N_EL, dtype=torch.float64)
    return phi.detach(), torch.autograd.grad(phi @ weights, pl)[0]


def test_frozen_separable_sum_equals_general_sum_for_skewed_cell():
    for boundary in ("slab", "finite_field"):
        cell = torch.tensor(CELL)
        cell[1, 0] = 3.1  # in-plane skew: b₁, b₂ not along x, y
        frozen, general = Electrostatics(boundary, 1e-8, real_space_cutoff=6.0), Electrostatics(boundary, 1e-8,
                                                                                           real_space_cutoff=6.0)
        pe = torch.tensor(AU_POSITIONS)
        phi_f, grad_f = _phi_and_grad(frozen, pe, IONS, cell)
        phi_g, grad_g = _phi_and_grad(general, pe.clone().requires_grad_(), IONS, cell)  # mobile: no tables
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
