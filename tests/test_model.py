"""The LES model: exact derivatives, symmetries, periodic images, wrapping other short-range models."""

import math

import ase.build
import ase.io
import numpy as np
import pytest
import torch

from lesmd.models.les import LESModel
from lesmd.models.shortrange import MomentNetwork, PairNetwork


def _perturbed(model: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Random non-trivial weights (an untrained model is nearly flat)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model


def small_water_model(dtype=torch.float64, cutoff=4.0) -> LESModel:
    torch.manual_seed(0)
    sr = MomentNetwork([1, 8], cutoff=cutoff, n_channels=6, l_max=3, hidden=[8], avg_neighbors=20.0)
    model = LESModel(sr, sigma=1.0, reference_energies={1: -1.5, 8: -4.0}, les_options={"accuracy": 1e-9})
    return _perturbed(model.to(dtype))


@pytest.fixture(scope="module")
def water(shared_data):
    return ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", 0)


def _inputs(atoms, dtype=torch.float64):
    return (
        torch.tensor(atoms.numbers),
        torch.tensor(atoms.positions, dtype=dtype),
        torch.tensor(atoms.cell.array, dtype=dtype),
        torch.tensor(atoms.pbc),
    )


def _energy(model, numbers, positions, cell, pbc):
    return model(numbers, positions, cell, pbc)["energy"]


def test_forces_equal_minus_energy_gradient_by_finite_differences(water):
    model = small_water_model()
    numbers, positions, cell, pbc = _inputs(water)
    positions.requires_grad_(True)
    forces = -torch.autograd.grad(_energy(model, numbers, positions, cell, pbc), positions)[0]
    h = 1e-4
    for atom, axis in [(0, 0), (5, 1), (130, 2), (191, 0)]:
        plus, minus = positions.detach().clone(), positions.detach().clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(_energy(model, numbers, plus, cell, pbc) - _energy(model, numbers, minus, cell, pbc)) / (2 * h)
        assert float(forces[atom, axis].detach()) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)


def test_stress_equals_finite_difference_of_strained_cell_energy(water):
    model = small_water_model()
    numbers, positions, cell, pbc = _inputs(water)
    strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    deform = torch.eye(3, dtype=torch.float64) + strain
    energy = _energy(model, numbers, positions @ deform, cell @ deform, pbc)
    volume = float(torch.linalg.det(cell))
    stress = torch.autograd.grad(energy, strain)[0] / volume  # ASE sign: σ = (1/V) ∂E/∂ε
    h = 1e-5
    for a, b in [(0, 0), (1, 1), (0, 2), (2, 1)]:
        values = []
        for sign in (1, -1):
            eps = torch.zeros(3, 3, dtype=torch.float64)
            eps[a, b] += sign * h
            d = torch.eye(3, dtype=torch.float64) + eps
            values.append(_energy(model, numbers, positions @ d, cell @ d, pbc))
        fd = (values[0] - values[1]) / (2 * h) / volume
        assert float(stress[a, b]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)
    assert torch.allclose(stress, stress.T, atol=1e-10), "stress of a rotation-invariant energy is symmetric"


def test_energy_and_charges_invariant_under_rotation_translation_permutation(water):
    model = small_water_model()
    numbers, positions, cell, pbc = _inputs(water)
    reference = model(numbers, positions, cell, pbc)
    generator = torch.Generator().manual_seed(4)
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=generator))[0]
    rotated = model(numbers, positions @ rotation.T, cell @ rotation.T, pbc)
    shifted = model(numbers, positions + torch.tensor([0.3, -1.7, 2.9], dtype=torch.float64), cell, pbc)
    perm = torch.randperm(len(numbers), generator=generator)
    permuted = model(numbers[perm], positions[perm], cell, pbc)
    for other in (rotated, shifted):
        assert float(other["energy"]) == pytest.approx(float(reference["energy"]), rel=1e-10)
        assert torch.allclose(other["charges"], reference["charges"], atol=1e-10)
    assert float(permuted["energy"]) == pytest.approx(float(reference["energy"]), rel=1e-10)
    assert torch.allclose(permuted["charges"], reference["charges"][perm], atol=1e-10)


