"""Speed of `lesmd spectrum`'s analysis: 100 000 frames × 192 atoms (64 waters, fixed charges, 1 fs apart).

Analysis = unwrapping + M(t) from charges (chunked, as the CLI does) + IR spectrum + static ε with error bar and
running estimate + ε(ω). Baseline in the same process: a frame-by-frame Python unwrapping loop and a direct
(non-FFT) lagged-sum autocorrelation, the straightforward way to write the same thing.
Reading is timed separately: an i-PI extras dipole file of all frames (what a run with the lesmd driver writes),
and i-PI positions xyz / ASE extxyz on a subset, extrapolated per frame.

Usage: python benchmarks/bench_spectra.py [--frames 100000] [--atoms 192]
Last line: one-line summary.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ipi.utils.io.io_units  # noqa: E402, F401  (one-off import costs kept out of the timings)
import ipi.utils.mathtools  # noqa: E402, F401
import tqdm.auto  # noqa: E402, F401

from lesmd import spectra, trajectory  # noqa: E402
from lesmd.units import BOHR  # noqa: E402


def make_positions(n_frames: int, n_atoms: int, box: float, seed: int = 0) -> np.ndarray:
    """Wrapped random-walk positions (F, N, 3) Å in a cubic box (0.05 Å steps), float64."""
    rng = np.random.default_rng(seed)
    pos = np.cumsum(rng.normal(scale=0.05, size=(n_frames, n_atoms, 3)), axis=0)
    pos += rng.random((1, n_atoms, 3)) * box
    return pos % box


def lesmd_analysis(positions, box, charges, dt):
    cells = np.broadcast_to(np.eye(3) * box, (1000, 3, 3))
    chunks = (
        trajectory.FrameChunk(
            numbers=np.ones(len(charges), int),
            positions=positions[i : i + 1000],
            cells=cells[: len(positions[i : i + 1000])],
            pbc=np.ones(3, bool),
        )
        for i in range(0, len(positions), 1000)
    )
    t0 = time.perf_counter()
    series = trajectory.dipole_series(chunks, "charges", charges=charges)
    t1 = time.perf_counter()
    volume = series.volumes
    ir = spectra.ir_spectrum(series.dipoles, dt, volume, 300.0, max_wavenumber=4500.0)
    static = spectra.static_dielectric(series.dipoles, volume, 300.0)
    omega = spectra.dielectric_spectrum(series.dipoles, dt, volume, 300.0, max_wavenumber=4500.0)
    t2 = time.perf_counter()
    return series.dipoles, (ir, static, omega), t1 - t0, t2 - t1


def baseline_analysis(positions, box, charges, dt, n_lags):
    """Frame loop unwrapping + direct lagged-sum autocorrelation (same max lag as lesmd's IR)."""
    t0 = time.perf_counter()
    unwrapped = positions[0].copy()
    m = np.empty((len(positions), 3))
    m[0] = charges @ unwrapped
    for f in range(1, len(positions)):
        d = positions[f] - positions[f - 1]
        d -= box * np.round(d / box)
        unwrapped += d
        m[f] = charges @ unwrapped
    t1 = time.perf_counter()
    mdot = np.diff(m, axis=0) / dt
    n = len(mdot)
    acf = np.array([np.sum(mdot[: n - k] * mdot[k:]) / (n - k) for k in range(n_lags)])
    t2 = time.perf_counter()
    return m, acf, t1 - t0, t2 - t1


def time_reading(m, positions, charges, box, tmp: Path, subset: int):
    """Seconds for: extras dipole file of all frames; per-frame rates of i-PI xyz and ASE extxyz on a subset."""
    extras = tmp / "sim.dipole_0"
    with open(extras, "w") as fh:
        for i, d in enumerate(m / BOHR):
            fh.write(f" #EXTRAS(dipole)# Step:  {i:10d} \n{d[0]:.8e} {d[1]:.8e} {d[2]:.8e}\n")
    t0 = time.perf_counter()
    _, data = trajectory.read_ipi_extras(extras)
    t_extras = time.perf_counter() - t0
    assert np.allclose(data["dipole"].reshape(-1, 3) * BOHR, m, rtol=1e-7, atol=1e-6)

    xyz = tmp / "sim.pos_0.xyz"
    n_atoms = positions.shape[1]
    with open(xyz, "w") as fh:
        for i in range(subset):
            fh.write(
                f"{n_atoms}\n# CELL(abcABC): {box} {box} {box} 90 90 90 Step: {i} Bead: 0 "
                "positions{angstrom} cell{angstrom}\n"
            )
            fh.write("".join(f"       O {x:12.5e} {y:12.5e} {z:12.5e}\n" for x, y, z in positions[i]))
    t0 = time.perf_counter()
    trajectory.dipole_series(trajectory.iter_ipi(xyz), "charges", charges=charges)
    t_xyz = (time.perf_counter() - t0) / subset

    import ase
    import ase.io

    ext = tmp / "w.xyz"
    frames = [ase.Atoms(numbers=np.full(n_atoms, 8), positions=p, cell=[box] * 3, pbc=True) for p in positions[:subset]]
    for a in frames:
        a.arrays["charges"] = charges
    ase.io.write(ext, frames, format="extxyz")
    t0 = time.perf_counter()
    trajectory.dipole_series(trajectory.iter_ase(ext), "charges")
    t_ase = (time.perf_counter() - t0) / subset
    with ase.io.Trajectory(tmp / "w.traj", "w") as out:
        for a in frames:
            a.set_initial_charges(charges)
            out.write(a)
    t0 = time.perf_counter()
    trajectory.dipole_series(trajectory.iter_ase(tmp / "w.traj"), "charges")
    t_traj = (time.perf_counter() - t0) / subset
    return t_extras, t_xyz, t_ase, t_traj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--atoms", type=int, default=192)
    parser.add_argument("--subset", type=int, default=2000, help="frames for the xyz/extxyz reading rates")
    args = parser.parse_args()
    box, dt = 12.42, 1.0
    charges = np.tile([-0.8476, 0.4238, 0.4238], args.atoms // 3)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cores={os.cpu_count()}")
    positions = make_positions(args.frames, args.atoms, box)

    m, _, t_m, t_spec = lesmd_analysis(positions, box, charges, dt)
    total = t_m + t_spec
    print(f"lesmd   : unwrap+M {t_m:6.2f} s   IR+ε+ε(ω) {t_spec:6.2f} s   total {total:6.2f} s")
    n_lags = int(round(2000.0 / dt)) + 1
    m_ref, acf_ref, b_m, b_acf = baseline_analysis(positions, box, charges, dt, n_lags)
    assert np.allclose(m - m[0], m_ref - m_ref[0], atol=1e-6), "unwrapped dipoles differ from the baseline"
    acf = spectra.autocorrelation(np.diff(m, axis=0) / dt, n_lags)
    assert np.allclose(acf, acf_ref, rtol=1e-8, atol=1e-10 * abs(acf_ref[0])), "autocorrelation differs"
    print(f"baseline: unwrap+M {b_m:6.2f} s   direct ACF {b_acf:6.2f} s   total {b_m + b_acf:6.2f} s")
    print(f"speedup : unwrap+M {b_m / t_m:5.1f}x   correlation {b_acf / t_spec:5.1f}x (lesmd includes ε and ε(ω))")

    with tempfile.TemporaryDirectory() as tmp:
        t_extras, t_xyz, t_ase, t_traj = time_reading(m, positions, charges, box, Path(tmp), args.subset)
    print(
        f"reading : i-PI extras dipole {args.frames} frames {t_extras:6.2f} s;  i-PI positions xyz "
        f"{t_xyz * 1e3:.2f} ms/frame (→ {t_xyz * args.frames:.0f} s for {args.frames});  ASE extxyz "
        f"{t_ase * 1e3:.2f} ms/frame (→ {t_ase * args.frames:.0f} s);  ASE .traj {t_traj * 1e3:.2f} ms/frame "
        f"(→ {t_traj * args.frames:.0f} s)"
    )
    verdict = "PASS" if total <= 20.0 else "FAIL"
    print(
        f"frames={args.frames} atoms={args.atoms} analysis={total:.2f}s (target 20 s: {verdict}) "
        f"baseline={b_m + b_acf:.2f}s speedup={(b_m + b_acf) / total:.1f}x read_extras={t_extras:.2f}s "
        f"read_xyz={t_xyz * args.frames:.0f}s read_traj={t_traj * args.frames:.0f}s"
    )


if __name__ == "__main__":
    main()
