"""Itinerant dipoles from trajectories (lesmd.trajectory) and the `lesmd spectrum` command.

Independent checks: mdtraj.static_dielectric on a fixed-charge water trajectory, the unwrapped trajectory that
produced a wrapped one, ASE readers/writers, and a real i-PI run whose driver reports dipoles and BECs as extras.
"""

import argparse
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import ase.io
import ase.units
import mdtraj
import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from lesmd import spectra, spectra_cli, trajectory

REPO = Path(__file__).resolve().parents[1]
SPC_CHARGES = {"O": -0.82, "H": 0.41}


def water_trajectory(n_frames=400, n_mol=32, box=10.0, step=0.25, seed=0, cell=None):
    """Rigid SPC-like waters doing a random walk in translation and rotation.

    Returns (unwrapped positions (F, 3n, 3) Å, wrapped positions, cell (3,3), charges (3n,)).
    Steps of `step` Å let molecules cross the cell many times; the wrapped copy breaks molecules apart.
    """
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * box if cell is None else np.asarray(cell, float)
    half = math.radians(109.47) / 2
    local = np.array([[0, 0, 0], [math.sin(half), math.cos(half), 0], [-math.sin(half), math.cos(half), 0]])
    com = rng.random((n_mol, 3)) @ cell
    rot = Rotation.random(n_mol, random_state=seed)
    frames = []
    for _ in range(n_frames):
        com = com + rng.normal(scale=step, size=com.shape)
        rot = Rotation.from_rotvec(rng.normal(scale=0.15, size=(n_mol, 3))) * rot
        frames.append((com[:, None, :] + np.stack([rot.apply(v) for v in local], axis=1)).reshape(-1, 3))
    unwrapped = np.array(frames)
    frac = unwrapped @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    charges = np.tile([SPC_CHARGES["O"], SPC_CHARGES["H"], SPC_CHARGES["H"]], n_mol)
    return unwrapped, wrapped, cell, charges


@pytest.mark.parametrize("cell", [None, [[10.0, 0, 0], [2.5, 9.5, 0], [-1.5, 2.0, 11.0]]], ids=["cubic", "triclinic"])
def test_molecules_wrapped_across_the_cell_do_not_corrupt_the_dipole(cell):
    unwrapped, wrapped, cell, q = water_trajectory(cell=cell)
    truth = np.einsum("i,fia->fa", q, unwrapped)
    m = trajectory.itinerant_dipoles(wrapped, cell, q)
    assert np.allclose(m - m[0], truth - truth[0], atol=1e-9)  # same up to a constant lattice offset
    naive = np.einsum("i,fia->fa", q, wrapped)
    assert np.max(np.abs(naive - naive[0] - truth + truth[0])) > 1.0  # the test does see wrapping jumps
    eps = spectra.static_dielectric(m, abs(np.linalg.det(cell)), 300.0).epsilon
    ref = spectra.static_dielectric(truth, abs(np.linalg.det(cell)), 300.0).epsilon
    assert eps == pytest.approx(ref, rel=1e-12)


