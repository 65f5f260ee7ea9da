"""Per-step overhead of driving an LES model from i-PI: socket client vs <ffdirect> vs a direct call.

System: 64 H2O (192 atoms) periodic box, i-PI NVE at 10 K with 0.05 fs steps (the atoms barely move, so
an untrained model cannot blow up; the overhead does not depend on the dynamics).
For every MD step we record when the model
evaluation started and ended; the overhead of a step is (interval between consecutive evaluation starts) minus
(that step's evaluation time) = everything that is not the model: i-PI's integrator and outputs, the socket
exchange and unit conversion. Medians over ≥ 200 steps. The model call itself is timed directly in this process
as the baseline. Target: socket overhead ≤ 1 ms per step.

    PYTHONPATH=. python benchmarks/bench_socket.py [--steps 250] [--model FILE]

(default model: the embedded one if present, else a small untrained LES model — the overhead does not depend on it)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lesmd.ipi import IPIClient, IPIDriver, build_potential  # noqa: E402
from lesmd.structures import water_box  # noqa: E402
from lesmd.units import BOHR  # noqa: E402

XML = """<simulation verbosity="low" safe_stride="100000">
  <output prefix="sim"><properties stride="50" filename="out"> [ step, potential ] </properties></output>
  <total_steps>{steps}</total_steps>
  <prng><seed>1</seed></prng>
  {forcefield}
  <system>
    <initialize nbeads="1"><file mode="ase"> init.xyz </file>
      <velocities mode="thermal" units="kelvin"> 10 </velocities></initialize>
    <forces><force forcefield="les"/></forces>
    <motion mode="dynamics"><dynamics mode="nve"><timestep units="femtosecond">0.05</timestep></dynamics></motion>
    <ensemble><temperature units="kelvin">300</temperature></ensemble>
  </system>
</simulation>
"""

TIMED_PES = """import sys, time
sys.path.insert(0, {drivers!r})
from les import LESDriver
__DRIVER_NAME__ = "lesbench"
__DRIVER_CLASS__ = "TimedLESDriver"
class TimedLESDriver(LESDriver):
    def compute_structure(self, cell, pos):
        t0 = time.perf_counter()
        out = super().compute_structure(cell, pos)
        with open({log!r}, "a") as f:
            f.write(f"{{t0}} {{time.perf_counter()}}\\n")
        return out
"""


class TimedDriver:
    """Wraps an IPIDriver and records (start, end) of each evaluation."""

    def __init__(self, driver: IPIDriver) -> None:
        self.driver, self.times = driver, []

    def compute_structure(self, cell, pos):
        t0 = time.perf_counter()
        out = self.driver.compute_structure(cell, pos)
        self.times.append((t0, time.perf_counter()))
        return out


def step_overheads(times: list[tuple[float, float]], skip: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(overhead per step, evaluation time per step) in seconds, dropping ``skip`` warm-up steps."""
    t = np.array(times)[skip:]
    evaluation = t[:-1, 1] - t[:-1, 0]
    interval = np.diff(t[:, 0])
    return interval - evaluation, evaluation


def model_arg(path: str | None) -> str | None:
    from lesmd.models.io import default_model_path, save_model
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    if path is not None or default_model_path().is_file():
        return path
    torch.manual_seed(0)
    model = LESModel(MomentNetwork([1, 8], cutoff=4.0), charge_hidden=(16,))
    out = Path(tempfile.mkdtemp()) / "untrained.pt"
    save_model(model, out)
    print(f"# no embedded default model yet: using an untrained LES model ({out})")
    return str(out)


