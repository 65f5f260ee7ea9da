"""Neighbour lists (vesin) against ASE's independent implementation, and differentiable edge vectors."""

import ase
import ase.build
import ase.neighborlist
import numpy as np
import pytest
import torch

from lesmd.neighbors import edge_vectors, neighbor_list


def _as_set(i, j, shifts):
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, np.asarray(shifts), strict=True)}


def _torch(atoms, dtype=torch.float64):
    return (
        torch.tensor(atoms.positions, dtype=dtype),
        torch.tensor(atoms.cell.array, dtype=dtype),
        torch.tensor(atoms.pbc),
    )


@pytest.mark.parametrize("cutoff", [2.5, 6.0])  # 6 Å exceeds half the small triclinic cell: several images
def test_periodic_pairs_match_ase_neighbor_list(cutoff):
    rng = np.random.default_rng(1)
    atoms = ase.Atoms("H8", positions=rng.uniform(0, 4, (8, 3)),
                      cell=[[4.0, 0, 0], [1.0, 4.5, 0], [0.5, -0.7, 5.0]], pbc=True)  # fmt: skip
    i, j, s = ase.neighborlist.neighbor_list("ijS", atoms, cutoff)
    edges = neighbor_list(*_torch(atoms), cutoff)
    assert _as_set(edges.i, edges.j, edges.shifts) == _as_set(i, j, s)
    assert bool((edges.i[1:] >= edges.i[:-1]).all()), "edges must be sorted by centre atom"


def test_open_boundary_pairs_match_ase_with_zero_cell():
    molecule = ase.build.molecule("CH3CH2OH")
    i, j, s = ase.neighborlist.neighbor_list("ijS", molecule, 2.0)
    positions, cell, pbc = _torch(molecule)
    assert float(cell.abs().sum()) == 0.0
    edges = neighbor_list(positions, cell, pbc, 2.0)
    assert _as_set(edges.i, edges.j, edges.shifts) == _as_set(i, j, s)


def test_slab_pairs_match_ase_with_mixed_periodicity():
    rng = np.random.default_rng(2)
    atoms = ase.Atoms("H10", positions=rng.uniform(0, 5, (10, 3)), cell=[5.0, 5.0, 5.0], pbc=[True, True, False])
    i, j, s = ase.neighborlist.neighbor_list("ijS", atoms, 3.0)
    edges = neighbor_list(*_torch(atoms), 3.0)
    assert _as_set(edges.i, edges.j, edges.shifts) == _as_set(i, j, s)


def test_edge_vectors_equal_minimum_image_distances_and_are_differentiable_in_cell():
    atoms = ase.build.bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    positions, cell, pbc = _torch(atoms)
    cell.requires_grad_(True)
    positions.requires_grad_(True)
    edges = neighbor_list(positions, cell, pbc, 3.0)
    vectors = edge_vectors(positions, cell, edges)
    d_ase = ase.neighborlist.neighbor_list("d", atoms, 3.0)
    assert np.allclose(np.sort(vectors.norm(dim=1).detach().numpy()), np.sort(d_ase), atol=1e-12)
    # f = Σ |r_ij|²: ∂f/∂h = Σ 2 S_ijᵀ r_ij, checked by central finite differences
    f = (vectors**2).sum()
    grad_cell = torch.autograd.grad(f, cell)[0]
    h = 1e-6
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        c_plus, c_minus = cell.detach().clone(), cell.detach().clone()
        c_plus[a, b] += h
        c_minus[a, b] -= h
        fd = ((edge_vectors(positions.detach(), c_plus, edges) ** 2).sum()
              - (edge_vectors(positions.detach(), c_minus, edges) ** 2).sum()) / (2 * h)  # fmt: skip
        assert float(grad_cell[a, b]) == pytest.approx(float(fd), rel=1e-6, abs=1e-6)


def test_bad_inputs_raise_clear_errors():
    positions = torch.zeros(2, 3, dtype=torch.float64)
    positions[1, 0] = 1.0
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(positions, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([True] * 3), 2.0)
    bad = positions.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(bad, torch.eye(3, dtype=torch.float64) * 5, torch.tensor([True] * 3), 2.0)
    with pytest.raises(ValueError, match="shape"):
        neighbor_list(positions[:, :2], torch.eye(3, dtype=torch.float64), torch.tensor([False] * 3), 2.0)


def _edge_set(vectors, i, j, positions):
    shifts = (vectors - (positions[j] - positions[i])).numpy().round(6)
    return {(int(a), int(b), *map(float, s)) for a, b, s in zip(i, j, shifts, strict=True)}


