"""Degenerate or mistyped structures get a one-line ValueError (or a finite answer), never a traceback or NaN."""

import ase
import numpy as np
import pytest
import torch

from lesmd.calculator import LESCalculator
from lesmd.potential import LESPotential

WATER = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
OPEN = (np.zeros((3, 3)), np.zeros(3, bool))


@pytest.fixture(scope="module")
def potential():
    return LESPotential(None)


def test_empty_structure_is_named(potential):
    atoms = ase.Atoms()
    atoms.calc = LESCalculator()
    with pytest.raises(ValueError, match="no atoms"):
        atoms.get_potential_energy()


def test_one_atom_in_a_periodic_cell_has_a_finite_energy_and_zero_force():
    atoms = ase.Atoms("O", cell=[6.0, 6.0, 6.0], pbc=True)
    atoms.calc = LESCalculator()
    assert np.isfinite(atoms.get_potential_energy())
    np.testing.assert_allclose(atoms.get_forces(), 0.0, atol=1e-6)
    assert np.all(np.isfinite(atoms.get_stress()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64])
def test_unsupported_dtypes_are_refused(dtype):
    with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
        LESPotential(None, dtype=dtype)


def test_fractional_atomic_numbers_are_refused_and_whole_floats_accepted(potential):
    with pytest.raises(ValueError, match="atomic numbers must be integers"):
        potential.compute(np.array([8.5, 1.0, 1.0]), WATER, *OPEN)
    whole = potential.compute(np.array([8.0, 1.0, 1.0]), WATER, *OPEN)["energy"]
    assert whole == potential.compute(np.array([8, 1, 1]), WATER, *OPEN)["energy"]


def test_atomic_number_beyond_the_periodic_table_is_an_unknown_element(potential):
    with pytest.raises(ValueError, match="unknown element .*Z=200"):
        potential.compute(np.array([200, 1, 1]), WATER, *OPEN)
