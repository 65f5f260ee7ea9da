"""Per-step overhead of driving an LES model from i-PI: the socket client vs <ffdirect> vs a direct call.

System: 64 H2O (192 atoms), periodic, i-PI NVE at 10 K with 0.05 fs steps (the atoms barely move; the overhead
does not depend on the dynamics). For every MD step the client records when the evaluation started and ended; the
overhead of a step is (interval between consecutive evaluation starts) − (that step's evaluation time) = all
that is not the model: i-PI's own MD step (integrator, outputs), i-PI's socket machinery, the transfer, our
message handling and unit conversion. Per run: the median over ≥ 200 steps; each configuration is run
``--repeats`` times, interleaved, and the median (min–max) of the run medians is printed. Target: socket
overhead ≤ 1 ms per step.

Most rows use a zero-cost model (the first result, frozen), so the overhead is not buried in the model's
±ms noise. The real-model rows show more overhead (2.2 ms socket, 1.45 ms ffdirect, against 1.4 and 0.7 ms):
a dummy model that sleeps or spins for 30 ms instead shows the same growth (2.5-2.6 ms), so it is not the
model's work or the adapter: i-PI's Python step runs slower after a long wait (cold caches, idle CPUs; timestamps
inside i-PI around a 30 ms spinning model: every phase about twice as long, its MD step 1.2 ms).

Rows:
- ``ffdirect``: i-PI evaluates ``drivers/les.py`` in-process (no socket): i-PI's own MD step plus our adapter.
- ``socket``: ``lesmd serve``'s client (``lesmd.ipi.IPIClient``) in this process, i-PI in a subprocess.
- ``minimal client``: a client that answers every request with a prepared reply and does nothing else: the
  floor set by i-PI (its MD step and socket machinery) and the OS, which no client can go below.
- ``i-pi-py_driver -m dummy``: i-PI's own reference Python client with its dummy PES (zero forces), the
  external baseline (timed through a subclass of the dummy PES that only records timestamps).
- ``transport`` = socket − ffdirect with the same extras: what the socket path adds over in-process evaluation.

i-PI settings (the ``<ffsocket>`` a performance-minded user writes; ``--sweep`` shows what each changes):
- ``pbc="false"``: i-PI sends positions as they are instead of folding them into the cell every step (the
  model applies the periodic boundaries itself; unwrapped positions also keep the dipole continuous, which is
  why ``inputs/`` use it). Saves i-PI's main thread the folding (``Cell.array_pbc``: 23 µs for 192 atoms here),
  which is within the run-to-run noise of the totals.
- ``<latency>1e-4</latency>`` (i-PI's default): how long i-PI's poll thread sleeps between looks at the
  request queue. Each request waits up to that long before it is sent, and each wake-up of the poll thread
  competes with i-PI's main thread for the GIL while it integrates (timestamps inside i-PI: its MD step took
  0.70-0.91 ms with 1e-5, 0.46-0.70 ms with 1e-4, 0.44-0.50 ms with 2e-4 and 1e-3; the wait before sending
  0.06, 0.08-0.13, 0.07-0.12 and 0.5-0.6 ms). 1e-3 costs 0.25-0.5 ms per step and 1e-5 is no faster; 2e-4
  was between 0.3 ms faster and 0.2 ms slower than 1e-4 depending on the sitting (five sittings, 3-5 runs each):
  no robust gain, so the default stays.
- ``consolidate_messages`` stays on (i-PI 3.x default: POSDATA and GETFORCE in one write, replies collected on
  the poll thread); ``timeout`` stays 0 (no per-step timeout bookkeeping); output strides 50.
- Extras: every number in the extras JSON is formatted by us and parsed by i-PI each step; the rows with no
  extras (``lesmd serve --extras none``) show what a run that needs no dipole/charges saves.

    PYTHONPATH=. python benchmarks/bench_socket.py [--steps 250] [--repeats 3] [--sweep] [--no-real-model]

(default model: the embedded one if present, else a small untrained LES model — the overhead does not depend on
it)
"""

