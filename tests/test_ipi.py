"""lesmd against a real i-PI (the `i-pi` of the ipi package): protocol, units, extras, robustness.

Every test starts real processes with unique socket names and bounded waits, and cleans up /tmp/ipi_* files.
Reference values come from the ASE calculator on the geometries i-PI wrote, so a unit slip (Bohr/Å, Hartree/eV),
a transposed cell or virial, or a wrong BEC layout shows up as a mismatch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ipi_helpers as h
import numpy as np
import pytest
import torch
from ase.io import read

from lesmd.calculator import LESCalculator
from lesmd.units import BOHR, DIPOLE_EA_TO_AU, HARTREE

WAIT = 90  # s, upper bound on any single process wait


def wait_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = WAIT) -> None:
    """Wait until i-PI's properties file has ``n`` data rows (on failure, show the logs of the run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for ln in path.read_text().splitlines() if ln and not ln.startswith("#")) >= n:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    logs = "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(path.parent.glob("*.log")))
    raise AssertionError(f"{path.name} did not reach {n} rows in {timeout} s (i-PI rc {proc.poll()})\n{logs}")


def assert_ipi_matches_ase(workdir: Path, calc: LESCalculator, nbeads: int = 1, bec: bool = True) -> None:
    """Energies, forces, dipoles (and BECs) i-PI recorded equal the calculator's on the geometries i-PI wrote."""
    potential = h.read_properties(workdir / "sim.out")[:, 4] * HARTREE  # bead average, eV
    energies = []
    for b in range(nbeads):
        frames = read(workdir / f"sim.pos_{b}.extxyz", index=":")
        forces = read(workdir / f"sim.for_{b}.extxyz", index=":")
        dipoles = h.read_extras(workdir / f"sim.dipole_{b}")
        becs = h.read_extras(workdir / f"sim.BEC_{b}") if bec else dipoles
        assert len(frames) == len(forces) == len(dipoles) == len(becs) == len(potential) >= 3
        bead_e = []
        for atoms, fr, dip, zz in zip(frames, forces, dipoles, becs, strict=True):
            atoms.calc = calc
            bead_e.append(atoms.get_potential_energy())
            np.testing.assert_allclose(fr.get_forces(), atoms.get_forces(), atol=1e-6, rtol=0)
            np.testing.assert_allclose(dip[0], atoms.get_dipole_moment() * DIPOLE_EA_TO_AU, atol=1e-7, rtol=0)
            if bec:
                z = calc.get_property("born_effective_charges", atoms)  # [i, α, β]
                np.testing.assert_allclose(zz, z.transpose(0, 2, 1).reshape(-1, 3), atol=1e-7, rtol=0)
        energies.append(bead_e)
    np.testing.assert_allclose(np.mean(energies, axis=0), potential, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["unix", "inet"])
def test_ipi_nvt_energies_forces_dipole_bec_equal_ase(run_dir, mode):
    workdir, procs, names = run_dir
    name, port = h.unique_name(), h.free_port()
    names.append(name)
    address = name if mode == "unix" else "localhost"
    ipi = h.start_ipi(workdir, h.ipi_input(address=address, mode=mode, port=port, steps=8, extras="dipole,BEC"),
                      address=name, mode=mode)
    procs.append(ipi)
    where = ["--unix", name] if mode == "unix" else ["--host", "localhost", "--port", str(port), "--reconnect", "30"]
    client = h.start_client(workdir, workdir / "init.xyz", *where, "--extras", "dipole,BEC", "--timeout", "60")
    procs.append(client)
    assert client.wait(timeout=WAIT) == 0, (workdir / "client.log").read_text()
    assert ipi.wait(timeout=WAIT) == 0
    assert "i-PI sent EXIT after 9 evaluations" in (workdir / "client.log").read_text()
    assert not os.path.exists(f"/tmp/ipi_{name}")
    assert_ipi_matches_ase(workdir, LESCalculator(h.water2_model(), dtype=torch.float64))


