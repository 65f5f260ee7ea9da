"""Speed of the default LES water model: energy + forces + stress on water boxes of 192, 1536 and 12288 atoms.

Boxes are replicas (1×, 2×, 4× per direction) of the first frame of ../shared/data/water_rpbe_d3_bec_100.xyz.
For each size: wall time of one :func:`lesmd.evaluate.evaluate` call (energy, forces and stress, or energy and
forces with --no-stress; neighbour list included) as the median of --repeats calls (41 by default; an eighth of
that, at least 5, from 10000 atoms on) after a warm-up, with
``torch.set_num_threads(2)`` (change with --threads). The same model with the LES term switched off (short range
only), called alternately with the full model on the same positions, gives the LES overhead ratio (median of the
per-round ratios). Each call sees positions moved by 0.01 Å rms from the previous one, as in MD; ``full_s`` reuses
the model's Verlet neighbour list (skin 0.5 Å) as MD does between searches, ``search_s`` searches afresh every
call (an MD step on which the list is rebuilt, about one in ten to twenty). Peak memory is the resident-set
high-water mark of the process (sizes run in increasing order). The malloc settings of :mod:`lesmd.allocator`
(applied by every MD, i-PI and training entry point) are applied unless ``--default-malloc``.
Targets (issue 3, 2 cores): ≤ 15 ms, ≤ 100 ms, ≤ 1.5 s; ≤ 4 GB at 12288 atoms; LES overhead ≤ 1.25×.

Usage: python benchmarks/bench_model.py [--model PATH] [--repeats 41] [--threads 2] [--dtype float32]
[--no-stress] [--default-malloc]
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

from lesmd.allocator import tune_allocator
from lesmd.evaluate import evaluate
from lesmd.models.io import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "water_rpbe_d3_bec_100.xyz"
#: from this many atoms on, an eighth of --repeats (at least 5): one call takes a good part of a second there
LARGE_ATOMS = 10_000


def water_box(replicas: int, dtype: torch.dtype):
    import ase.io

    atoms = ase.io.read(DATA, 0).repeat(replicas)
    return (torch.tensor(atoms.numbers), torch.tensor(atoms.positions, dtype=dtype),
            torch.tensor(atoms.cell.array, dtype=dtype), torch.tensor(atoms.pbc))  # fmt: skip


def time_calls(
    models: list, inputs, repeats: int, search: bool = False, props: tuple[str, ...] = ("energy", "forces", "stress")
) -> list[tuple[list[float], list[float]]]:
    """Wall and process-CPU times (s) of one evaluation of ``props`` for each model, interleaved call by call.

    Every round moves the positions by 0.01 Å (rms per component) from the previous round, as in MD, and then
    calls each model on the same positions, in an order that alternates between rounds; a warm-up round comes
    first. ``search``: each model's Verlet neighbour list is discarded before every call (a fresh vesin search
    each time); otherwise it is reused the way it is between searches in MD.

    Interleaving makes ratios robust on a shared machine: slow phases (other processes, CPU frequency) hit both
    models of a round alike, so the per-round ratio is far steadier than a ratio of separate medians. CPU time
    (all threads together) is the other robust number: wall time includes waiting for cores that other processes
    hold.

    Returns:
        One (wall times, CPU times) pair of lists per model, in the order of ``models``.
    """
    numbers, positions, cell, pbc = inputs
    generator = torch.Generator().manual_seed(0)
    for model in models:
        evaluate(model, *inputs, properties=props)
    times = [([], []) for _ in models]
    for round_ in range(repeats):
        positions = positions + 0.01 * torch.randn(positions.shape, generator=generator, dtype=positions.dtype)
        order = range(len(models)) if round_ % 2 == 0 else reversed(range(len(models)))
        for k in order:
            if search:
                models[k].verlet_list.reset()
            start, start_cpu = time.perf_counter(), time.process_time()
            evaluate(models[k], numbers, positions, cell, pbc, properties=props)
            times[k][0].append(time.perf_counter() - start)
            times[k][1].append(time.process_time() - start_cpu)
    return times


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b (the two calls of one round saw the same machine state)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: embedded water model)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=41,
                        help="calls per size (an eighth, at least 5, from 10000 atoms on)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--no-stress", action="store_true",
                        help="energy and forces only (NVT/NVE MD needs no stress)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's malloc defaults (the MD, i-PI and training paths apply lesmd.allocator)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc = "glibc defaults" if args.default_malloc else f"lesmd.allocator applied: {tune_allocator()}"
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model = load_model(args.model, dtype=dtype)
    short = load_model(args.model, dtype=dtype)
    short.use_les = False
    targets = {192: 0.015, 1536: 0.100, 12288: 1.5}
    props = ("energy", "forces") if args.no_stress else ("energy", "forces", "stress")
    print(f"threads={args.threads} dtype={args.dtype} cutoff={model.cutoff} Å properties={','.join(props)} "
          f"malloc: {malloc}")
    print(f"{'N':>6} {'full_s':>9} {'short_s':>9} {'ratio':>6} {'full_cpu_s':>10} {'short_cpu_s':>11} "
          f"{'cpu_ratio':>9} {'search_s':>9} {'target_s':>8} {'peak_gb':>7}")  # fmt: skip
    line = ""
    for r in args.replicas:
        inputs = water_box(r, dtype)
        n = inputs[0].shape[0]
        repeats = args.repeats if n < LARGE_ATOMS else max(5, args.repeats // 8)
        (w_full, c_full), (w_short, c_short) = time_calls([model, short], inputs, repeats, props=props)
        ((w_search, _),) = time_calls([model], inputs, max(3, repeats // 3), search=True, props=props)
        t_full, t_short, t_search = (statistics.median(w) for w in (w_full, w_short, w_search))
        ratio, cpu_ratio = median_ratio(w_full, w_short), median_ratio(c_full, c_short)
        cpu_full, cpu_short = statistics.median(c_full), statistics.median(c_short)
        target = targets.get(n, float("nan"))
        print(f"{n:>6} {t_full:>9.4f} {t_short:>9.4f} {ratio:>6.3f} {cpu_full:>10.4f} {cpu_short:>11.4f} "
              f"{cpu_ratio:>9.2f} {t_search:>9.4f} {target:>8.3f} {peak_gb():>7.2f}", flush=True)  # fmt: skip
        line = (f"N={n} full={t_full:.4f} short_range={t_short:.4f} les_overhead={ratio:.3f} "
                f"full_cpu={cpu_full:.4f} cpu_overhead={cpu_ratio:.2f} full_with_search={t_search:.4f} "
                f"peak_gb={peak_gb():.2f}")  # fmt: skip
    print(line)


if __name__ == "__main__":
    main()