def test_replicated_cell_gives_proportional_energy_and_same_charges(water):
    model = small_water_model()
    one = model(*_inputs(water))
    big = water.repeat((2, 1, 2))
    four = model(*_inputs(big))
    assert float(four["energy_sr"]) == pytest.approx(4 * float(one["energy_sr"]), rel=1e-10)
    assert float(four["energy_lr"]) == pytest.approx(4 * float(one["energy_lr"]), rel=1e-6)
    assert torch.allclose(four["charges"][: len(water)], one["charges"], atol=1e-10)


def test_open_boundary_molecule_with_zero_cell_matches_a_huge_periodic_box():
    molecule = ase.build.molecule("H2O")
    model = small_water_model()
    numbers, positions, _, _ = _inputs(molecule)
    open_result = model(numbers, positions, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3))
    box = torch.eye(3, dtype=torch.float64) * 60.0
    periodic = model(numbers, positions + 30.0, box, torch.tensor([True] * 3))
    assert float(open_result["energy_sr"]) == pytest.approx(float(periodic["energy_sr"]), rel=1e-12)
    assert float(open_result["energy_lr"]) == pytest.approx(float(periodic["energy_lr"]), rel=1e-4, abs=1e-7)
    assert float(open_result["charges"].sum()) == pytest.approx(0.0, abs=1e-12)


def test_total_charge_is_imposed_on_latent_charges():
    molecule = ase.build.molecule("H2O")
    model = small_water_model()
    numbers, positions, _, _ = _inputs(molecule)
    out = model(numbers, positions, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3), -1.0)
    assert float(out["charges"].sum()) == pytest.approx(-1.0, abs=1e-12)
    assert float(out["energy"]) == pytest.approx(float(out["energy_sr"] + out["energy_lr"]), rel=1e-12)


def test_unknown_element_is_named_in_the_error():
    model = small_water_model()
    atoms = ase.build.molecule("CH4")
    with pytest.raises(ValueError, match=r"unknown element C \(Z=6\)"):
        model(*_inputs(atoms))


def test_float32_model_agrees_with_float64(water):
    model64 = small_water_model()
    model32 = small_water_model().to(torch.float32)
    e64 = model64(*_inputs(water))["energy"]
    e32 = model32(*_inputs(water, torch.float32))["energy"]
    assert e32.dtype == torch.float32
    assert float(e32) == pytest.approx(float(e64), rel=1e-5)


def test_short_range_part_is_local_within_the_cutoff():
    """Moving an atom that is farther than the cutoff from every atom of a cluster leaves the cluster's
    short-range atomic energies unchanged (locality), while the long-range term still couples them."""
    model = small_water_model(cutoff=3.0)
    a = ase.build.molecule("H2O")
    b = ase.build.molecule("H2O")
    b.translate([7.0, 0, 0])
    pair = a + b
    numbers, positions, _, _ = _inputs(pair)
    zero, open_ = torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3)
    e1 = model(numbers, positions, zero, open_)
    moved = positions.clone()
    moved[3:] += torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    e2 = model(numbers, moved, zero, open_)
    assert float(e1["energy_sr"]) == pytest.approx(float(e2["energy_sr"]), rel=1e-12)
    assert float(e1["energy_lr"]) != pytest.approx(float(e2["energy_lr"]), rel=1e-6)