def _mdtraj_water(wrapped_A, cell):
    top = mdtraj.Topology()
    chain = top.add_chain()
    for _ in range(wrapped_A.shape[1] // 3):
        res = top.add_residue("HOH", chain)
        top.add_atom("O", mdtraj.element.oxygen, res)
        top.add_atom("H1", mdtraj.element.hydrogen, res)
        top.add_atom("H2", mdtraj.element.hydrogen, res)
    n = len(wrapped_A)
    lengths = np.tile(np.diag(cell) / 10.0, (n, 1))
    return mdtraj.Trajectory(wrapped_A / 10.0, top, unitcell_lengths=lengths, unitcell_angles=np.full((n, 3), 90.0))


def test_fixed_charge_water_epsilon_equals_mdtraj_static_dielectric():
    _, wrapped, cell, q = water_trajectory(n_frames=500, n_mol=64, box=12.4, seed=1)
    traj = _mdtraj_water(wrapped, cell)
    reference = mdtraj.static_dielectric(traj, q, 300.0)
    positions = traj.xyz.astype(np.float64) * 10.0  # the same float32-rounded coordinates
    cells = traj.unitcell_vectors.astype(np.float64) * 10.0
    m = trajectory.itinerant_dipoles(positions, cells, q)
    ours = spectra.static_dielectric(m, np.abs(np.linalg.det(cells)), 300.0)
    assert ours.epsilon == pytest.approx(reference, rel=1e-6)
    assert ours.epsilon > 2.0  # a real dielectric response, not ε = 1


def test_mdtraj_reader_gives_same_dipoles_as_arrays(tmp_path):
    _, wrapped, cell, q = water_trajectory(n_frames=60, seed=2)
    traj = _mdtraj_water(wrapped, cell)
    traj.time = np.arange(len(traj)) * 0.002  # ps
    traj.save_dcd(str(tmp_path / "w.dcd"))
    traj[0].save_pdb(str(tmp_path / "w.pdb"))
    series = trajectory.dipole_series(
        trajectory.iter_mdtraj(tmp_path / "w.dcd", tmp_path / "w.pdb"), charges=SPC_CHARGES
    )
    ref = trajectory.itinerant_dipoles(traj.xyz.astype(np.float64) * 10, traj.unitcell_vectors * 10.0, q)
    assert series.source == "charges"
    assert np.allclose(series.dipoles, ref, atol=2e-4)  # dcd stores float32
    assert np.allclose(series.volumes, np.prod(np.diag(cell)), rtol=1e-5)


def test_extxyz_charges_and_stored_dipoles_give_the_itinerant_dipole(tmp_path):
    unwrapped, wrapped, cell, q = water_trajectory(n_frames=50, seed=3)
    frames = []
    for pos, upos in zip(wrapped, unwrapped, strict=True):
        atoms = Atoms("OH2" * (len(q) // 3), positions=pos, cell=cell, pbc=True)
        atoms.arrays["charges"] = q.copy()
        atoms.info["dipole"] = q @ upos  # what an MD code with unwrapped positions reports
        frames.append(atoms)
    ase.io.write(tmp_path / "w.xyz", frames, format="extxyz")
    truth = np.einsum("i,fia->fa", q, unwrapped)
    from_charges = trajectory.dipole_series(trajectory.iter_ase(tmp_path / "w.xyz", chunk=7), "charges")
    stored = trajectory.dipole_series(trajectory.iter_ase(tmp_path / "w.xyz"), "auto")
    assert stored.source == "stored"
    assert np.allclose(stored.dipoles, truth, atol=1e-6)
    assert np.allclose(from_charges.dipoles - from_charges.dipoles[0], truth - truth[0], atol=1e-6)


def test_fast_traj_reader_matches_the_ase_atoms_reader(tmp_path):
    """.traj frames read from the file backend equal those from ase.io.iread (all fields, incl. results)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(8)
    with ase.io.Trajectory(tmp_path / "t.traj", "w") as out:
        for _ in range(12):
            atoms = Atoms("OH2OH2", positions=rng.random((6, 3)) * 5, cell=[6, 6, 7], pbc=True,
                          charges=[-0.8, 0.4, 0.4, -0.8, 0.4, 0.4])  # fmt: skip
            atoms.set_velocities(rng.normal(size=(6, 3)) * 0.01)
            atoms.calc = SinglePointCalculator(atoms, energy=0.0, dipole=rng.normal(size=3),
                                               charges=rng.normal(size=6))  # fmt: skip
            out.write(atoms)
    fast = list(trajectory.iter_ase(tmp_path / "t.traj", chunk=5))
    slow = list(trajectory.iter_ase(tmp_path / "t.traj", chunk=5, index="0:"))
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow, strict=True):
        for name in ("numbers", "positions", "cells", "pbc", "velocities", "dipoles", "charges"):
            va, vb = getattr(a, name), getattr(b, name)
            assert va is not None and np.allclose(va, vb, rtol=1e-12, atol=0), name
        assert a.bec is None and b.bec is None


def test_bec_times_velocity_gives_the_dipole_derivative(tmp_path):
    """Ṁ = Σ Z*·v with Z* read as [atom, dipole α, displacement β]: a non-symmetric Z* checks the index order."""
    rng = np.random.default_rng(5)
    n_atoms, n_frames = 4, 40
    z = rng.normal(size=(n_atoms, 3, 3))
    frames = []
    for _ in range(n_frames):
        atoms = Atoms("H4", positions=rng.random((n_atoms, 3)) * 5, cell=[6, 6, 6], pbc=True)
        atoms.set_velocities(rng.normal(size=(n_atoms, 3)))
        atoms.info["born_effective_charges"] = z
        frames.append(atoms)
    ase.io.write(tmp_path / "b.xyz", frames, format="extxyz")
    series = trajectory.dipole_series(trajectory.iter_ase(tmp_path / "b.xyz"), "bec")
    v = np.array([a.get_velocities() for a in frames]) * ase.units.fs  # Å/fs
    assert np.allclose(series.dipole_derivative, np.einsum("iab,fib->fa", z, v), atol=1e-6)


def test_model_dipole_function_sees_unwrapped_positions():
    unwrapped, wrapped, cell, q = water_trajectory(n_frames=30, seed=4)
    truth = np.einsum("i,fia->fa", q, unwrapped)
    chunk = trajectory.FrameChunk(
        numbers=np.tile([8, 1, 1], len(q) // 3),
        positions=wrapped,
        cells=np.broadcast_to(cell, (30, 3, 3)),
        pbc=np.ones(3, bool),
    )

    class Potential:  # the lesmd potential API: compute(numbers, positions, cell, pbc, properties)
        def compute(self, numbers, positions, cell, pbc, properties):
            assert "dipole" in properties
            return {"dipole": q @ positions}

    for model in (lambda atoms: q @ atoms.positions, Potential()):
        series = trajectory.dipole_series([chunk], "model", model=model)
        assert np.allclose(series.dipoles - series.dipoles[0], truth - truth[0], atol=1e-9)


def test_unwrapping_without_a_cell_is_rejected():
    with pytest.raises(ValueError, match="cell"):
        trajectory.itinerant_dipoles(np.zeros((20, 2, 3)), np.zeros((3, 3)), [1.0, -1.0])


def test_trajectory_without_any_dipole_information_is_rejected(tmp_path):
    ase.io.write(tmp_path / "p.xyz", [Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]])] * 20, format="extxyz")
    with pytest.raises(ValueError, match="charges"):
        trajectory.dipole_series(trajectory.iter_ase(tmp_path / "p.xyz"))


# ----------------------------------------------------------------------------------------------- i-PI
PES = textwrap.dedent(
    '''
    """Fixed linear dipole model for the test: harmonic springs, M = Σ Z_i r_i with non-symmetric Z_i."""
    import json
    import numpy as np
    from ipi.pes.dummy import Dummy_driver

    __DRIVER_NAME__ = "lineardipole"
    __DRIVER_CLASS__ = "LinearDipole"
    Z = np.array({z})
    BONDS = [(0, 1, 0.3, 1.8), (2, 3, 0.3, 1.8)]  # Hartree/Bohr², Bohr


    class LinearDipole(Dummy_driver):
        def compute_structure(self, cell, pos):
            pos = np.asarray(pos).reshape(-1, 3)
            energy, forces = 0.0, np.zeros_like(pos)
            for i, j, k, r0 in BONDS:
                d = pos[j] - pos[i]
                r = np.linalg.norm(d)
                energy += 0.5 * k * (r - r0) ** 2
                f = k * (r - r0) * d / r
                forces[i] += f
                forces[j] -= f
            dipole = np.einsum("iab,ib->a", Z, pos)  # e·Bohr, positions in Bohr
            bec = Z.transpose(0, 2, 1).reshape(-1, 3)  # i-PI layout: row 3i+β (displacement), column α
            extras = json.dumps({{"dipole": dipole.tolist(), "BEC": bec.tolist()}})
            return energy, forces.reshape(np.shape(pos)), np.zeros((3, 3)), extras
    '''
)

XML = """<simulation verbosity="quiet" safe_stride="100000">
  <output prefix="sim">
    <trajectory filename="pos" stride="1" format="xyz" cell_units="angstrom"> positions{{angstrom}} </trajectory>
    <trajectory filename="vel" stride="1" format="xyz"> velocities </trajectory>
    <trajectory filename="dip" stride="1" extra_type="dipole"> extras </trajectory>
    <trajectory filename="bec" stride="1" extra_type="BEC"> extras </trajectory>
    <trajectory filename="raw" stride="1"> extras </trajectory>
    <trajectory filename="posau" stride="1" format="xyz"> positions </trajectory>
  </output>
  <total_steps>300</total_steps>
  <prng><seed>31415</seed></prng>
  <ffdirect name="lin"><pes>custom</pes><pes_path>{pes}</pes_path></ffdirect>
  <system>
    <initialize nbeads="1">
      <file mode="xyz" units="angstrom"> init.xyz </file>
      <velocities mode="thermal" units="kelvin"> 600 </velocities>
    </initialize>
    <forces><force forcefield="lin"/></forces>
    <motion mode="dynamics"><dynamics mode="nve"><timestep units="femtosecond"> 0.5 </timestep></dynamics></motion>
    <ensemble><temperature units="kelvin"> 600 </temperature></ensemble>
  </system>
</simulation>
"""


@pytest.fixture(scope="module")
def ipi_run(tmp_path_factory):
    """Run i-PI 300 NVE steps of two bonded pairs with a linear-dipole driver; return the folder and Z (e)."""
    run = tmp_path_factory.mktemp("ipi")
    z = np.random.default_rng(7).normal(scale=0.5, size=(4, 3, 3))
    (run / "pes_lineardipole.py").write_text(PES.format(z=z.tolist()))
    (run / "init.xyz").write_text(
        "4\n# CELL(abcABC): 8.0 8.0 8.0 90.0 90.0 90.0 positions{angstrom} cell{angstrom}\n"
        "O 0.5 1.0 1.0\nH 1.45 1.0 1.0\nO 7.6 4.0 4.0\nH 7.6 4.95 4.0\n"
    )
    (run / "input.xml").write_text(XML.format(pes=run / "pes_lineardipole.py"))
    ipi = Path(sys.executable).parent / "i-pi"
    done = subprocess.run([str(ipi), "input.xml"], cwd=run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return run, z


def test_ipi_extras_dipole_in_bohr_matches_linear_dipole_of_positions(ipi_run):
    run, z = ipi_run
    series = trajectory.dipole_series(trajectory.iter_ipi(run / "sim.pos_0.xyz", extras=[run / "sim.dip_0"]))
    assert series.source == "stored"
    positions = np.array([a.positions for a in ase.io.read(run / "sim.pos_0.xyz", ":", format="xyz")])
    expected = np.einsum("iab,fib->fa", z, positions)  # M = Σ Z r is unit-free in length: e·Å here
    assert series.n_frames == 301
    assert np.allclose(series.dipoles, expected, atol=1e-3)  # i-PI writes 6 significant digits
    assert np.allclose(series.volumes, 512.0, rtol=1e-6)
    assert np.max(np.abs(np.diff(series.dipoles, axis=0))) > 1e-3  # the dipole moves


def test_ipi_bec_times_velocities_equals_time_derivative_of_extras_dipole(ipi_run):
    run, _ = ipi_run
    dip = trajectory.dipole_series(trajectory.iter_ipi(run / "sim.pos_0.xyz", extras=[run / "sim.dip_0"]))
    bec = trajectory.dipole_series(
        trajectory.iter_ipi(run / "sim.pos_0.xyz", run / "sim.vel_0.xyz", [run / "sim.bec_0"], chunk=64), "bec"
    )
    central = (dip.dipoles[2:] - dip.dipoles[:-2]) / (2 * 0.5)
    mdot = bec.dipole_derivative[1:-1]
    assert np.max(np.abs(central - mdot)) < 0.02 * np.max(np.abs(mdot))
    assert 300 < bec.kinetic_temperature_K < 1200  # thermal velocities at 600 K in Å/fs, converted from a.u.


def test_ipi_raw_json_extras_and_atomic_unit_positions_read_the_same(ipi_run):
    run, _ = ipi_run
    typed = trajectory.dipole_series(trajectory.iter_ipi(run / "sim.pos_0.xyz", extras=[run / "sim.dip_0"]))
    raw = trajectory.dipole_series(trajectory.iter_ipi(run / "sim.posau_0.xyz", extras=[run / "sim.raw_0"]))
    assert np.allclose(raw.dipoles, typed.dipoles, rtol=1e-6, atol=1e-6)
    assert np.allclose(raw.volumes, typed.volumes, rtol=1e-5)  # cell written in Bohr, converted to Å
    steps, data = trajectory.read_ipi_extras(run / "sim.raw_0")
    _, typed_bec = trajectory.read_ipi_extras(run / "sim.bec_0")
    assert np.allclose(data["BEC"], typed_bec["BEC"], atol=1e-5) and steps[0] == 0
    # positions written in atomic units (Bohr) and in Å give the same charge-free geometry
    au = np.concatenate([c.positions for c in trajectory.iter_ipi(run / "sim.posau_0.xyz")])
    ang = np.concatenate([c.positions for c in trajectory.iter_ipi(run / "sim.pos_0.xyz")])
    assert np.allclose(au, ang, atol=1e-4)


def test_spectrum_command_reads_ipi_extras_dipoles(ipi_run, tmp_path):
    run, _ = ipi_run
    args = _args(run / "sim.dip_0", tmp_path, "--timestep", "0.5", "--temperature", "600", "--volume", "512")
    assert spectra.run_cli(args) == 0
    summary = json.loads((tmp_path / "dielectric.json").read_text())
    assert summary["dipole_source"] == "stored" and summary["n_frames"] == 301
    args = _args(
        run / "sim.pos_0.xyz",
        tmp_path / "bec",
        "--velocities",
        str(run / "sim.vel_0.xyz"),
        "--extras",
        str(run / "sim.bec_0"),
        "--timestep",
        "0.5",
        "--no-plots",
    )
    assert spectra.run_cli(args) == 0
    summary = json.loads((tmp_path / "bec" / "dielectric.json").read_text())
    assert summary["dipole_source"] == "bec" and 300 < summary["temperature_K"] < 1200
    assert summary["volume_A3"] == pytest.approx(512.0, rel=1e-5)


def test_ipi_extras_with_mismatched_frames_are_rejected(ipi_run, tmp_path):
    run, _ = ipi_run
    lines = (run / "sim.dip_0").read_text().splitlines(keepends=True)
    (tmp_path / "short").write_text("".join(lines[:-4]))
    with pytest.raises(ValueError, match="frames|Step"):
        trajectory.dipole_series(trajectory.iter_ipi(run / "sim.pos_0.xyz", extras=[tmp_path / "short"]))


# ----------------------------------------------------------------------------------------------- CLI
def _args(traj, out, *extra):
    parser = argparse.ArgumentParser()
    spectra.add_cli_arguments(parser)
    return parser.parse_args([str(traj), "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def water_traj_file(tmp_path_factory):
    unwrapped, wrapped, cell, q = water_trajectory(n_frames=300, n_mol=16, box=8.0, step=0.05, seed=6)
    path = tmp_path_factory.mktemp("cli") / "water.traj"
    with ase.io.Trajectory(path, "w") as out:
        for pos in wrapped:
            out.write(Atoms("OH2" * 16, positions=pos, cell=cell, pbc=True, charges=q))
    return path, trajectory.itinerant_dipoles(wrapped, cell, q), float(np.linalg.det(cell))


def test_spectrum_command_writes_the_documented_files(water_traj_file, tmp_path):
    path, m, volume = water_traj_file
    assert (
        spectra.run_cli(_args(path, tmp_path, "--timestep", "2", "--temperature", "300", "--epsilon-inf", "1.8")) == 0
    )
    lines = (tmp_path / "ir.csv").read_text().splitlines()
    assert lines[0] == "wavenumber_cm-1,absorption"
    table = np.loadtxt(tmp_path / "ir.csv", delimiter=",", skiprows=1)
    assert table.shape[1] == 2 and table[-1, 0] <= 4500.0 + 1e-6 and np.all(np.diff(table[:, 0]) > 0)
    summary = json.loads((tmp_path / "dielectric.json").read_text())
    for key in (
        "epsilon",
        "epsilon_err",
        "n_frames",
        "timestep_fs",
        "temperature_K",
        "volume_A3",
        "dipole_correlation_time_ps",
        "running_epsilon",
    ):
        assert key in summary
    ref = spectra.static_dielectric(m, volume, 300.0, epsilon_inf=1.8)
    assert summary["epsilon"] == pytest.approx(ref.epsilon, rel=1e-10)
    assert summary["epsilon_err"] == pytest.approx(ref.epsilon_err, rel=1e-10)
    assert (summary["n_frames"], summary["timestep_fs"], summary["volume_A3"]) == (300, 2.0, pytest.approx(volume))
    eps = np.loadtxt(tmp_path / "epsilon_omega.csv", delimiter=",", skiprows=1)
    assert (tmp_path / "epsilon_omega.csv").read_text().startswith("wavenumber_cm-1,epsilon_real,epsilon_imag\n")
    assert eps[0, 1] == pytest.approx(ref.epsilon, rel=1e-9)
    for png in ("ir.png", "dielectric_running.png", "epsilon_omega.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_spectrum_command_line_runs_and_reports_bad_input_in_one_line(water_traj_file, tmp_path):
    path, _, _ = water_traj_file
    cmd = [
        sys.executable,
        "-m",
        "lesmd.cli",
        "spectrum",
        str(path),
        "--out",
        str(tmp_path),
        "--timestep",
        "2",
        "--temperature",
        "300",
        "--no-plots",
    ]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ε =" in done.stdout and (tmp_path / "dielectric.json").is_file()
    bad = subprocess.run(
        cmd[:-5] + ["--timestep", "-2", "--temperature", "300"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode != 0 and "timestep" in bad.stderr and "Traceback" not in bad.stderr


def test_stored_dipoles_of_wrapped_positions_raise_a_warning(tmp_path, capsys):
    _, wrapped, cell, q = water_trajectory(n_frames=200, n_mol=8, box=10.0, step=0.01, seed=9)
    frames = []
    for pos in wrapped:
        atoms = Atoms("OH2" * 8, positions=pos, cell=cell, pbc=True)
        atoms.arrays["charges"] = q.copy()
        atoms.info["dipole"] = q @ pos  # a code that wraps positions before computing M
        frames.append(atoms)
    ase.io.write(tmp_path / "wrapped.xyz", frames, format="extxyz")
    spectra.run_cli(_args(tmp_path / "wrapped.xyz", tmp_path / "o", "--timestep", "1", "--temperature", "300",
                          "--no-plots"))  # fmt: skip
    assert "computed from wrapped positions?" in capsys.readouterr().err


def test_notebook_entry_gives_the_command_line_results(water_traj_file):
    path, m, volume = water_traj_file
    res = spectra_cli.analyse_file(path, timestep=2.0, temperature=300.0)
    assert res["static"].epsilon == pytest.approx(spectra.static_dielectric(m, volume, 300.0).epsilon, rel=1e-10)
    assert res["series"].source == "charges" and res["ir"].wavenumber[-1] <= 4500.0
    with pytest.raises(TypeError, match="unknown option"):
        spectra_cli.analyse_file(path, time_step=2.0)


def test_spectrum_command_without_timestep_or_temperature_says_which(water_traj_file, tmp_path):
    path, _, _ = water_traj_file
    with pytest.raises(ValueError, match="--timestep is required"):
        spectra.run_cli(_args(path, tmp_path, "--temperature", "300"))
    with pytest.raises(ValueError, match="--temperature is required"):
        spectra.run_cli(_args(path, tmp_path, "--timestep", "1"))


def test_spectrum_command_without_cell_asks_for_a_volume(tmp_path):
    frames = [
        Atoms("HF", positions=[[0, 0, 0], [0, 0, 0.9 + 0.01 * np.sin(i)]], charges=[0.4, -0.4]) for i in range(40)
    ]
    ase.io.write(tmp_path / "hf.traj", frames)
    with pytest.raises(ValueError, match="no 3-D periodic cell"):
        spectra.run_cli(_args(tmp_path / "hf.traj", tmp_path / "o", "--timestep", "1", "--temperature", "300"))


def test_timestep_disagreeing_with_time_stamps_is_rejected():
    with pytest.raises(ValueError, match="disagrees"):
        spectra_cli.resolve_timestep(1.0, np.arange(10) * 2.0)
    with pytest.raises(ValueError, match="uniformly"):
        spectra_cli.resolve_timestep(None, np.array([0.0, 1.0, 2.0, 4.0]))
    assert spectra_cli.resolve_timestep(None, np.arange(10) * 2.0) == 2.0


def test_auto_dipole_source_uses_stored_dipoles_for_epsilon_and_bec_velocities_for_the_ir():
    """With both stored dipoles and BECs + velocities in the file, Ṁ for the IR is Σ Z*·v (no finite differences
    of Σ q r) and M for ε is the stored dipole."""
    from lesmd.trajectory import FrameChunk, dipole_series

    rng = np.random.default_rng(0)
    k, n = 6, 3
    bec = np.tile(np.eye(3) * np.array([-0.8, 0.4, 0.4])[:, None, None], (k, 1, 1, 1))
    velocities = rng.normal(size=(k, n, 3)) * 0.01
    stored = rng.normal(size=(k, 3))
    chunk = FrameChunk(numbers=np.array([8, 1, 1]), positions=rng.random((k, n, 3)), cells=np.tile(np.eye(3) * 9,
                       (k, 1, 1)), pbc=np.ones(3, bool), velocities=velocities, dipoles=stored, bec=bec,
                       charges=None, times_fs=np.arange(k) * 1.0)  # fmt: skip
    series = dipole_series([chunk])
    assert series.source == "stored+bec"
    np.testing.assert_allclose(series.dipoles, stored)
    np.testing.assert_allclose(series.dipole_derivative, np.einsum("kiab,kib->ka", bec, velocities))