def test_verlet_list_gives_exactly_the_pairs_within_the_cutoff_and_searches_only_when_atoms_moved_far():
    from lesmd.neighbors import VerletList, edges_within

    atoms = ase.build.bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    rng = np.random.default_rng(4)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    cell = torch.tensor(atoms.cell.array)
    pbc = torch.tensor([True] * 3)
    verlet = VerletList(cutoff=4.0, skin=0.6)
    positions = torch.tensor(atoms.positions)
    for step in range(12):
        step_size = 0.02 if step != 8 else 0.5  # one big jump: every atom moves ~0.5·√3 Å > skin/2
        positions = positions + torch.tensor(rng.normal(scale=step_size, size=positions.shape))
        kept = edges_within(positions, cell, verlet(positions, cell, pbc), 4.0)
        fresh = neighbor_list(positions, cell, pbc, 4.0)
        expected = _edge_set(edge_vectors(positions, cell, fresh), fresh.i, fresh.j, positions)
        assert _edge_set(edge_vectors(positions, cell, kept), kept.i, kept.j, positions) == expected
        assert torch.all(kept.i[1:] >= kept.i[:-1])  # still sorted by centre atom
    # small steps accumulate 0.02·√3·√n Å; the list is searched again only after the drift or the jump
    assert 2 <= verlet.searches <= 5
    searches = verlet.searches
    verlet(positions, cell * 1.01, pbc)  # a new cell (NPT) always searches again
    assert verlet.searches == searches + 1


def test_les_model_reuses_its_verlet_list_along_an_md_trajectory_with_identical_results():
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(0)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8])).double()
    water = ase.build.molecule("H2O")
    atoms = water.copy()
    for k in range(1, 8):
        shifted = water.copy()
        shifted.translate([3.0 * (k % 2), 3.0 * ((k // 2) % 2), 3.0 * (k // 4)])
        atoms += shifted
    atoms.set_cell([6.0, 6.0, 6.0])
    atoms.pbc = True
    numbers, cell, pbc = torch.tensor(atoms.numbers), torch.tensor(atoms.cell.array), torch.tensor([True] * 3)
    rng = np.random.default_rng(0)
    positions = torch.tensor(atoms.positions)
    for _ in range(5):
        positions = positions + torch.tensor(rng.normal(scale=0.01, size=positions.shape))
        reused = model(numbers, positions, cell, pbc)
        model.verlet_list._cache = None  # a fresh search
        fresh = model(numbers, positions, cell, pbc)
        assert float(reused["energy"]) == pytest.approx(float(fresh["energy"]), abs=1e-12)
        torch.testing.assert_close(reused["charges"], fresh["charges"], rtol=0, atol=1e-12)


def test_distinct_lattice_shifts_rebuild_every_edge_shift_even_for_many_images_of_a_small_cell():
    from lesmd.neighbors import Edges

    atoms = ase.build.bulk("Cu", "fcc", a=3.6)  # one atom, primitive cell: many images within 9 Å
    positions, cell = torch.tensor(atoms.positions), torch.tensor(atoms.cell.array)
    edges = neighbor_list(positions, cell, torch.tensor([True] * 3), 9.0)
    assert edges.shifts.abs().max() >= 3 and edges.periodic
    assert torch.equal(edges.distinct_shifts[edges.shift_index], edges.shifts)
    assert edges.distinct_shifts.shape[0] == edges.shifts.shape[0]  # every image of the single atom is distinct
    assert torch.allclose(edge_vectors(positions, cell, edges), edges.shifts @ cell)
    subset = edges.subset(torch.tensor([5, 0, 7]))
    assert torch.equal(subset.shifts, edges.shifts[[5, 0, 7]])
    assert torch.equal(subset.distinct_shifts[subset.shift_index], subset.shifts)
    open_edges = Edges(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.zeros(2, 3))
    assert not open_edges.periodic


def test_edge_vector_backward_is_exact_to_second_order_in_positions_and_cell():
    """The flat index_add backward of edge_vectors against finite differences (gradcheck), and its own derivative
    (gradgradcheck, as in a training loss with forces and stress); a small triclinic cell with many images."""
    gen = torch.Generator().manual_seed(3)
    cell = torch.tensor([[3.1, 0.2, 0.0], [0.4, 2.9, 0.1], [0.0, 0.3, 3.3]], dtype=torch.float64)
    positions = torch.rand(4, 3, generator=gen, dtype=torch.float64) @ cell
    edges = neighbor_list(positions, cell, torch.tensor([True] * 3), 3.5)
    assert edges.periodic and len(edges.distinct_shifts) > 8
    weights = torch.randn(edges.i.shape[0], 3, generator=gen, dtype=torch.float64)

    def projected(pos, h):  # a nonlinear scalar of the vectors, so second derivatives are not all zero
        vectors = edge_vectors(pos, h, edges)
        return ((vectors * weights).sum(1) ** 2).sum(0, keepdim=True) + (vectors**3).sum(0)

    inputs = (positions.clone().requires_grad_(True), cell.clone().requires_grad_(True))
    assert edge_vectors(*inputs, edges).grad_fn.name().endswith("_EdgeVectorsBackward")
    assert torch.autograd.gradcheck(projected, inputs)
    assert torch.autograd.gradgradcheck(projected, inputs)