@pytest.mark.parametrize("mode", ["unix", "inet"])
def test_ipi_pimd_four_beads_two_clients_match_ase(run_dir, mode):
    workdir, procs, names = run_dir
    name, port = h.unique_name(), h.free_port()
    names.append(name)
    address = name if mode == "unix" else "localhost"
    motion = ('<motion mode="dynamics"><dynamics mode="nvt"><timestep units="femtosecond">0.25</timestep>'
              '<thermostat mode="pile_l"><tau units="femtosecond">50</tau></thermostat></dynamics></motion>')
    steps = 20
    xml = h.ipi_input(address=address, mode=mode, port=port, steps=steps, nbeads=4, motion=motion, extras="dipole")
    # both clients wait for i-PI (--reconnect) before it starts, so neither arrives after a short run has ended
    where = ["--unix", name] if mode == "unix" else ["--host", "localhost", "--port", str(port)]
    clients = [h.start_client(workdir, workdir / "init.xyz", *where, "--reconnect", "30", "--extras", "dipole",
                              name=f"client{k}") for k in range(2)]
    procs.extend(clients)
    procs.insert(0, h.start_ipi(workdir, xml, address=name, mode=mode))
    for k, c in enumerate(clients):
        assert c.wait(timeout=WAIT) == 0, (workdir / f"client{k}.log").read_text()
    assert procs[0].wait(timeout=WAIT) == 0
    counts = [int((workdir / f"client{k}.log").read_text().split("EXIT after ")[1].split()[0]) for k in range(2)]
    # 4 beads × (initial + steps), each evaluated once; how i-PI splits them depends on when the clients connect
    assert sum(counts) == 4 * (steps + 1)
    assert_ipi_matches_ase(workdir, LESCalculator(h.water2_model(), dtype=torch.float64), nbeads=4, bec=False)


def test_client_killed_mid_run_and_restarted_run_completes(run_dir):
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    # i-PI 3.3's consolidated-message path crashes its poll thread on the reset of a client killed with unread
    # data (ConnectionResetError in _recv_forces_bulk) and then hangs: the plain exchange handles it.
    ipi = h.start_ipi(workdir, h.ipi_input(address=name, steps=30, consolidate=False), address=name)
    procs.append(ipi)
    first = h.start_client(workdir, workdir / "init.xyz", "--unix", name, name="first")
    procs.append(first)
    wait_rows(workdir / "sim.out", 5, ipi)
    h.stop(first)
    second = h.start_client(workdir, workdir / "init.xyz", "--unix", name, name="second")
    procs.append(second)
    assert second.wait(timeout=WAIT) == 0, (workdir / "second.log").read_text()
    assert ipi.wait(timeout=WAIT) == 0
    steps = h.read_properties(workdir / "sim.out")[:, 0]
    np.testing.assert_array_equal(steps, np.arange(31))


