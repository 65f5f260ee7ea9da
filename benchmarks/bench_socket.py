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
    frozen = None
    def compute_structure(self, cell, pos):
        t0 = time.perf_counter()
        if self.frozen is not None:
            out = self.frozen
        else:
            out = super().compute_structure(cell, pos)
            if {freeze!r}:
                self.frozen = out
        with open({log!r}, "a") as f:
            f.write(f"{{t0}} {{time.perf_counter()}}\\n")
        return out
"""


class FrozenPotential:
    """Returns the first result it computed for every later call: a model that costs nothing."""

    def __init__(self, potential) -> None:
        self.potential, self.result = potential, None

    def compute(self, numbers, positions, cell, pbc, properties):
        if self.result is None:
            self.result = self.potential.compute(numbers, positions, cell, pbc, properties)
        return self.result


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


def socket_run(workdir: Path, driver: IPIDriver, steps: int, latency: float) -> tuple[np.ndarray, np.ndarray]:
    """i-PI subprocess + lesmd client in this process → (overhead, evaluation) per step, s."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    ff = f'<ffsocket name="les" mode="unix"><address>{name}</address><latency>{latency}</latency></ffsocket>'
    proc = run_ipi(workdir, ff, steps)
    timed = TimedDriver(driver)
    try:
        IPIClient(timed, unix=name, reconnect=60, timeout=120, log=None).run()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            Path(f"/tmp/ipi_{name}").unlink(missing_ok=True)
    return step_overheads(timed.times)


def ffdirect_run(workdir: Path, model: str | None, steps: int, freeze: bool) -> tuple[np.ndarray, np.ndarray]:
    """drivers/les.py inside i-PI (<ffdirect>) → (overhead, evaluation) per step, s."""
    log = workdir / f"ffdirect_times_{freeze}.txt"
    pes = workdir / f"timed_les_{freeze}.py"
    pes.write_text(TIMED_PES.format(drivers=str(REPO / "drivers"), log=str(log), freeze=freeze))
    model_par = f", model: {model}" if model else ""
    ff = (f'<ffdirect name="les"><pes>custom</pes><pes_path>{pes}</pes_path>'
          f"<parameters>{{template: init.xyz, extras: dipole;charges{model_par}}}</parameters></ffdirect>")
    proc = run_ipi(workdir, ff, steps)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return step_overheads([tuple(map(float, ln.split())) for ln in log.read_text().splitlines()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--model", default=None)
    parser.add_argument("--latency", type=float, default=1e-4, help="i-PI <latency> of the socket poll loop, s")
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
    for k in range(40):
        pos = atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
        t0 = time.perf_counter()
        potential.compute(atoms.numbers, pos, atoms.cell.array, atoms.pbc, driver.properties)
        if k >= 5:
            direct.append(time.perf_counter() - t0)
    direct_ms = 1e3 * np.median(direct)
    # the adapter's own cost (unit conversion + extras JSON) around a model that costs nothing
    frozen = IPIDriver(FrozenPotential(potential), atoms.numbers, extras="dipole,charges")
    adapter = []
    for _ in range(200):
        t0 = time.perf_counter()
        frozen.compute_structure(atoms.cell.array.T / BOHR, atoms.positions / BOHR)
        adapter.append(time.perf_counter() - t0)
    adapter_ms = 1e3 * np.median(adapter[1:])

    sock_over, sock_eval = socket_run(workdir, driver, args.steps, args.latency)
    free_sock_over, _ = socket_run(workdir, frozen, args.steps, args.latency)
    direct_over, direct_eval = ffdirect_run(workdir, model, args.steps, freeze=False)
    free_direct_over, _ = ffdirect_run(workdir, model, args.steps, freeze=True)

    def ms(x):
        return 1e3 * np.median(x)

    print(f"# 192 atoms, {len(sock_over)} steps per run (medians); i-PI NVE; socket latency {args.latency:g} s; "
          "torch threads 1")
    print(f"direct model call (this process)      : {direct_ms:8.2f} ms")
    print(f"adapter: units + extras JSON          : {adapter_ms:8.3f} ms")
    print(f"socket, real model: evaluation        : {ms(sock_eval):8.2f} ms   overhead/step {ms(sock_over):7.3f} ms")
    print(f"ffdirect, real model: evaluation      : {ms(direct_eval):8.2f} ms   "
          f"overhead/step {ms(direct_over):7.3f} ms")
    print(f"socket, zero-cost model: overhead     : {ms(free_sock_over):8.3f} ms (p90 "
          f"{1e3 * np.percentile(free_sock_over, 90):.3f} ms)")
    print(f"ffdirect, zero-cost model: overhead   : {ms(free_direct_over):8.3f} ms (p90 "
          f"{1e3 * np.percentile(free_direct_over, 90):.3f} ms)")
    transport = ms(free_sock_over) - ms(free_direct_over)
    print(f"socket transport (socket − ffdirect)  : {transport:8.3f} ms; the rest is i-PI's own MD step")
    print(f"N=192 direct={direct_ms:.2f}ms socket_overhead={ms(sock_over):.3f}ms "
          f"(zero-cost {ms(free_sock_over):.3f}ms) ffdirect_overhead={ms(direct_over):.3f}ms "
          f"(zero-cost {ms(free_direct_over):.3f}ms) transport={transport:.3f}ms "
          f"socket_step/direct={(direct_ms + ms(sock_over)) / direct_ms:.3f}x "
          f"target_socket_overhead<=1ms:{'PASS' if ms(sock_over) <= 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