from __future__ import annotations

import argparse
import os
import socket
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

#: <ffsocket> settings: the recommended ones, i-PI's defaults, and one-at-a-time variations for --sweep
SETTINGS = {
    "recommended (pbc=false, latency 1e-4)": 'pbc="false"><latency>1e-4</latency>',
    "i-PI defaults (pbc=true, latency 1e-4)": ">",
    "pbc=false, latency 2e-4": 'pbc="false"><latency>2e-4</latency>',
    "pbc=false, latency 1e-5": 'pbc="false"><latency>1e-5</latency>',
    "pbc=false, latency 1e-3": 'pbc="false"><latency>1e-3</latency>',
}
RECOMMENDED = next(iter(SETTINGS))

# PES plugins that record (start, end) of each evaluation; lines are flushed every 50 calls (i-PI ends with
# os._exit, so the last few lines may be lost: they do not matter)
TIMED_PES = """import sys, time
sys.path.insert(0, {drivers!r})
{imports}
__DRIVER_NAME__ = "timed"
__DRIVER_CLASS__ = "Timed"
_log = open({log!r}, "w")
class _Frozen:
    def __init__(self, potential):
        self.potential, self.result, self.dtype = potential, None, getattr(potential, "dtype", None)
    def compute(self, *args):
        if self.result is None:
            self.result = self.potential.compute(*args)
        return self.result
class Timed({base}):
    k = 0
    def check_parameters(self):
        super().check_parameters()
        if {freeze!r}:
            self.driver.potential = _Frozen(self.driver.potential)
    def compute_structure(self, cell, pos):
        t0 = time.perf_counter()
        out = super().compute_structure(cell, pos)
        _log.write(f"{{t0}} {{time.perf_counter()}}\\n")
        Timed.k += 1
        if Timed.k % 50 == 0:
            _log.flush()
        return out
"""
PES_BASES = {"dummy": ("from ipi.pes.dummy import Dummy_driver", "Dummy_driver"),
             "les": ("from les import LESDriver", "LESDriver")}


class FrozenPotential:
    """Returns the first result it computed for every later call: a model that costs nothing (same dtype, so
    the adapter formats the extras exactly as for the real model)."""

    def __init__(self, potential) -> None:
        self.potential, self.result = potential, None
        self.dtype = getattr(potential, "dtype", None)

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


def minimal_client(name: str, nat: int, times: list, wait: float = 60.0) -> None:
    """The least a client can do: one recv per message burst, a prepared FORCEREADY reply, no computation."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + wait
    while True:
        try:
            sock.connect(f"/tmp/ipi_{name}")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    reply = (b"FORCEREADY  " + np.float64(0).tobytes() + np.int32(nat).tobytes() + bytes(24 * nat + 72)
             + np.int32(0).tobytes())
    state, pending = b"NEEDINIT    ", b""
    buf = bytearray(1 << 16)

    def take(n: int) -> bytes:
        nonlocal pending
        while len(pending) < n:
            got = sock.recv_into(buf)
            if got == 0:
                raise ConnectionError("i-PI closed the socket")
            pending += buf[:got]
        out, pending = pending[:n], pending[n:]
        return out

    with sock:
        while (msg := take(12)) != b"EXIT        ":
            if msg == b"STATUS      ":
                sock.sendall(state)
            elif msg == b"INIT        ":
                take(int(np.frombuffer(take(8), np.int32)[1]))
                state = b"READY       "
            elif msg == b"POSDATA     ":
                t0 = time.perf_counter()
                take(148 + 24 * nat)
                times.append((t0, time.perf_counter()))
                state = b"HAVEDATA    "
            elif msg == b"GETFORCE    ":
                sock.sendall(reply)
                state = b"READY       "


def step_overheads(times, skip: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(overhead per step, evaluation time per step) in seconds, dropping ``skip`` warm-up steps."""
    t = np.array(times, dtype=float)[skip:]
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


