"""Speed of the LES long-range energy + forces: lesmd's default path vs a plain direct k-space sum.

Random neutral charges at water number density (0.1 atoms/Å³) in a cubic box, σ = 1 Å, N = 192 … 12000.
For each N: wall time of energy + forces as the median of ≥ 5 runs after a warm-up, with
torch.set_num_threads(2), and lesmd's peak memory (resident-set high-water mark of the process, read after
lesmd's runs of this and all smaller sizes and before any baseline run). The baseline is the O(N·N_k) direct
sum over the full sphere |k| < π Å⁻¹ (what the reference LES code does): autograd through one dense phase
matrix while it fits in ~1 GB, beyond that energy and analytic forces in chunks of k-vectors (bounded memory,
faster than autograd). Same process and dtype. Ratios are what matter on a shared machine.

Usage: python benchmarks/bench_ewald.py [--sizes 192 768 3000 12000] [--dtype float32] [--repeats 5] [--threads 2]
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


def direct_kvectors(cell: torch.Tensor, k_cut: float = math.pi) -> torch.Tensor:
    """All reciprocal vectors with 0 < |k| < k_cut (full sphere), (M,3) in Å⁻¹."""
    recip = 2.0 * math.pi * torch.linalg.inv(cell).mT
    n_max = [int(k_cut * float(torch.linalg.norm(a)) / (2 * math.pi)) for a in cell]
    n = torch.cartesian_prod(*[torch.arange(-m, m + 1) for m in n_max]).to(cell.dtype)
    k = n @ recip
    k2 = (k * k).sum(-1)
    return k[(k2 > 0) & (k2 < k_cut * k_cut)]


def direct_ksum_energy_forces(charges, positions, cell, sigma: float = 1.0, k_cut: float = math.pi, chunk=2048):
    """Plain reference: E = (1/(2Vε0)) Σ_{0<|k|<k_c} e^(−σ²k²/2)/k² |S(k)|² − k_e Σ q²/(σ√(2π)) and its forces
    F_i = (q_i/(Vε0)) Σ_k e^(−σ²k²/2)/k² k [sin(k·r_i) Re S − cos(k·r_i) Im S], over the full k sphere, in
    chunks of k-vectors (O(N·N_k) work, bounded memory)."""
    k = direct_kvectors(cell, k_cut)
    volume = torch.linalg.det(cell).abs()
    energy = torch.zeros((), dtype=positions.dtype)
    forces = torch.zeros_like(positions)
    for start in range(0, k.shape[0], chunk):
        kc = k[start : start + chunk]
        k2 = (kc * kc).sum(-1)
        weight = torch.exp(-0.5 * sigma**2 * k2) / k2 / (volume * EPSILON0)
        phase = positions @ kc.T
        cos, sin = torch.cos(phase), torch.sin(phase)
        re, im = charges @ cos, charges @ sin
        energy = energy + 0.5 * (weight * (re * re + im * im)).sum()
        forces = forces + charges[:, None] * ((sin * (weight * re) - cos * (weight * im)) @ kc)
    return energy - COULOMB * (charges**2).sum() / (sigma * math.sqrt(2.0 * math.pi)), forces


def random_system(n_atoms: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    length = (n_atoms / 0.1) ** (1.0 / 3.0)
    cell = torch.eye(3, dtype=dtype) * length
    positions = torch.rand(n_atoms, 3, generator=gen, dtype=dtype) * length
    charges = torch.randn(n_atoms, generator=gen, dtype=dtype)
    return charges - charges.mean(), positions, cell


def time_lesmd(charges, positions, cell, repeats: int, accuracy: float) -> float:
    """Median seconds for lesmd's energy + forces (autograd) after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        pos = positions.clone().requires_grad_(True)
        start = time.perf_counter()
        energy = les_energy(charges, pos, cell, True, 1.0, accuracy=accuracy)
        torch.autograd.grad(energy, pos)
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def direct_ksum_energy(charges, positions, cell, sigma: float = 1.0, k_cut: float = math.pi) -> torch.Tensor:
    """The same k_c = π energy written as the reference LES code does (one dense phase matrix; autograd forces)."""
    k = direct_kvectors(cell, k_cut)
    k2 = (k * k).sum(-1)
    phase = positions @ k.T
    s2 = (charges @ torch.cos(phase)) ** 2 + (charges @ torch.sin(phase)) ** 2
    volume = torch.linalg.det(cell).abs()
    energy = (torch.exp(-0.5 * sigma**2 * k2) / k2 * s2).sum() / (2.0 * volume * EPSILON0)
    return energy - COULOMB * (charges**2).sum() / (sigma * math.sqrt(2.0 * math.pi))


