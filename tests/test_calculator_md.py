"""MD with the ASE calculator: the `lesmd md` command end to end, the water-box builder, and NVE energy drift
of the embedded default water model."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.io import read

from lesmd.structures import water_box, water_box_length

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_water_box_has_density_one_and_no_overlaps():
    atoms = water_box(64, seed=3)
    assert len(atoms) == 192 and atoms.get_chemical_formula() == "H128O64"
    grams_per_cm3 = atoms.get_masses().sum() * 1.66053906660e-24 / (atoms.get_volume() * 1e-24)
    assert grams_per_cm3 == pytest.approx(1.0, rel=1e-4)
    assert atoms.cell.lengths()[0] == pytest.approx(water_box_length(64), rel=1e-12)
    d = atoms.get_all_distances(mic=True)
    molecule = np.arange(len(atoms)) // 3
    inter = molecule[:, None] != molecule[None, :]
    assert d[inter].min() >= 1.5
    intra = d[~inter & (d > 0)]
    assert intra.min() == pytest.approx(0.9572, abs=1e-9)  # O–H bonds
    assert intra.max() == pytest.approx(2 * 0.9572 * np.sin(np.radians(104.52 / 2)), abs=1e-9)  # H–H


def test_water_box_refuses_impossible_packing():
    with pytest.raises(ValueError, match="could not place"):
        water_box(27, density=2.0, min_distance=2.6)


def test_lesmd_md_command_logs_every_step_and_writes_dipoles(tmp_path):
    from lesmd.models.io import save_model
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(0)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8]), charge_hidden=(8,))
    path = save_model(model, tmp_path / "m.pt")
    cmd = [sys.executable, "-m", "lesmd.cli", "md", "--model", str(path), "--molecules", "8", "--steps", "4",
           "--out", "md.extxyz", "--threads", "1"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr
    rows = [ln.split() for ln in result.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3, 4]
    frames = read(tmp_path / "md.extxyz", index=":")
    assert len(frames) == 5
    for frame, row in zip(frames, rows, strict=True):
        q = frame.get_charges()
        np.testing.assert_allclose(frame.get_dipole_moment(), q @ frame.positions, atol=1e-5)
        np.testing.assert_allclose(frame.get_dipole_moment(), [float(x) for x in row[5:8]], atol=1e-4)
        assert abs(q.sum()) < 1e-5


@pytest.mark.parametrize("suffix", ["traj", "extxyz"])
def test_lesmd_md_bec_flag_stores_born_charges_that_match_the_calculator(tmp_path, suffix):
    from lesmd.calculator import LESCalculator
    from lesmd.models.io import save_model
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(1)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8]), charge_hidden=(8,))
    path = save_model(model, tmp_path / "m.pt")
    cmd = [sys.executable, "-m", "lesmd.cli", "md", "--model", str(path), "--molecules", "8", "--steps", "4",
           "--log-interval", "2", "--bec", "--out", f"md.{suffix}", "--threads", "1", "--ensemble", "nve"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr
    frames = read(tmp_path / f"md.{suffix}", index=":")
    assert len(frames) == 3
    calc = LESCalculator(str(path))
    for frame in frames:
        stored = frame.calc.results.get("born_effective_charges", frame.arrays.get("born_effective_charges"))
        stored = np.reshape(stored, (len(frame), 3, 3))  # extxyz keeps 9 columns [α, β] row-major
        fresh = frame.copy()
        np.testing.assert_allclose(stored, calc.get_property("born_effective_charges", fresh), atol=1e-5)
        assert np.abs(stored).max() > 1e-3


@pytest.mark.slow
def test_default_water_model_nve_drift_below_half_mev_per_atom():
    """32 H2O, ASE VelocityVerlet, 0.5 fs, 2 ps after FIRE + a 100 fs Langevin start: drift ≤ 0.5 meV/atom, and
    the liquid stays a liquid of intact molecules (no interpenetration below the data's shortest O–O distance)."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    from lesmd.calculator import LESCalculator
    from lesmd.md import relax
    from lesmd.models.io import default_model_path

    assert default_model_path().is_file(), "the embedded default water model is missing"
    torch.set_num_threads(2)
    atoms = water_box(32, seed=7)
    atoms.calc = LESCalculator(dtype=torch.float64)
    relax(atoms, atoms.calc, 100)  # release the strain of the built box before thermalising
    rng = np.random.default_rng(7)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
    Stationary(atoms)
    Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300, friction=0.05 / units.fs, rng=rng,
             fixcm=False).run(200)
    energies = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=10)
    shortest_oo = []
    oxygens = np.flatnonzero(atoms.numbers == 8)
    dyn.attach(lambda: shortest_oo.append(np.sort(atoms.get_all_distances(mic=True)[np.ix_(oxygens, oxygens)],
                                                  axis=1)[:, 1].min()), interval=100)
    dyn.attach(lambda: print(f"{dyn.nsteps * 0.5:7.1f} fs  Etot/atom {energies[-1] / len(atoms):.6f} eV  "
                             f"T {atoms.get_temperature():.0f} K", flush=True), interval=200)
    dyn.run(4000)
    e = np.array(energies) / len(atoms)
    window = 20  # 100 fs averages at both ends
    drift = abs(e[-window:].mean() - e[:window].mean())
    print(f"NVE 2 ps: drift {drift * 1e3:.4f} meV/atom, spread {np.ptp(e) * 1e3:.4f} meV/atom, "
          f"T_end {atoms.get_temperature():.0f} K")
    assert drift <= 0.5e-3
    print(f"shortest O–O distance over the run {min(shortest_oo):.3f} Å")
    assert min(shortest_oo) > 2.2  # liquid water: ≥ 2.386 Å in the DFT data; < 2 Å only if molecules interpenetrate
    o_h = atoms.get_all_distances(mic=True)[np.ix_(oxygens, oxygens + 1)].diagonal()
    assert o_h.max() < 1.3  # every molecule intact