class Bench:
    """Runs i-PI with one force field and one client; returns (overhead, evaluation) per step."""

    def __init__(self, workdir: Path, atoms, model: str | None, steps: int) -> None:
        self.workdir, self.atoms, self.model, self.steps = workdir, atoms, model, steps
        self.env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        self.runs = 0

    def _ipi(self, forcefield: str) -> subprocess.Popen:
        self.runs += 1
        (self.workdir / "input.xml").write_text(XML.format(steps=self.steps, forcefield=forcefield))
        return subprocess.Popen([str(Path(sys.executable).parent / "i-pi"), "input.xml"], cwd=self.workdir,
                                stdout=open(self.workdir / f"ipi{self.runs}.log", "w"), stderr=subprocess.STDOUT,
                                env=self.env)

    def _pes(self, base: str, freeze: bool) -> tuple[Path, Path]:
        log = self.workdir / f"times{self.runs + 1}.txt"
        pes = self.workdir / f"timed{self.runs + 1}.py"
        imports, cls = PES_BASES[base]
        pes.write_text(TIMED_PES.format(drivers=str(REPO / "drivers"), log=str(log), imports=imports, base=cls,
                                        freeze=freeze))
        return pes, log

    @staticmethod
    def _read(log: Path) -> list[tuple[float, float]]:
        return [tuple(map(float, ln.split())) for ln in log.read_text().splitlines() if len(ln.split()) == 2]

    def socket(self, client: str, setting: str = RECOMMENDED, driver: IPIDriver | None = None):
        """``client``: "lesmd" (``driver`` served by IPIClient), "minimal" or "py_driver"."""
        name = f"bench{uuid.uuid4().hex[:8]}"
        proc = self._ipi(f'<ffsocket name="les" mode="unix" {SETTINGS[setting]}<address>{name}</address>'
                         "</ffsocket>")
        try:
            if client == "lesmd":
                timed = TimedDriver(driver)
                IPIClient(timed, unix=name, reconnect=60, timeout=120, log=None).run()
                times = timed.times
            elif client == "minimal":
                times = []
                minimal_client(name, len(self.atoms), times)
            else:
                pes, log = self._pes("dummy", False)
                deadline = time.monotonic() + 60  # i-PI's driver does not wait for the server
                while not Path(f"/tmp/ipi_{name}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                subprocess.run([str(Path(sys.executable).parent / "i-pi-py_driver"), "-m", "custom", "-P",
                                str(pes), "-u", "-a", name], cwd=self.workdir, env=self.env, check=True,
                               stdout=subprocess.DEVNULL, timeout=300)
                times = self._read(log)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                Path(f"/tmp/ipi_{name}").unlink(missing_ok=True)
        return step_overheads(times)

    def ffdirect(self, extras: str, freeze: bool = True):
        """drivers/les.py inside i-PI (no socket); ``freeze``: the zero-cost model."""
        pes, log = self._pes("les", freeze)
        model = f", model: {self.model}" if self.model else ""
        proc = self._ipi(f'<ffdirect name="les"><pes>custom</pes><pes_path>{pes}</pes_path>'
                         f"<parameters>{{template: init.xyz, extras: {extras or 'none'}{model}}}</parameters>"
                         "</ffdirect>")
        try:
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
        return step_overheads(self._read(log))


