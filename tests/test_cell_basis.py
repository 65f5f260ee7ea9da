"""A lattice has many bases: energies, forces, stress, charges and BECs must not depend on the one given.

c → c + k·a (or any unimodular integer change of basis U, |det U| = 1) describes the same crystal. Every
periodic sum (k-vectors, mesh, real space, neighbour lists, minimum images) works in the canonical reduced basis
of :func:`lesmd.les.lattice.reduction_matrix`, so the results agree to rounding for every basis.
"""

import ase.io
import numpy as np
import pytest
import torch

from lesmd.electrode import Electrode, ElectrodeConfig, ElectrodePotential
from lesmd.electrode.geometry import AU_ETA, au100_capacitor
from lesmd.les.ewald import coulomb_energy, coulomb_matrix, les_energy
from lesmd.les.lattice import reduction_matrix
from lesmd.models.analytic import FixedChargeModel
from lesmd.potential import LESPotential

F64 = torch.float64
PROPS = ["energy", "forces", "stress", "charges", "dipole", "born_effective_charges"]


def _unimodular(rng: np.random.Generator, rows: tuple[int, ...] = (0, 1, 2), steps: int = 6) -> np.ndarray:
    """A random integer matrix with det ±1 mixing only ``rows``, built from elementary shears and swaps."""
    u = np.eye(3, dtype=np.int64)
    for _ in range(steps):
        i, j = rng.choice(rows, 2, replace=False)
        e = np.eye(3, dtype=np.int64)
        e[i, j] = rng.integers(-3, 4)
        u = e @ u
    if rng.random() < 0.5:
        i, j = rng.choice(rows, 2, replace=False)
        u[[i, j]] = u[[j, i]]
    return u


def _skewed_bases(rng, rows=(0, 1, 2)):
    shear20 = np.eye(3, dtype=np.int64)
    shear20[rows[-1], rows[0]] = 20  # c → c + 20 a (the reported case)
    return [shear20] + [_unimodular(rng, rows) for _ in range(3)]


@pytest.fixture(scope="module")
def water64(shared_data):
    return ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", 0)


@pytest.fixture(scope="module")
def water_potential():
    return LESPotential(None, dtype=F64)


def test_reduction_matrix_is_unimodular_and_gives_one_basis_per_lattice():
    rng = np.random.default_rng(1)
    cell = np.array([[10.0, 0.0, 0.0], [3.0, 9.0, 0.0], [1.0, 2.0, 11.0]])
    canonical = reduction_matrix(cell, (True, True, True)) @ cell
    for u in _skewed_bases(rng):
        skewed = u @ cell
        w = reduction_matrix(skewed, (True, True, True))
        assert round(np.linalg.det(w)) == 1 and np.array_equal(w, np.rint(w))
        same = canonical.copy()
        same[2] *= np.sign(np.linalg.det(u))  # the handedness of the given basis is kept
        np.testing.assert_allclose(w @ skewed, same, atol=1e-9)
    # idempotent: the canonical basis is its own reduction; open rows are never mixed in
    assert np.array_equal(reduction_matrix(canonical, (True, True, True)), np.eye(3))
    slab = reduction_matrix(np.array([[10.0, 0, 0], [53.0, 9.0, 0], [7.0, 1.0, 30.0]]), (True, True, False))
    assert np.array_equal(slab[2], [0, 0, 1]) and np.array_equal(slab[:2, 2], [0, 0])


def test_les_model_is_invariant_under_change_of_cell_basis(water64, water_potential):
    numbers, pos, cell = water64.numbers, water64.positions, water64.cell.array
    ref = water_potential.compute(numbers, pos, cell, np.ones(3, bool), PROPS)
    assert abs(ref["energy"]) > 1.0
    for u in _skewed_bases(np.random.default_rng(2)):
        out = water_potential.compute(numbers, pos, u @ cell, np.ones(3, bool), PROPS)
        assert abs(out["energy"] - ref["energy"]) <= 1e-9 * abs(ref["energy"]), u.tolist()
        for key in ("forces", "stress", "charges", "dipole", "born_effective_charges"):
            scale = max(np.abs(ref[key]).max(), 1e-3)
            np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=1e-9 * scale, err_msg=f"{key} {u.tolist()}")


