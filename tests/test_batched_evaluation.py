"""One model call for B structures equals B separate calls (mixed sizes, open and periodic, own cells and charges)."""

import ase.io
import numpy as np
import pytest
import torch

from lesmd.potential import LESPotential

PROPS = ["energy", "forces", "stress", "charges", "dipole"]


def _structures(shared_data):
    water = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", "0:3")
    rng = np.random.default_rng(0)
    out = []
    for k, atoms in enumerate(water):
        cell = atoms.cell.array * (1.0 + 0.01 * k)  # each its own cell
        pos = atoms.positions * (1.0 + 0.01 * k) + rng.normal(scale=0.02, size=atoms.positions.shape)
        out.append((atoms.numbers, pos, cell, np.ones(3, bool)))
    small = water[0][:48]  # 16 molecules, another size
    out.append((small.numbers, small.positions, water[0].cell.array, np.ones(3, bool)))
    return out


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-6)])
def test_batched_call_equals_separate_calls_periodic(shared_data, dtype, tolerance):
    potential = LESPotential(None, dtype=dtype)
    structures = _structures(shared_data)
    batched = potential.compute_batch(structures, PROPS)
    for s, got in zip(structures, batched, strict=True):
        ref = potential.compute(*s, PROPS)
        assert abs(got["energy"] - ref["energy"]) <= tolerance * abs(ref["energy"])  # float32: summation order
        for key in ("forces", "stress", "charges", "dipole"):
            np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-12 if dtype == torch.float64 else 5e-5,
                                       err_msg=key)  # fmt: skip


def test_batched_call_equals_separate_calls_open_molecules_with_total_charge(shared_data):
    potential = LESPotential(None, dtype=torch.float64)
    water = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", 0)
    structures = [(water.numbers[:3 * k], water.positions[:3 * k], np.zeros((3, 3)), np.zeros(3, bool))
                  for k in (2, 5, 9)]  # fmt: skip
    charges = [0.0, 1.0, -1.0]
    props = ["energy", "forces", "charges", "dipole", "born_effective_charges"]
    batched = potential.compute_batch(structures, props, total_charges=charges)
    for s, q, got in zip(structures, charges, batched, strict=True):
        ref = potential.compute(*s, props, total_charge=q)
        assert abs(got["energy"] - ref["energy"]) < 1e-10
        assert got["charges"].sum() == pytest.approx(q, abs=1e-10)
        for key in ("forces", "charges", "dipole", "born_effective_charges"):
            np.testing.assert_allclose(got[key], ref[key], rtol=0, atol=1e-9, err_msg=key)


def test_ipi_driver_batch_equals_single_structures(shared_data):
    from lesmd.ipi import IPIDriver
    from lesmd.units import BOHR

    potential = LESPotential(None, dtype=torch.float64)
    structures = _structures(shared_data)[:3]
    numbers = structures[0][0]
    driver = IPIDriver(potential, numbers, extras=("dipole", "charges"))
    cells = [s[2].T / BOHR for s in structures]
    positions = [s[1] / BOHR for s in structures]
    batched = driver.compute_batch(cells, positions)
    for cell, pos, got in zip(cells, positions, batched, strict=True):
        ref = driver.compute_structure(cell, pos)
        assert got[0] == pytest.approx(ref[0], abs=1e-12)
        np.testing.assert_allclose(got[1], ref[1], atol=1e-10)
        np.testing.assert_allclose(got[2], ref[2], atol=1e-10)