def ms(x) -> float:
    return 1e3 * float(np.median(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (interleaved)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--sweep", action="store_true", help="also vary the <ffsocket> settings one at a time")
    parser.add_argument("--no-real-model", action="store_true", help="skip the two runs with the real model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = model_arg(args.model)
    atoms = water_box(64, seed=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench_socket_"))
    atoms.write(workdir / "init.xyz", format="extxyz")
    bench = Bench(workdir, atoms, model, args.steps)

    # baseline: the model call in this process
    potential = build_potential(model)
    full = IPIDriver(potential, atoms.numbers)  # default extras: dipole, charges
    rng = np.random.default_rng(0)
    direct = []
    for k in range(40):
        pos = atoms.positions + rng.normal(scale=0.01, size=atoms.positions.shape)
        t0 = time.perf_counter()
        potential.compute(atoms.numbers, pos, atoms.cell.array, atoms.pbc, full.properties)
        if k >= 5:
            direct.append(time.perf_counter() - t0)
    direct_ms = ms(direct)
    frozen = {extras: IPIDriver(FrozenPotential(potential), atoms.numbers, extras=extras)
              for extras in ("dipole,charges", "")}
    adapter = {}
    for extras, drv in frozen.items():  # the adapter's own cost (units + extras JSON) around a free model
        times = []
        for _ in range(300):
            t0 = time.perf_counter()
            drv.compute_structure(atoms.cell.array.T / BOHR, atoms.positions / BOHR)
            times.append(time.perf_counter() - t0)
        adapter[extras] = ms(times[1:])

    configs = {
        "ffdirect, no extras": lambda: bench.ffdirect(""),
        "socket (lesmd), no extras": lambda: bench.socket("lesmd", driver=frozen[""]),
        "ffdirect, extras dipole,charges": lambda: bench.ffdirect("dipole;charges"),
        "socket (lesmd), extras dipole,charges": lambda: bench.socket("lesmd", driver=frozen["dipole,charges"]),
        "socket, minimal client (floor)": lambda: bench.socket("minimal"),
        "socket, i-pi-py_driver -m dummy": lambda: bench.socket("py_driver"),
    }
    if args.sweep:
        for setting in list(SETTINGS)[1:]:
            configs[f"socket (lesmd), no extras, {setting}"] = (
                lambda s=setting: bench.socket("lesmd", s, driver=frozen[""]))
            configs[f"socket, minimal client, {setting}"] = lambda s=setting: bench.socket("minimal", s)
    results: dict[str, list[float]] = {key: [] for key in configs}
    for _ in range(args.repeats):
        for key, run in configs.items():
            results[key].append(ms(run()[0]))
    real = {}
    if not args.no_real_model:
        real["socket"] = bench.socket("lesmd", driver=full)
        real["ffdirect"] = bench.ffdirect("dipole;charges", freeze=False)

    def row(key: str) -> float:
        return float(np.median(results[key]))

    print(f"# 192 atoms, i-PI NVE, {args.steps} steps per run, median per run; median (min-max) over "
          f"{args.repeats} interleaved runs; torch threads 1; i-PI <ffsocket>: {RECOMMENDED} unless named")
    print(f"direct model call (this process)                 : {direct_ms:8.2f} ms")
    for extras, value in adapter.items():
        print(f"adapter (units + extras JSON), extras {extras or 'none':14s}: {value:8.3f} ms")
    print("zero-cost model, overhead per step:")
    for key, values in results.items():
        print(f"  {key:58s}: {row(key):6.3f} ms ({min(values):.3f}-{max(values):.3f})")
    for extras in ("no extras", "extras dipole,charges"):
        print(f"  transport (socket - ffdirect), {extras:22s}: "
              f"{row(f'socket (lesmd), {extras}') - row(f'ffdirect, {extras}'):6.3f} ms")
    if real:
        for key, (over, evaluation) in real.items():
            print(f"real model, {key:8s}: evaluation {ms(evaluation):7.2f} ms, overhead/step {ms(over):6.3f} ms "
                  f"(extras dipole,charges)")
    head = row("socket (lesmd), extras dipole,charges")
    real_text = f"real_model_socket_overhead={ms(real['socket'][0]):.3f}ms " if real else ""
    print(f"N=192 direct={direct_ms:.2f}ms socket_overhead={head:.3f}ms "
          f"(no extras {row('socket (lesmd), no extras'):.3f}ms) "
          f"ffdirect_overhead={row('ffdirect, extras dipole,charges'):.3f}ms "
          f"floor(minimal client)={row('socket, minimal client (floor)'):.3f}ms "
          f"i-pi-py_driver={row('socket, i-pi-py_driver -m dummy'):.3f}ms "
          f"{real_text}socket_step/direct={(direct_ms + head) / direct_ms:.3f}x "
          f"target_socket_overhead<=1ms:{'PASS' if head <= 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