def test_wrapped_pair_network_gives_exact_forces_and_its_own_charge_features():
    """A second, different short-range model plugs into LESModel through the documented interface."""
    torch.manual_seed(1)
    model = _perturbed(LESModel(PairNetwork([1, 8], cutoff=3.5), charge_descriptor={"cutoff": 3.0}).double())
    assert model.charge_features is not None and model.cutoff == 3.5
    molecule = ase.build.molecule("H2O") + ase.build.molecule("H2O")
    molecule.positions[3:] += [2.6, 0.3, 0.1]
    numbers, positions, _, _ = _inputs(molecule)
    cell, pbc = torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3)
    positions.requires_grad_(True)
    out = model(numbers, positions, cell, pbc)
    assert abs(float(out["energy_lr"])) > 0 and float(out["charges"].abs().max()) > 0
    forces = -torch.autograd.grad(out["energy"], positions)[0]
    h = 1e-5
    for atom, axis in [(0, 0), (4, 2)]:
        plus, minus = positions.detach().clone(), positions.detach().clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = -(_energy(model, numbers, plus, cell, pbc) - _energy(model, numbers, minus, cell, pbc)) / (2 * h)
        assert float(forces[atom, axis]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
    # pair potential: two far-apart dimers have exactly additive short-range energy
    far = positions.detach().clone()
    far[3:] += 20.0
    e_far = model(numbers, far, cell, pbc)["energy_sr"]
    e_a = model(numbers[:3], far[:3], cell, pbc)["energy_sr"]
    e_b = model(numbers[3:], far[3:], cell, pbc)["energy_sr"]
    assert float(e_far) == pytest.approx(float(e_a + e_b), rel=1e-12)


def test_model_without_les_term_has_zero_long_range_energy(water):
    model = small_water_model()
    model.use_les = False
    out = model(*_inputs(water))
    assert float(out["energy_lr"]) == 0.0 and float(out["charges"].abs().sum()) == 0.0
    assert math.isfinite(float(out["energy"]))


def test_moment_invariants_are_full_tensor_contractions():
    """The stored angular components are weighted so that dot products are (u·v)^L for L = 0..3."""
    from lesmd.models.descriptors import angular_components

    generator = torch.Generator().manual_seed(5)
    u = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64, generator=generator), dim=1)
    v = torch.nn.functional.normalize(torch.randn(7, 3, dtype=torch.float64, generator=generator), dim=1)
    yu, yv = angular_components(u, 3), angular_components(v, 3)
    cos = (u * v).sum(1)
    for L, (a, b) in enumerate([(0, 1), (1, 4), (4, 10), (10, 20)]):
        assert torch.allclose((yu[:, a:b] * yv[:, a:b]).sum(1), cos**L, atol=1e-14)
    assert np.isclose(float(yu[0, 10:20].norm()), 1.0)


