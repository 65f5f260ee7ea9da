"""Speed of the LES long-range energy + forces: lesmd's default path vs a plain direct k-space sum.

Random neutral charges at water number density (0.1 atoms/Å³) in a cubic box, σ = 1 Å, N = 192 … 12000.
For each N: wall time of energy + forces (autograd) as the median of ≥ 5 runs after a warm-up, with
torch.set_num_threads(2), and peak memory (tracemalloc-free: resident-set high-water mark of this process,
so run sizes in increasing order). The baseline is the O(N·N_k) direct sum over the full sphere |k| < π Å⁻¹
(what the reference LES code does), in the same process and dtype. Ratios are what matter on a shared machine.

Usage: python benchmarks/bench_ewald.py [--sizes 192 768 3000 12000] [--dtype float32] [--repeats 5]
Last line: N=<largest> lesmd=<s> direct=<s> speedup=<x> peak_gb=<g>
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time

import torch

from lesmd.les.ewald import les_energy
from lesmd.units import COULOMB, EPSILON0


def direct_ksum_energy(charges, positions, cell, sigma: float = 1.0, k_cut: float = math.pi) -> torch.Tensor:
    """Plain reference: (1/(2Vε0)) Σ_{0<|k|<k_c} e^(−σ²k²/2)/k² |S(k)|² − k_e Σ q²/(σ√(2π)), full k sphere."""
    recip = 2.0 * math.pi * torch.linalg.inv(cell).mT
    n_max = [int(k_cut * float(torch.linalg.norm(a)) / (2 * math.pi)) for a in cell]
    n = torch.cartesian_prod(*[torch.arange(-m, m + 1) for m in n_max]).to(positions.dtype)
    k = n @ recip
    k2 = (k * k).sum(-1)
    keep = (k2 > 0) & (k2 < k_cut * k_cut)
    k, k2 = k[keep], k2[keep]
    phase = positions @ k.T
    s2 = (charges @ torch.cos(phase)) ** 2 + (charges @ torch.sin(phase)) ** 2
    volume = torch.linalg.det(cell).abs()
    energy = (torch.exp(-0.5 * sigma**2 * k2) / k2 * s2).sum() / (2.0 * volume * EPSILON0)
    return energy - COULOMB * (charges**2).sum() / (sigma * math.sqrt(2.0 * math.pi))


def random_system(n_atoms: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    length = (n_atoms / 0.1) ** (1.0 / 3.0)
    cell = torch.eye(3, dtype=dtype) * length
    positions = torch.rand(n_atoms, 3, generator=gen, dtype=dtype) * length
    charges = torch.randn(n_atoms, generator=gen, dtype=dtype)
    return charges - charges.mean(), positions, cell


def time_energy_forces(energy_fn, charges, positions, cell, repeats: int) -> float:
    """Median seconds for energy + forces (autograd) after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        pos = positions.clone().requires_grad_(True)
        start = time.perf_counter()
        energy = energy_fn(charges, pos, cell)
        (forces,) = torch.autograd.grad(energy, pos)
        elapsed = time.perf_counter() - start
        if i > 0:
            times.append(elapsed)
    return statistics.median(times)


def peak_gb() -> float:
    """Resident-set high-water mark of this process in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 768, 3000, 12000])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--accuracy", type=float, default=1e-6)
    args = parser.parse_args()
    torch.set_num_threads(2)
    dtype = getattr(torch, args.dtype)

    def lesmd_fn(q, r, c):
        return les_energy(q, r, c, True, 1.0, accuracy=args.accuracy)

    print(f"# dtype={args.dtype} accuracy={args.accuracy} threads=2 repeats={args.repeats}")
    print(f"{'N':>6} {'lesmd_s':>9} {'direct_s':>9} {'speedup':>8} {'rel_diff':>9} {'peak_gb':>8}")
    line = ""
    for n_atoms in sorted(args.sizes):
        charges, positions, cell = random_system(n_atoms, dtype)
        t_lesmd = time_energy_forces(lesmd_fn, charges, positions, cell, args.repeats)
        peak = peak_gb()
        t_direct = time_energy_forces(direct_ksum_energy, charges, positions, cell, args.repeats)
        with torch.no_grad():
            e_lesmd = float(lesmd_fn(charges, positions, cell))
            e_direct = float(direct_ksum_energy(charges, positions, cell))
        rel = abs(e_lesmd - e_direct) / abs(e_lesmd)
        speedup = t_direct / t_lesmd
        print(f"{n_atoms:>6} {t_lesmd:>9.4f} {t_direct:>9.4f} {speedup:>8.2f} {rel:>9.2e} {peak:>8.3f}")
        line = f"N={n_atoms} lesmd={t_lesmd:.4f} direct={t_direct:.4f} speedup={speedup:.1f} peak_gb={peak:.2f}"
    print(line)


if __name__ == "__main__":
    main()
