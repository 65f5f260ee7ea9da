"""Speed of the default LES water model: energy + forces + stress on water boxes of 192, 1536 and 12288 atoms.

Boxes are replicas (1×, 2×, 4× per direction) of the first frame of ../shared/data/water_rpbe_d3_bec_100.xyz.
For each size: wall time of one :func:`lesmd.evaluate.evaluate` call (energy, forces, stress; neighbour list
included) as the median of ≥ 5 runs after a warm-up, with ``torch.set_num_threads(2)`` (change with --threads);
the same model with the LES term switched off (short range only) in the same process gives the LES overhead
ratio. Each call sees positions moved by 0.01 Å rms from the previous one, as in MD; ``full_s`` reuses the
model's Verlet neighbour list (skin 0.5 Å) as MD does between searches, ``search_s`` searches afresh every call
(an MD step on which the list is rebuilt, about one in ten to twenty). Peak memory is the resident-set
high-water mark of the process (sizes run in increasing order).
Targets (issue 3, 2 cores): ≤ 15 ms, ≤ 100 ms, ≤ 1.5 s; ≤ 4 GB at 12288 atoms; LES overhead ≤ 1.25×.

Usage: python benchmarks/bench_model.py [--model PATH] [--repeats 5] [--threads 2] [--dtype float32]
Last line: N=<largest> full=<s> short_range=<s> les_overhead=<x> full_cpu=<s> cpu_overhead=<x>
full_with_search=<s> peak_gb=<g>
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from lesmd.evaluate import evaluate
from lesmd.models.io import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water_rpbe_d3_bec_100.xyz"


def water_box(replicas: int, dtype: torch.dtype):
    import ase.io

    atoms = ase.io.read(DATA, 0).repeat(replicas)
    return (torch.tensor(atoms.numbers), torch.tensor(atoms.positions, dtype=dtype),
            torch.tensor(atoms.cell.array, dtype=dtype), torch.tensor(atoms.pbc))  # fmt: skip


def time_call(model, inputs, repeats: int, search: bool = False) -> tuple[float, float]:
    """Median wall time and median process CPU time (s) of energy + forces + stress after a warm-up call.

    Every call sees positions moved by 0.01 Å (rms per component) from the previous call, as in MD. ``search``:
    the model's Verlet neighbour list is discarded before every call (a fresh vesin search each time);
    otherwise it is reused the way it is between searches in MD.

    CPU time (all threads together) is the robust number on a shared machine: wall time there includes waiting
    for cores that other processes hold."""
    props = ("energy", "forces", "stress")
    numbers, positions, cell, pbc = inputs
    generator = torch.Generator().manual_seed(0)
    evaluate(model, *inputs, properties=props)
    wall, cpu = [], []
    for _ in range(repeats):
        positions = positions + 0.01 * torch.randn(positions.shape, generator=generator, dtype=positions.dtype)
        if search:
            model.verlet_list.reset()
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluate(model, numbers, positions, cell, pbc, properties=props)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: embedded water model)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model = load_model(args.model, dtype=dtype)
    short = load_model(args.model, dtype=dtype)
    short.use_les = False
    targets = {192: 0.015, 1536: 0.100, 12288: 1.5}
    print(f"threads={args.threads} dtype={args.dtype} cutoff={model.cutoff} Å")
    print(f"{'N':>6} {'full_s':>9} {'short_s':>9} {'ratio':>6} {'full_cpu_s':>10} {'short_cpu_s':>11} "
          f"{'cpu_ratio':>9} {'search_s':>9} {'target_s':>8} {'peak_gb':>7}")  # fmt: skip
    line = ""
    for r in args.replicas:
        inputs = water_box(r, dtype)
        n = inputs[0].shape[0]
        t_short, c_short = time_call(short, inputs, args.repeats)
        t_full, c_full = time_call(model, inputs, args.repeats)
        t_search, _ = time_call(model, inputs, args.repeats, search=True)
        target = targets.get(n, float("nan"))
        print(f"{n:>6} {t_full:>9.4f} {t_short:>9.4f} {t_full / t_short:>6.2f} {c_full:>10.4f} {c_short:>11.4f} "
              f"{c_full / c_short:>9.2f} {t_search:>9.4f} {target:>8.3f} {peak_gb():>7.2f}", flush=True)  # fmt: skip
        line = (f"N={n} full={t_full:.4f} short_range={t_short:.4f} les_overhead={t_full / t_short:.2f} "
                f"full_cpu={c_full:.4f} cpu_overhead={c_full / c_short:.2f} full_with_search={t_search:.4f} "
                f"peak_gb={peak_gb():.2f}")  # fmt: skip
    print(line)


if __name__ == "__main__":
    main()