def test_symmetric_rank2_contractions_equal_matrix_algebra():
    """uᵀMw and tr(M³) from the 6 stored components equal dense 3×3 matrix products of the same M."""
    from lesmd.models.descriptors import _bilinear_symmetric, _trace_cubed_symmetric, angular_components

    generator = torch.Generator().manual_seed(7)
    n, k = 5, 4
    dense = torch.randn(n, k, 3, 3, dtype=torch.float64, generator=generator)
    dense = dense + dense.transpose(-1, -2)  # symmetric M per atom and channel
    s2 = math.sqrt(2.0)
    stored = torch.stack([dense[..., 0, 0], dense[..., 1, 1], dense[..., 2, 2], s2 * dense[..., 0, 1],
                          s2 * dense[..., 0, 2], s2 * dense[..., 1, 2]], dim=0)  # (6, N, K), components first
    u = torch.randn(3, n, k, dtype=torch.float64, generator=generator)
    w = torch.randn(3, n, k, dtype=torch.float64, generator=generator)
    expected = torch.einsum("ank,nkab,bnk->nk", u, dense, w)
    assert torch.allclose(_bilinear_symmetric(u, stored, w), expected, atol=1e-12)
    cubed = torch.linalg.matrix_power(dense, 3).diagonal(dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(_trace_cubed_symmetric(stored), cubed, atol=1e-12)
    # the stored layout is the one of the descriptor: u⊗u of a unit vector gives M = u uᵀ, tr(M³) = 1
    unit = torch.nn.functional.normalize(torch.randn(n, 3, dtype=torch.float64, generator=generator), dim=1)
    outer = angular_components(unit, 2)[:, 4:10].t().unsqueeze(-1)  # (6, N, 1)
    assert torch.allclose(_trace_cubed_symmetric(outer), torch.ones(n, 1, dtype=torch.float64), atol=1e-12)


def test_an_atom_without_neighbours_gets_finite_features_and_zero_force():
    """Empty slots of the padded neighbour table (length r_c) contribute nothing: an isolated atom's energy
    equals the one of the same atom far from everything, and its force is zero."""
    torch.manual_seed(0)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=3, hidden=[8]), use_les=False).double()
    numbers = torch.tensor([8, 1, 1, 8])
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [20.0, 0.0, 0.0]],
                             dtype=torch.float64, requires_grad=True)
    pbc = torch.tensor([False] * 3)
    energy = model(numbers, positions, torch.zeros(3, 3, dtype=torch.float64), pbc)["energy"]
    (force,) = torch.autograd.grad(-energy, positions)
    assert torch.isfinite(force).all() and torch.equal(force[3], torch.zeros(3, dtype=torch.float64))
    alone = model(numbers[3:], positions.detach()[3:], torch.zeros(3, 3, dtype=torch.float64), pbc)["energy"]
    water = model(numbers[:3], positions.detach()[:3], torch.zeros(3, 3, dtype=torch.float64), pbc)["energy"]
    assert torch.allclose(energy.detach(), alone + water, atol=1e-12)


def _jacobian_bec(model, numbers, positions, cell, pbc):
    def dipole(pos):
        return (model(numbers, pos, cell, pbc)["charges"].unsqueeze(1) * pos).sum(0)

    jac = torch.autograd.functional.jacobian(dipole, positions)  # (α, N, β)
    return jac.permute(1, 0, 2)


def test_born_effective_charges_equal_dipole_jacobian_for_a_molecule_cluster():
    model = small_water_model(cutoff=3.0)
    cluster = ase.build.molecule("H2O") + ase.build.molecule("H2O")
    cluster.positions[3:] += [2.4, 1.0, 0.3]
    numbers, positions, _, _ = _inputs(cluster)
    cell, pbc = torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3)
    z = model.born_effective_charges(numbers, positions, cell, pbc, epsilon_inf=1.0)
    reference = _jacobian_bec(model, numbers, positions, cell, pbc)
    assert torch.allclose(z, reference, atol=1e-10)
    assert torch.allclose(z.sum(0), torch.zeros(3, 3, dtype=torch.float64), atol=1e-10)  # acoustic sum rule
    scaled = model.born_effective_charges(numbers, positions, cell, pbc, epsilon_inf=1.78)
    assert torch.allclose(scaled, math.sqrt(1.78) * z, atol=1e-12)


def test_born_effective_charges_do_not_depend_on_wrapping_atoms_into_the_cell(water):
    model = small_water_model(cutoff=3.0)
    numbers, positions, cell, pbc = _inputs(water)
    z = model.born_effective_charges(numbers, positions, cell, pbc)
    shifted = positions.clone()
    shifted[::3] += cell[0] - 2 * cell[2]  # move every third atom by lattice vectors
    assert torch.allclose(model.born_effective_charges(numbers, shifted, cell, pbc), z, atol=1e-9)
    assert torch.allclose(z.sum(0), torch.zeros(3, 3, dtype=torch.float64), atol=1e-9)  # acoustic sum rule