def test_hung_ipi_times_out_and_killed_ipi_gives_one_line_error(run_dir):
    """Two clients on one i-PI: when i-PI hangs (SIGSTOP) the one with --timeout 3 gives up after ~3 s; when
    i-PI is then killed (SIGKILL, no EXIT message) the other exits at once. Both: exit 1, one line, no traceback."""
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    ipi = h.start_ipi(workdir, h.ipi_input(address=name, steps=100000), address=name)
    procs.append(ipi)
    patient = h.start_client(workdir, workdir / "init.xyz", "--unix", name, "--timeout", "60", name="patient")
    hasty = h.start_client(workdir, workdir / "init.xyz", "--unix", name, "--timeout", "3", name="hasty")
    procs.extend([patient, hasty])
    deadline = time.monotonic() + WAIT
    while "connected" not in (workdir / "hasty.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_rows(workdir / "sim.out", 3, ipi)
    os.killpg(ipi.pid, signal.SIGSTOP)
    start = time.monotonic()
    assert hasty.wait(timeout=30) == 1
    assert 2.5 < time.monotonic() - start < 15
    assert patient.poll() is None  # still waiting within its own timeout
    h.stop(ipi)  # SIGKILL: the socket closes without EXIT; a stale /tmp/ipi_<name> stays behind
    start = time.monotonic()
    assert patient.wait(timeout=30) == 1
    assert time.monotonic() - start < 10
    for log, expected in (("hasty", "no message from i-PI"), ("patient", "without an EXIT message")):
        lines = (workdir / f"{log}.log").read_text().strip().splitlines()
        assert "Traceback" not in "\n".join(lines)
        assert lines[-1].startswith("lesmd serve: error: ") and expected in lines[-1], lines


def test_stale_socket_file_is_explained_not_a_traceback(run_dir):
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(f"/tmp/ipi_{name}")  # what a killed i-PI leaves behind: the file, nobody listening
    stale.close()
    result = subprocess.run(h.client_command(workdir / "init.xyz", "--unix", name), capture_output=True,
                            text=True, timeout=WAIT, env=dict(os.environ, PYTHONPATH=str(h.REPO)))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stale socket file" in lines[0] and f"rm /tmp/ipi_{name}" in lines[0]


def test_reconnect_waits_for_ipi_and_survives_a_restarted_server(run_dir):
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    client = h.start_client(workdir, workdir / "init.xyz", "--unix", name, "--reconnect", "60")
    procs.append(client)
    time.sleep(1.0)  # the client starts first and keeps trying
    first = h.start_ipi(workdir, h.ipi_input(address=name, steps=100000), address=name)
    procs.append(first)
    wait_rows(workdir / "sim.out", 3, first)
    h.stop(first)
    h.remove_socket(name)
    (workdir / "sim.out").unlink()
    second = h.start_ipi(workdir, h.ipi_input(address=name, steps=5), address=name)
    procs.append(second)
    assert second.wait(timeout=WAIT) == 0
    assert client.wait(timeout=WAIT) == 0, (workdir / "client.log").read_text()
    log = (workdir / "client.log").read_text()
    assert "trying to reconnect" in log and "reconnected" in log and "sent EXIT" in log


def test_driver_plugin_with_ipi_py_driver_and_ffdirect_match_ase(run_dir, les_model_file):
    workdir, procs, names = run_dir
    plugin = str(h.REPO / "drivers" / "les.py")
    calc = LESCalculator(les_model_file, dtype=torch.float64)
    # 1) i-PI's own python driver loading drivers/les.py
    name = h.unique_name()
    names.append(name)
    sock_dir = workdir / "socket"
    sock_dir.mkdir()
    (sock_dir / "init.xyz").write_bytes((workdir / "init.xyz").read_bytes())
    ipi = h.start_ipi(sock_dir, h.ipi_input(address=name, steps=4, extras="dipole,BEC"), address=name)
    procs.append(ipi)
    env = dict(os.environ, PYTHONPATH=str(h.REPO), OMP_NUM_THREADS="1")
    params = f"template=init.xyz,model={les_model_file},extras=dipole;BEC;charges,dtype=float64"
    driver = subprocess.Popen([h.PY_DRIVER, "-m", "custom", "-P", plugin, "-u", "-a", name, "-o", params],
                              cwd=sock_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    procs.append(driver)
    out, _ = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, out.decode()
    assert ipi.wait(timeout=WAIT) == 0
    assert_ipi_matches_ase(sock_dir, calc)
    # 2) the same plugin in-process through <ffdirect>
    direct = workdir / "direct"
    direct.mkdir()
    (direct / "init.xyz").write_bytes((workdir / "init.xyz").read_bytes())
    ff = (f'<ffdirect name="les"><pes>custom</pes><pes_path>{plugin}</pes_path><parameters>'
          f"{{template: init.xyz, model: {les_model_file}, extras: dipole;BEC, dtype: float64}}"
          "</parameters></ffdirect>")
    proc = h.start_ipi(direct, h.ipi_input(address="", steps=4, forcefield=ff, extras="dipole,BEC"), mode="direct")
    procs.append(proc)
    assert proc.wait(timeout=WAIT) == 0, (direct / "ipi.log").read_text()[-2000:]
    assert_ipi_matches_ase(direct, calc)


def test_lesmd_serve_command_with_model_file_drives_ipi(run_dir, les_model_file):
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    ipi = h.start_ipi(workdir, h.ipi_input(address=name, steps=3, extras="dipole,charges"), address=name)
    procs.append(ipi)
    cmd = [sys.executable, "-m", "lesmd.cli", "serve", "--model", str(les_model_file), "--template", "init.xyz",
           "--unix", name, "--dtype", "float64", "--threads", "1"]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=WAIT,
                            env=dict(os.environ, PYTHONPATH=str(h.REPO)))
    assert result.returncode == 0, result.stderr
    assert ipi.wait(timeout=WAIT) == 0
    calc = LESCalculator(les_model_file, dtype=torch.float64)
    extras = h.read_extras(workdir / "sim.charges_0")
    frames = read(workdir / "sim.pos_0.extxyz", index=":")
    for atoms, ex in zip(frames, extras, strict=True):
        atoms.calc = calc
        np.testing.assert_allclose(ex[0], atoms.get_charges(), atol=1e-8, rtol=0)
    potential = h.read_properties(workdir / "sim.out")[:, 4] * HARTREE
    np.testing.assert_allclose(potential, [calc.get_potential_energy(a) for a in frames], atol=1e-6, rtol=0)


def test_driven_dynamics_eda_forces_equal_bec_transpose_times_field(run_dir):
    """i-PI's eda-nvt applies F_i = Z*_iᵀ E with the driver's BECs: check its Eforces against the calculator."""
    workdir, procs, names = run_dir
    name = h.unique_name()
    names.append(name)
    amp = np.array([0.01, -0.02, 0.03])  # a.u.
    motion = ('<motion mode="driven_dynamics"><driven_dynamics mode="eda-nvt">'
              '<timestep units="femtosecond">0.25</timestep>'
              '<thermostat mode="langevin"><tau units="femtosecond">50</tau></thermostat>'
              f"<efield><amp>[{amp[0]}, {amp[1]}, {amp[2]}]</amp><freq>0.0</freq><phase>0.0</phase>"
              "<peak>0.0</peak><sigma>inf</sigma></efield>"
              '<bec mode="driver"></bec></driven_dynamics></motion>')
    outputs = '<trajectory filename="eda" stride="1" format="ase"> Eforces </trajectory>'
    xml = h.ipi_input(address=name, steps=3, motion=motion, extras="dipole,BEC", outputs=outputs)
    ipi = h.start_ipi(workdir, xml, address=name)
    procs.append(ipi)
    client = h.start_client(workdir, workdir / "init.xyz", "--unix", name, "--extras", "dipole,BEC")
    procs.append(client)
    assert client.wait(timeout=WAIT) == 0, (workdir / "client.log").read_text()
    assert ipi.wait(timeout=WAIT) == 0, (workdir / "ipi.log").read_text()[-2000:]
    calc = LESCalculator(h.water2_model(), dtype=torch.float64)
    frames = read(workdir / "sim.pos_0.extxyz", index=":")
    eda = read(workdir / "sim.eda_0.extxyz", index=":")
    assert len(eda) >= 3
    for atoms, ef in zip(frames, eda, strict=True):
        z = calc.get_property("born_effective_charges", atoms)
        expected = np.einsum("iab,a->ib", z, amp * HARTREE / BOHR)  # Z*ᵀE in eV/Å (E in V/Å)
        got = next(v for k, v in ef.arrays.items() if k.lower() not in ("numbers", "positions"))
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("batch", [4, 8])
def test_ffdirect_batched_pimd_equals_the_unbatched_run_step_by_step(run_dir, les_model_file, batch):
    """8-bead PIMD through drivers/les.py in <ffdirect>: i-PI hands the beads over as lists (one model call per
    batch, lesmd.ipi.IPIDriver.compute_batch); energies and forces equal the unbatched run's at every step."""
    workdir, procs, names = run_dir
    plugin = str(h.REPO / "drivers" / "les.py")
    motion = ('<motion mode="dynamics"><dynamics mode="nvt"><timestep units="femtosecond">0.25</timestep>'
              '<thermostat mode="pile_l"><tau units="femtosecond">50</tau></thermostat></dynamics></motion>')
    runs = {}
    for size in (1, batch):
        run = workdir / f"batch{size}"
        run.mkdir()
        (run / "init.xyz").write_bytes((workdir / "init.xyz").read_bytes())
        ff = (f'<ffdirect name="les" threaded="false"><pes>custom</pes><pes_path>{plugin}</pes_path><parameters>'
              f"{{template: init.xyz, model: {les_model_file}, extras: none, dtype: float64}}"
              f"</parameters><batch_size>{size}</batch_size></ffdirect>")
        xml = h.ipi_input(address="", steps=5, nbeads=8, forcefield=ff, extras="", motion=motion)
        proc = h.start_ipi(run, xml, mode="direct")
        procs.append(proc)
        assert proc.wait(timeout=WAIT) == 0, (run / "ipi.log").read_text()[-2000:]
        runs[size] = run
    for bead in range(8):
        for name in (f"sim.for_{bead}.extxyz", f"sim.pos_{bead}.extxyz"):
            a = read(runs[1] / name, index=":")
            b = read(runs[batch] / name, index=":")
            assert len(a) == len(b) == 6
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(y.positions, x.positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(h.read_properties(runs[batch] / "sim.out"), h.read_properties(runs[1] / "sim.out"),
                               rtol=1e-10, atol=1e-12)  # fmt: skip
