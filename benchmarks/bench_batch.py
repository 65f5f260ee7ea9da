"""Beads in one model call: LESPotential.compute_batch of B structures against B compute calls (64 H₂O).

Path-integral MD evaluates B copies (beads) of the same system per step; at MD sizes most of a model call is fixed
cost, so one call for the batch saves most of it. Alternates the two ways, same structures (the shipped water frame
with bead-like random displacements), medians of ``--repeats`` rounds; prints the ratio last.

Usage: python benchmarks/bench_batch.py [--beads 16] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lesmd.potential import LESPotential
from lesmd.structures import equilibrated_water64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beads", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    atoms = equilibrated_water64()
    rng = np.random.default_rng(0)
    structures = [(atoms.numbers, atoms.positions + rng.normal(scale=0.05, size=atoms.positions.shape),
                   atoms.cell.array, np.ones(3, bool)) for _ in range(args.beads)]  # fmt: skip
    potential = LESPotential(None)
    props = ["energy", "forces", "stress"]
    potential.compute_batch(structures, props)  # warm-up (kernels, caches)
    [potential.compute(*s, props) for s in structures]
    single, batched = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for s in structures:
            potential.compute(*s, props)
        single.append(time.perf_counter() - start)
        start = time.perf_counter()
        potential.compute_batch(structures, props)
        batched.append(time.perf_counter() - start)
    a, b = statistics.median(single), statistics.median(batched)
    print(f"{args.beads} beads x 192 atoms, {args.threads} threads: one call per bead {a * 1e3:.1f} ms, "
          f"one call for all {b * 1e3:.1f} ms")
    print(f"batched / per-bead time: {b / a:.3f} (bead-steps per second x{a / b:.2f})")


if __name__ == "__main__":
    main()