def test_moment_network_gives_the_same_numbers_on_uncut_verlet_candidates(water, monkeypatch):
    """MomentNetwork accepts the Verlet candidates (cutoff + skin) uncut: edges beyond the cutoff add exactly
    nothing to energy, forces and stress; the graph really is larger."""
    from lesmd.evaluate import evaluate
    from lesmd.models.io import load_model

    model = load_model(dtype=torch.float64)
    inputs = (torch.tensor(water.numbers), torch.tensor(water.positions), torch.tensor(water.cell.array),
              torch.tensor(water.pbc))  # fmt: skip
    props = ("energy", "forces", "stress")
    uncut = evaluate(model, *inputs, properties=props)
    n_uncut = model._graph_edges(*inputs[1:]).i.shape[0]
    monkeypatch.setattr(MomentNetwork, "accepts_longer_edges", False)
    cut = evaluate(model, *inputs, properties=props)
    n_cut = model._graph_edges(*inputs[1:]).i.shape[0]
    assert n_uncut > 1.2 * n_cut
    for key in props:
        assert torch.allclose(uncut[key], cut[key], rtol=0, atol=1e-12), key


def test_single_structure_forward_equals_the_batched_graph_of_training(shared_data):
    """LESModel.forward (MD: one structure, LES mesh energy as one autograd node) and forward_graph (training:
    several structures in one graph, batch bookkeeping) give the same energies and charges, neutral and charged."""
    from lesmd.models.io import load_model
    from lesmd.neighbors import edge_vectors, neighbor_list

    model = load_model(None, dtype=torch.float64).eval()
    frames = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", ":2")
    totals = [0.0, 0.5]
    parts = {"species": [], "vectors": [], "i": [], "j": [], "positions": [], "cells": [], "pbcs": []}
    singles, offset = [], 0
    for atoms, total in zip(frames, totals, strict=True):
        numbers, positions = torch.tensor(atoms.numbers), torch.tensor(atoms.positions)
        cell, pbc = torch.tensor(atoms.cell.array), torch.tensor(atoms.pbc)
        singles.append(model(numbers, positions, cell, pbc, total_charge=total))
        edges = neighbor_list(positions, cell, pbc, model.cutoff)
        values = {"species": model.species_indices(numbers), "vectors": edge_vectors(positions, cell, edges),
                  "i": edges.i + offset, "j": edges.j + offset, "positions": positions, "cells": cell, "pbcs": pbc}
        for key, value in values.items():
            parts[key].append(value)
        offset += len(atoms)
    batched = model.forward_graph(
        torch.cat(parts["species"]), torch.cat(parts["vectors"]), torch.cat(parts["i"]), torch.cat(parts["j"]),
        torch.cat(parts["positions"]), torch.stack(parts["cells"]), torch.stack(parts["pbcs"]),
        torch.tensor([len(a) for a in frames]), totals,
    )  # fmt: skip
    assert abs(float(batched["charges"][192:].sum()) - 0.5) < 1e-10
    for k, single in enumerate(singles):
        for key in ("energy", "energy_sr", "energy_lr"):
            assert float(batched[key][k]) == pytest.approx(float(single[key]), rel=0, abs=1e-8), key
        assert torch.allclose(batched["charges"][192 * k : 192 * (k + 1)], single["charges"], rtol=0, atol=1e-12)
    assert abs(float(singles[1]["energy_lr"] - singles[0]["energy_lr"])) > 1e-3  # different frames, charges


@pytest.mark.parametrize("hidden", [(), (16,), (8, 4)])
def test_functional_charge_head_equals_the_module(hidden):
    """LESModel._head (functional calls, a matrix-vector last layer) gives charge_head(x)[:, 0] with its gradient."""
    model = LESModel(MomentNetwork([1, 8], cutoff=4.0, n_channels=4, hidden=[8]), charge_hidden=hidden).double()
    x = torch.randn(7, model.charge_head[0].in_features, dtype=torch.float64, requires_grad=True)
    functional, module = model._head(x), model.charge_head(x)[:, 0]
    assert torch.allclose(functional, module, rtol=1e-14, atol=1e-15)
    (g1,), (g2,) = torch.autograd.grad(functional.sum(), [x]), torch.autograd.grad(module.sum(), [x])
    assert torch.allclose(g1, g2, rtol=1e-14, atol=1e-15)