def run_ipi(workdir: Path, forcefield: str, steps: int) -> subprocess.Popen:
    (workdir / "input.xml").write_text(XML.format(steps=steps, forcefield=forcefield))
    return subprocess.Popen([str(Path(sys.executable).parent / "i-pi"), "input.xml"], cwd=workdir,
                            stdout=open(workdir / "ipi.log", "w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = model_arg(args.model)
    atoms = water_box(64, seed=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench_socket_"))
    atoms.write(workdir / "init.xyz", format="extxyz")

    # baseline: the model call in this process
    potential = build_potential(model)
    driver = IPIDriver(potential, atoms.numbers, extras="dipole,charges")
    rng = np.random.default_rng(0)
    direct = []
    for k in range(60):
        pos = atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
        t0 = time.perf_counter()
        potential.compute(atoms.numbers, pos, atoms.cell.array, atoms.pbc, driver.properties)
        if k >= 10:
            direct.append(time.perf_counter() - t0)
    direct_ms = 1e3 * np.median(direct)
    # the adapter's own cost: unit conversion + extras JSON around the same call
    cell_au, adapter = atoms.cell.array.T / BOHR, []
    for k in range(40):
        pos_au = (atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)) / BOHR
        t0 = time.perf_counter()
        driver.compute_structure(cell_au, pos_au)
        t1 = time.perf_counter()
        potential.compute(atoms.numbers, pos_au * BOHR, atoms.cell.array, atoms.pbc, driver.properties)
        if k >= 5:
            adapter.append((t1 - t0) - (time.perf_counter() - t1))

    # socket: i-PI subprocess, lesmd client in this process
    name = f"bench{uuid.uuid4().hex[:8]}"
    ff = f'<ffsocket name="les" mode="unix"><address>{name}</address><latency>1e-4</latency></ffsocket>'
    proc = run_ipi(workdir, ff, args.steps)
    timed = TimedDriver(driver)
    try:
        IPIClient(timed, unix=name, reconnect=60, timeout=120, log=None).run()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            Path(f"/tmp/ipi_{name}").unlink(missing_ok=True)
    sock_over, sock_eval = step_overheads(timed.times)

    # ffdirect: the same plugin inside i-PI
    log = workdir / "ffdirect_times.txt"
    pes = workdir / "timed_les.py"
    pes.write_text(TIMED_PES.format(drivers=str(REPO / "drivers"), log=str(log)))
    model_par = f", model: {model}" if model else ""
    ff = (f'<ffdirect name="les"><pes>custom</pes><pes_path>{pes}</pes_path>'
          f"<parameters>{{template: init.xyz, extras: dipole;charges{model_par}}}</parameters></ffdirect>")
    proc = run_ipi(workdir, ff, args.steps)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    times = [tuple(map(float, ln.split())) for ln in log.read_text().splitlines()]
    direct_over, direct_eval = step_overheads(times)

    print(f"# 192 atoms, {len(sock_over)} steps each (medians); i-PI NVE; torch threads 1")
    print(f"direct model call            : {direct_ms:8.2f} ms")
    print(f"adapter (units + JSON) cost  : {1e3 * np.median(adapter):8.3f} ms (difference of two noisy timings)")
    print(f"socket: evaluation in client : {1e3 * np.median(sock_eval):8.2f} ms")
    print(f"socket: overhead per step    : {1e3 * np.median(sock_over):8.3f} ms "
          f"(p90 {1e3 * np.percentile(sock_over, 90):.3f} ms)")
    print(f"ffdirect: evaluation in i-PI : {1e3 * np.median(direct_eval):8.2f} ms")
    print(f"ffdirect: overhead per step  : {1e3 * np.median(direct_over):8.3f} ms "
          f"(p90 {1e3 * np.percentile(direct_over, 90):.3f} ms)")
    print(f"socket minus ffdirect        : {1e3 * (np.median(sock_over) - np.median(direct_over)):8.3f} ms "
          "(transport share; the rest is i-PI's own step)")
    ratio = (direct_ms + 1e3 * np.median(sock_over)) / direct_ms
    print(f"N=192 direct={direct_ms:.2f}ms socket_overhead={1e3 * np.median(sock_over):.3f}ms "
          f"ffdirect_overhead={1e3 * np.median(direct_over):.3f}ms socket_step/direct={ratio:.3f}x "
          f"target<=1ms:{'PASS' if np.median(sock_over) <= 1e-3 else 'FAIL'}")


if __name__ == "__main__":
    main()