def test_les_energy_is_invariant_under_change_of_cell_basis_all_methods():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    cell = np.array([[9.0, 0.0, 0.0], [2.0, 10.0, 0.0], [-1.0, 1.5, 11.0]])
    pos = torch.rand(120, 3, dtype=F64) @ torch.tensor(cell)
    q = torch.randn(120, dtype=F64)
    q = q - q.mean()
    for method in ("direct", "mesh"):
        ref = les_energy(q, pos, torch.tensor(cell), True, 1.0, method=method)
        for u in _skewed_bases(rng):
            e = les_energy(q, pos, torch.tensor(u @ cell), True, 1.0, method=method)
            assert abs(float(e - ref)) <= 1e-9 * abs(float(ref)), (method, u.tolist())
    # point charges (a real-space part and the neutralising background of a charged cell)
    qc = q + 0.01
    ref = coulomb_energy(qc, pos, torch.tensor(cell), True, 0.0, method="direct")
    for u in _skewed_bases(rng):
        e = coulomb_energy(qc, pos, torch.tensor(u @ cell), True, 0.0, method="direct")
        assert abs(float(e - ref)) <= 1e-9 * abs(float(ref)), u.tolist()


def test_slab_sums_are_invariant_under_change_of_in_plane_basis():
    rng = np.random.default_rng(4)
    cell = np.array([[9.0, 0.0, 0.0], [2.0, 10.0, 0.0], [0.0, 0.0, 20.0]])
    pos = torch.rand(40, 3, dtype=F64) * torch.tensor([9.0, 10.0, 8.0])
    q = torch.randn(40, dtype=F64)
    ref_e = coulomb_energy(q, pos, torch.tensor(cell), (True, True, False), 0.5, method="mesh")
    ref_a = coulomb_matrix(pos, torch.tensor(cell), (True, True, False), 0.5)
    for u in _skewed_bases(rng, rows=(0, 1)):
        e = coulomb_energy(q, pos, torch.tensor(u @ cell), (True, True, False), 0.5, method="mesh")
        a = coulomb_matrix(pos, torch.tensor(u @ cell), (True, True, False), 0.5)
        assert abs(float(e - ref_e)) <= 1e-9 * abs(float(ref_e)), u.tolist()
        assert float((a - ref_a).abs().max()) <= 1e-9 * float(ref_a.abs().max()), u.tolist()


@pytest.mark.parametrize("boundary", ["slab", "finite_field"])
def test_electrode_charges_are_invariant_under_change_of_in_plane_basis(boundary):
    numbers, positions, cell = au100_capacitor()
    ion = np.array([[3.1, 4.7, 15.0]])
    numbers, positions = np.concatenate([numbers, [11]]), np.vstack([positions, ion])
    cfg = ElectrodeConfig([Electrode("bottom", indices=np.arange(144), potential=-0.6, eta=AU_ETA),
                           Electrode("top", indices=np.arange(144, 288), potential=0.6, eta=AU_ETA)],
                          boundary=boundary, solver="matrix", electrolyte_width=0.0)
    potential = ElectrodePotential(FixedChargeModel([1.0]), cfg)
    ref = potential.compute(numbers, positions, cell, None, ["energy", "forces"])
    skew = np.eye(3, dtype=np.int64)
    skew[1, 0] = 3  # b → b + 3a: the same Au(100) surface lattice
    out = ElectrodePotential(FixedChargeModel([1.0]), cfg).compute(numbers, positions, skew @ cell, None,
                                                                   ["energy", "forces"])
    np.testing.assert_allclose(out["charges"], ref["charges"], rtol=0, atol=1e-9)
    assert abs(out["energy"] - ref["energy"]) <= 1e-9 * abs(ref["energy"])
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=1e-8)


def test_atoms_many_cells_away_keep_float32_precision(water64):
    """Positions shifted by up to ±1000 lattice vectors: same energy and forces as the wrapped frame in float32
    (the wrap happens in float64 before the cast); the dipole is that of the given (shifted) positions."""
    numbers, pos, cell = water64.numbers, water64.positions, water64.cell.array
    potential = LESPotential(None, dtype=torch.float32)
    ref = potential.compute(numbers, pos, cell, np.ones(3, bool), ["energy", "forces", "charges", "dipole"])
    shifts = np.random.default_rng(5).integers(-1000, 1001, size=(len(pos), 3))
    far = pos + shifts @ cell
    out = potential.compute(numbers, far, cell, np.ones(3, bool), ["energy", "forces", "charges", "dipole"])
    assert abs(out["energy"] - ref["energy"]) < 1e-3
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=1e-3)
    expected = ref["dipole"] + ref["charges"] @ (shifts @ cell)
    np.testing.assert_allclose(out["dipole"], expected, rtol=1e-5, atol=0.05)
