"""Electric fields through a real i-PI: the driver applying a static field (`lesmd serve --efield`,
drivers/efield.py) versus i-PI's own driven_dynamics with BECs from the driver, and ASE versus i-PI under a pulse.

Both routes integrate velocity Verlet with F = −∂E0/∂r + Z*ᵀE(t) at the same times, so with the same start they
must produce the same forces and the same trajectory; a unit slip in the field (V/Å ↔ a.u.), a transposed BEC, a
field evaluated at the wrong time or a wrong time unit in the <efield> block shows up as a mismatch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ipi_helpers as h
import numpy as np
import pytest
import torch
from ase import units as ase_units
from ase.io import read
from ase.md.verlet import VelocityVerlet

from lesmd.calculator import LESCalculator
from lesmd.field_md import FieldDrivenMD
from lesmd.fields import ElectricField
from lesmd.units import DIPOLE_EA_TO_AU, HARTREE

WAIT = 120  # s, upper bound on any single process wait
FIELD = np.array([0.2, -0.3, 0.5])  # V/Å (strong: the untrained model's latent charges are ~0.05 e)


@pytest.fixture(scope="module")
def model_file(les_model_file: Path) -> Path:
    """An untrained LESModel for H and O (geometry-dependent charges, so Z* ≠ q·I) saved as a model file."""
    return les_model_file


def _serve(workdir: Path, model_file: Path, name: str, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lesmd.cli", "serve", "--model", str(model_file), "--template", "init.xyz",
           "--unix", name, "--dtype", "float64", "--threads", "1", "--timeout", str(WAIT), *args]
    env = dict(os.environ, PYTHONPATH=str(h.REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=open(workdir / "client.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _run(workdir: Path, procs: list, names: list, xml_kwargs: dict, client) -> None:
    """Start i-PI with ``h.ipi_input(**xml_kwargs)`` and a client ``client(workdir, name)``; wait for both."""
    workdir.mkdir(exist_ok=True)
    if not (workdir / "init.xyz").exists():
        (workdir / "init.xyz").write_bytes((workdir.parent / "init.xyz").read_bytes())
    name = h.unique_name()
    names.append(name)
    ipi = h.start_ipi(workdir, h.ipi_input(address=name, **xml_kwargs), address=name)
    procs.append(ipi)
    proc = client(workdir, name)
    procs.append(proc)
    proc.wait(timeout=WAIT)
    assert proc.returncode == 0, (workdir / "client.log").read_text()[-2000:]
    assert ipi.wait(timeout=WAIT) == 0, (workdir / "ipi.log").read_text()[-2000:]


def _driven_motion(field: ElectricField, mode: str = "eda-nve") -> str:
    return (f'<motion mode="driven_dynamics"><driven_dynamics mode="{mode}">'
            '<timestep units="femtosecond">0.5</timestep>'
            f"{field.to_ipi_xml()}<bec mode='driver'></bec></driven_dynamics></motion>")


NVE = ('<motion mode="dynamics"><dynamics mode="nve"><timestep units="femtosecond">0.5</timestep>'
       "</dynamics></motion>")
VELOCITIES = '<trajectory filename="vel" stride="1" format="ase"> velocities </trajectory>'
EFORCES = '<trajectory filename="eda" stride="1" format="ase"> Eforces </trajectory>'


def _array(path: Path) -> np.ndarray:
    """The per-atom vectors (frames, N, 3) of an i-PI ase-format trajectory (i-PI writes them in ASE units:
    eV/Å for forces, Å per ASE time unit for velocities)."""
    frames = read(path, index=":")
    return np.array([next(v for k, v in f.arrays.items() if k not in ("numbers", "positions")) for f in frames])


def test_static_field_in_driver_equals_ipi_driven_dynamics_with_driver_bec(run_dir, model_file):
    workdir, procs, names = run_dir
    steps = 6
    # A: the driver applies the field (lesmd serve --efield), ordinary NVE
    a = workdir / "serve_efield"
    _run(a, procs, names, dict(steps=steps, motion=NVE, extras="dipole", outputs=VELOCITIES),
         lambda d, n: _serve(d, model_file, n, "--efield", ",".join(f"{v:.17g}" for v in FIELD),
                             "--extras", "dipole"))
    # B: i-PI applies Z*ᵀE itself (driven_dynamics eda-nve), the driver sends E0, F0 and the BECs
    b = workdir / "eda"
    _run(b, procs, names, dict(steps=steps, motion=_driven_motion(ElectricField.static(FIELD)),
                               extras="dipole,BEC", outputs=VELOCITIES + EFORCES),
         lambda d, n: _serve(d, model_file, n, "--extras", "dipole,BEC"))

    pos_a = np.array([f.positions for f in read(a / "sim.pos_0.extxyz", index=":")])
    pos_b = np.array([f.positions for f in read(b / "sim.pos_0.extxyz", index=":")])
    assert len(pos_a) == len(pos_b) >= steps
    np.testing.assert_allclose(_array(a / "sim.vel_0.extxyz")[0], _array(b / "sim.vel_0.extxyz")[0], atol=0)
    np.testing.assert_array_equal(pos_a[0], pos_b[0])
    # same configuration → same total forces: F_A = F0_B + (Z*ᵀE)_B
    forces_a = np.array([f.get_forces() for f in read(a / "sim.for_0.extxyz", index=":")])
    forces_b = np.array([f.get_forces() for f in read(b / "sim.for_0.extxyz", index=":")])
    eda_b = _array(b / "sim.eda_0.extxyz")
    field_force = np.einsum("iab,a->ib", LESCalculator(model_file, dtype=torch.float64).get_property(
        "born_effective_charges", _frame(b, 0)), FIELD)  # Z*ᵀE, eV/Å
    assert np.abs(field_force).max() > 1e-3  # the field does something
    np.testing.assert_allclose(forces_a[0], forces_b[0] + eda_b[0], atol=3e-8, rtol=0)  # extxyz: 8 decimals
    np.testing.assert_allclose(forces_a[0] - forces_b[0], field_force, atol=3e-8, rtol=0)
    # ... and the same trajectory
    np.testing.assert_allclose(pos_a, pos_b, atol=3e-8, rtol=0)
    # A's potential is the enthalpy H = E0 − E·M; B's is E0
    e_a = h.read_properties(a / "sim.out")[:, 4] * HARTREE
    e_b = h.read_properties(b / "sim.out")[:, 4] * HARTREE
    dipole = np.array([d[0] for d in h.read_extras(b / "sim.dipole_0")]) / DIPOLE_EA_TO_AU  # e·Å
    np.testing.assert_allclose(e_a, e_b - dipole @ FIELD, atol=1e-8, rtol=0)


def _frame(workdir: Path, index: int):
    return read(workdir / "sim.pos_0.extxyz", index=index)


def test_efield_driver_plugin_reads_ipi_efield_block_and_matches_ase(run_dir, model_file):
    workdir, procs, names = run_dir
    field_xml = workdir / "field.xml"
    field_xml.write_text(ElectricField.static(FIELD).to_ipi_xml())
    plugin = str(h.REPO / "drivers" / "efield.py")

    def plugin_client(d: Path, name: str) -> subprocess.Popen:
        params = f"template=init.xyz,model={model_file},field_xml={field_xml},extras=dipole,dtype=float64"
        env = dict(os.environ, PYTHONPATH=str(h.REPO), OMP_NUM_THREADS="1")
        return subprocess.Popen([h.PY_DRIVER, "-m", "custom", "-P", plugin, "-u", "-a", name, "-o", params],
                                cwd=d, env=env, stdout=open(d / "client.log", "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    run = workdir / "plugin"
    _run(run, procs, names, dict(steps=3, extras="dipole"), plugin_client)
    calc = LESCalculator(model_file, efield=FIELD, dtype=torch.float64)
    energies = h.read_properties(run / "sim.out")[:, 4] * HARTREE
    frames = read(run / "sim.pos_0.extxyz", index=":")
    forces = read(run / "sim.for_0.extxyz", index=":")
    for atoms, fr, energy in zip(frames, forces, energies, strict=True):
        atoms.calc = calc
        np.testing.assert_allclose(fr.get_forces(), atoms.get_forces(), atol=3e-8, rtol=0)
        assert energy == pytest.approx(atoms.get_potential_energy(), abs=1e-8)  # the enthalpy


@pytest.mark.slow
def test_ase_field_md_and_ipi_driven_dynamics_follow_the_same_trajectory_in_a_pulse(run_dir, model_file):
    """A THz-like pulse: ASE (FieldDrivenMD, velocity Verlet) and i-PI eda-nve from the same start agree."""
    workdir, procs, names = run_dir
    steps = 40  # 20 fs
    pulse = ElectricField.pulse([0.0, 0.2, 0.6], peak=10.0, sigma=4.0, angular_frequency=0.3, phase=0.2)
    run = workdir / "pulse"
    _run(run, procs, names, dict(steps=steps, motion=_driven_motion(pulse), extras="dipole,BEC",
                                 outputs=VELOCITIES),
         lambda d, n: _serve(d, model_file, n, "--extras", "dipole,BEC"))
    ipi_positions = np.array([f.positions for f in read(run / "sim.pos_0.extxyz", index=":")])
    velocities = _array(run / "sim.vel_0.extxyz")  # ASE units

    def ase_run(field, start_time: float = 0.0) -> np.ndarray:
        atoms = _frame(run, 0)
        # i-PI read init.xyz with ASE (<file mode="ase">), so both use ASE's masses
        atoms.set_velocities(velocities[0])
        atoms.calc = LESCalculator(model_file, dtype=torch.float64)
        dyn = VelocityVerlet(atoms, timestep=0.5 * ase_units.fs)
        FieldDrivenMD(dyn, field, start_time=start_time)
        trajectory = [atoms.positions.copy()]
        dyn.attach(lambda: trajectory.append(atoms.positions.copy()), interval=1)
        dyn.run(steps)
        return np.array(trajectory[1:])  # irun calls observers once before the first step

    ase_positions = ase_run(pulse)
    no_field = ase_run(ElectricField.static([0.0, 0.0, 0.0]))
    late = ase_run(pulse, start_time=-0.5)  # the field of one step earlier
    n = min(len(ase_positions), len(ipi_positions))
    assert n >= steps
    assert np.abs(no_field[:n] - ipi_positions[:n]).max() > 1e-3  # the pulse moved the atoms
    assert np.abs(late[:n] - ipi_positions[:n]).max() > 2e-5  # a one-step time lag would show
    np.testing.assert_allclose(ase_positions[:n], ipi_positions[:n], atol=5e-8, rtol=0)  # extxyz: 8 decimals