def time_direct(charges, positions, cell, repeats: int) -> tuple[float, str]:
    """Median seconds for the plain direct k-sum's energy + forces after one warm-up call.

    As the reference code (autograd through one dense (N, N_k) phase matrix) while that fits in ~1 GB; beyond,
    the same sum in k-chunks with analytic forces (faster than autograd, so the speedup is, if anything,
    understated).
    """
    dense = positions.shape[0] * direct_kvectors(cell).shape[0] <= 5e7
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        if dense:
            pos = positions.clone().requires_grad_(True)
            torch.autograd.grad(direct_ksum_energy(charges, pos, cell), pos)
        else:
            with torch.no_grad():
                direct_ksum_energy_forces(charges, positions, cell)
        if i > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times), "autograd" if dense else "chunked"


def peak_gb() -> float:
    """Resident-set high-water mark of this process in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 768, 3000, 12000])
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--accuracy", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    print(f"# dtype={args.dtype} accuracy={args.accuracy} threads={args.threads} repeats={args.repeats}")
    header = f"{'N':>6} {'lesmd_s':>9} {'direct_s':>9} {'speedup':>8} {'E_diff/E':>9} {'F_rms_diff':>10}"
    print(header + f" {'peak_gb':>8} direct")
    sizes = sorted(args.sizes)
    lesmd_times, peaks = {}, {}
    for n_atoms in sizes:  # lesmd first: the resident-set high-water mark is then lesmd's own
        charges, positions, cell = random_system(n_atoms, dtype)
        lesmd_times[n_atoms] = time_lesmd(charges, positions, cell, args.repeats, args.accuracy)
        peaks[n_atoms] = peak_gb()
    line = ""
    for n_atoms in sizes:
        charges, positions, cell = random_system(n_atoms, dtype)
        t_lesmd, peak = lesmd_times[n_atoms], peaks[n_atoms]
        t_direct, kind = time_direct(charges, positions, cell, args.repeats)
        pos = positions.clone().requires_grad_(True)
        e_lesmd = les_energy(charges, pos, cell, True, 1.0, accuracy=args.accuracy)
        (grad,) = torch.autograd.grad(e_lesmd, pos)
        with torch.no_grad():
            e_direct, f_direct = direct_ksum_energy_forces(charges, positions, cell)
        rel = abs(float(e_lesmd.detach()) - float(e_direct)) / abs(float(e_lesmd.detach()))
        f_rms = float((-grad - f_direct).norm() / f_direct.norm())
        speedup = t_direct / t_lesmd
        row = f"{n_atoms:>6} {t_lesmd:>9.4f} {t_direct:>9.4f} {speedup:>8.2f} {rel:>9.2e} {f_rms:>10.2e}"
        print(row + f" {peak:>8.3f} {kind}")
        line = f"N={n_atoms} lesmd={t_lesmd:.4f} direct={t_direct:.4f} speedup={speedup:.1f} peak_gb={peak:.2f}"
    print("# E_diff/E, F_rms_diff: the k_c = π sum's truncation error (lesmd's converged sum is the reference)")
    print(line)


if __name__ == "__main__":
    main()
