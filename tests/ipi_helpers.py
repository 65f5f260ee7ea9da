"""Helpers for the i-PI tests: a small analytic water model, i-PI input files, and process handling.

Run as a script, this file is an i-PI client serving the small model through the real `lesmd serve` code path
(`lesmd.ipi.run_cli`): ``python tests/ipi_helpers.py --template init.xyz --unix NAME ...``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from ase import Atoms

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
IPI = str(VENV_BIN / "i-pi")
PY_DRIVER = str(VENV_BIN / "i-pi-py_driver")

#: two rigid-ish water molecules (Å) in a 7 Å periodic box
WATER2 = np.array([
    [1.0, 1.0, 1.0], [1.96, 1.0, 1.0], [0.76, 1.93, 1.0],
    [4.0, 3.5, 3.0], [4.96, 3.5, 3.0], [3.76, 4.43, 3.0],
])
CHARGES2 = [-0.8, 0.4, 0.4, -0.8, 0.4, 0.4]
BONDS2 = [(0, 1, 40.0, 0.96), (0, 2, 40.0, 0.96), (1, 2, 10.0, 1.52),
          (3, 4, 40.0, 0.96), (3, 5, 40.0, 0.96), (4, 5, 10.0, 1.52)]
BOX2 = 7.0


def water2_atoms() -> Atoms:
    """Two water molecules in a 7 Å cubic periodic cell."""
    return Atoms("OH2OH2", positions=WATER2, cell=[BOX2] * 3, pbc=True)


def water2_model():
    """Fixed charges (O −0.8 e, H +0.4 e) with Gaussian-smeared Coulomb and harmonic O–H and H–H springs."""
    from lesmd.models.analytic import FixedChargeModel

    return FixedChargeModel(CHARGES2, BONDS2, coulomb=True)


def water2_potential():
    """:class:`~lesmd.potential.LESPotential` of :func:`water2_model` in float64."""
    import torch

    from lesmd.potential import LESPotential

    return LESPotential(water2_model(), dtype=torch.float64)


def unique_name() -> str:
    """A unique unix-socket name for one test."""
    return f"lesmdtest{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def write_init(path: Path, atoms: Atoms) -> None:
    """i-PI init file in extended xyz (positions Å, cell in the Lattice key); also readable as a template."""
    from ase.io import write

    write(path, atoms, format="extxyz")


def ipi_input(*, address: str, mode: str = "unix", port: int = 0, steps: int = 10, nbeads: int = 1,
              motion: str | None = None, extras: str = "dipole,charges", forcefield: str | None = None,
              ensemble: str = "", outputs: str = "", ffsocket_timeout: float = 10.0, consolidate: bool = True) -> str:
    """An i-PI XML input: NVT (Langevin) by default, full-precision properties, positions, forces (eV/Å) and one
    extras trajectory per name in ``extras`` (files sim.<name>_<bead>)."""
    if forcefield is None:
        where = f"<address>{address}</address>" + (f"<port>{port}</port>" if mode == "inet" else "")
        forcefield = (f'<ffsocket name="les" mode="{mode}" pbc="false"> {where} <latency>1e-4</latency>'
                      f"<timeout>{ffsocket_timeout}</timeout>"
                      f"<consolidate_messages>{consolidate}</consolidate_messages></ffsocket>")
    if motion is None:
        motion = ('<motion mode="dynamics"><dynamics mode="nvt"><timestep units="femtosecond">0.5</timestep>'
                  '<thermostat mode="langevin"><tau units="femtosecond">50</tau></thermostat></dynamics></motion>')
    extras_out = "\n    ".join(f'<trajectory filename="{e}" stride="1" extra_type="{e}"> extras </trajectory>'
                                   for e in extras.split(",") if e)
    return f"""<simulation verbosity="low" floatformat="%.17e" safe_stride="100000">
  <output prefix="sim">
    <properties stride="1" filename="out"> [ step, time{{femtosecond}}, conserved, temperature{{kelvin}},
      potential ] </properties>
    <trajectory filename="pos" stride="1" format="ase"> positions </trajectory>
    <trajectory filename="for" stride="1" format="ase"> forces </trajectory>
    {extras_out}
    {outputs}
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  {forcefield}
  <system>
    <initialize nbeads="{nbeads}">
      <file mode="ase"> init.xyz </file>
      <velocities mode="thermal" units="kelvin"> 300 </velocities>
    </initialize>
    <forces><force forcefield="les"/></forces>
    {motion}
    <ensemble><temperature units="kelvin">300</temperature>{ensemble}</ensemble>
  </system>
</simulation>
"""


def start_ipi(workdir: Path, xml: str, address: str | None = None, mode: str = "unix") -> subprocess.Popen:
    """Write input.xml and start i-PI in ``workdir``; for unix sockets, wait until the socket file exists."""
    (workdir / "input.xml").write_text(xml)
    proc = subprocess.Popen([IPI, "input.xml"], cwd=workdir, stdout=open(workdir / "ipi.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"i-PI exited early:\n{(workdir / 'ipi.log').read_text()[-3000:]}")
        if mode == "unix" and address and os.path.exists(f"/tmp/ipi_{address}"):
            return proc
        if mode != "unix":  # inet: clients wait with --reconnect; direct: no socket
            return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError("i-PI did not open its socket within 30 s")


def client_command(template: Path, *args: str) -> list[str]:
    """Command line of a `lesmd serve` client serving :func:`water2_model`."""
    return [sys.executable, str(Path(__file__).resolve()), "--template", str(template), *args]


def start_client(workdir: Path, template: Path, *args: str, name: str = "client") -> subprocess.Popen:
    """Start a client (stdout/stderr to ``workdir/<name>.log``)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.Popen(client_command(template, *args), cwd=workdir, env=env,
                            stdout=open(workdir / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill a process we started (and its session) if it still runs."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def remove_socket(address: str) -> None:
    """Remove /tmp/ipi_<address> if a killed i-PI left it."""
    try:
        os.unlink(f"/tmp/ipi_{address}")
    except FileNotFoundError:
        pass


def read_properties(path: Path) -> np.ndarray:
    """i-PI properties file → (n_rows, n_columns) floats."""
    return np.loadtxt(path, comments="#", ndmin=2)


def read_extras(path: Path) -> list[np.ndarray]:
    """i-PI extras trajectory → one array per step (rows as printed)."""
    frames, rows = [], []
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            if rows:
                frames.append(np.array(rows))
            rows = []
        elif line.strip():
            rows.append([float(x) for x in line.split()])
    if rows:
        frames.append(np.array(rows))
    return frames


def main(argv: list[str] | None = None) -> int:
    """`lesmd serve` over :func:`water2_potential` (same argument parsing and client as the real command)."""
    import argparse

    import torch

    torch.set_num_threads(1)
    from lesmd import ipi

    parser = argparse.ArgumentParser()
    ipi.add_cli_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return ipi.run_cli(args, potential=water2_potential())
    except (ValueError, ConnectionError, TimeoutError) as err:
        print(f"lesmd serve: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
