"""`lesmd spectrum TRAJ --out DIR`: IR spectrum, static dielectric constant and ε(ω) from a trajectory.

Writes DIR/ir.csv (`wavenumber_cm-1,absorption`: cm⁻¹, α(ω)n(ω) in cm⁻¹), DIR/dielectric.json (`epsilon`,
`epsilon_err`, `n_frames`, `timestep_fs`, `temperature_K`, `volume_A3`, plus `epsilon_inf`, `n_blocks`,
`dipole_source`, `peaks_cm-1` and the running estimate), DIR/epsilon_omega.csv
(`wavenumber_cm-1,epsilon_real,epsilon_imag`) and PNG plots (ir.png, dielectric_running.png, epsilon_omega.png).
The physics is in :mod:`lesmd.spectra`, the readers in :mod:`lesmd.trajectory`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from lesmd import spectra, trajectory
from lesmd.units import SPEED_OF_LIGHT_CM_PER_FS

DEFAULT_MAX_WAVENUMBER = 4500.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd spectrum`."""
    parser.add_argument("trajectory", help="ASE .traj/extxyz, i-PI positions xyz or extras file, or an mdtraj file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--timestep", type=float, help="time between stored frames in fs (MD step × stride)")
    parser.add_argument("--temperature", type=float, help="K (default: kinetic temperature from velocities)")
    parser.add_argument("--epsilon-inf", type=float, default=1.0, help="ε∞ added to the static ε (default 1)")
    parser.add_argument("--topology", help="topology file for mdtraj formats (pdb, prmtop, psf, ...)")
    parser.add_argument(
        "--dipole-source",
        choices=trajectory.DIPOLE_SOURCES,
        default="auto",
        help="stored dipoles, Born charges × velocities, per-atom charges, or a model",
    )
    parser.add_argument("--charges", help="per-atom charges: 'O=-0.8476,H=0.4238' or a file with one per atom (e)")
    parser.add_argument("--velocities", help="i-PI velocities xyz file matching TRAJ")
    parser.add_argument(
        "--extras", action="append", default=[], help="i-PI extras file (dipole in e·Bohr, BEC (3N,3)); repeatable"
    )
    parser.add_argument("--volume", type=float, help="volume in Å³ when the trajectory has no cell")
    parser.add_argument(
        "--model", help="model file (or 'default', the embedded water model) giving M(t) from the positions"
    )
    parser.add_argument("--quantum-correction", choices=spectra.QUANTUM_CORRECTIONS, default="none")
    parser.add_argument("--window", choices=spectra.WINDOWS, default="hann")
    parser.add_argument("--max-lag", type=float, help="IR correlation length in fs (default min(2 ps, T/2))")
    parser.add_argument("--max-wavenumber", type=float, help="cm⁻¹ (default min(4500, Nyquist))")
    parser.add_argument("--blocks", type=int, default=10, help="blocks for the ε error bar (default 10)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _parse_charges(spec: str | None):
    if spec is None:
        return None
    if Path(spec).is_file():
        return np.loadtxt(spec, ndmin=1)
    try:
        pairs = (item.split("=") for item in spec.split(","))
        return {sym.strip(): float(q) for sym, q in pairs}
    except ValueError:
        raise ValueError(f"--charges: expected 'El=q,El=q' or a file, got {spec!r}") from None


def _load_model(spec: str | None, epsilon_inf: float):
    """`--model`: a model file, or "default" for the embedded water model, as a lesmd potential."""
    if spec is None:
        return None
    from lesmd.potential import LESPotential

    return LESPotential(None if spec == "default" else spec, epsilon_inf=epsilon_inf)


def read_series(args: argparse.Namespace) -> trajectory.DipoleSeries:
    """Read the trajectory named on the command line into a :class:`lesmd.trajectory.DipoleSeries`."""
    fmt = trajectory.detect_format(args.trajectory, args.topology)
    if fmt == "ipi-xyz":
        chunks = trajectory.iter_ipi(args.trajectory, args.velocities, args.extras)
    elif fmt == "ipi-extras":
        chunks = trajectory.iter_ipi(None, args.velocities, [args.trajectory, *args.extras])
    elif fmt == "mdtraj":
        chunks = trajectory.iter_mdtraj(args.trajectory, args.topology)
    else:
        chunks = trajectory.iter_ase(args.trajectory)
    return trajectory.dipole_series(
        chunks,
        args.dipole_source,
        _parse_charges(args.charges),
        _load_model(args.model, args.epsilon_inf),
        progress=not args.no_progress,
    )


def resolve_timestep(given: float | None, times_fs: np.ndarray | None) -> float:
    """The frame spacing (fs): the user's value, checked against the trajectory's time stamps if it has any."""
    stamped = None
    if times_fs is not None and len(times_fs) > 1:
        steps = np.diff(times_fs)
        stamped = float(np.median(steps))
        if stamped <= 0 or np.max(np.abs(steps - stamped)) > 1e-3 * abs(stamped):
            raise ValueError("the trajectory's time stamps are not uniformly spaced (restarts or mixed strides?)")
    if given is None:
        if stamped is None:
            raise ValueError("--timestep is required (fs between stored frames): the trajectory has no times")
        return stamped
    if not math.isfinite(given) or given <= 0:
        raise ValueError(f"--timestep must be a positive number of fs, got {given}")
    if stamped is not None and abs(given - stamped) > 1e-3 * stamped:
        raise ValueError(f"--timestep {given:g} fs disagrees with the trajectory's time stamps ({stamped:g} fs)")
    return float(given)


def analyse(series: trajectory.DipoleSeries, args: argparse.Namespace) -> dict:
    """Run the three analyses; returns the results and the settings used."""
    dt = resolve_timestep(args.timestep, series.times_fs)
    temperature = args.temperature if args.temperature is not None else series.kinetic_temperature_K
    if temperature is None:
        raise ValueError("--temperature is required (K): the trajectory has no velocities")
    volume = args.volume if args.volume is not None else series.volumes
    if volume is None:
        raise ValueError("the trajectory has no 3-D periodic cell: pass --volume (Å³) for ε and the IR units")
    max_wn = args.max_wavenumber
    if max_wn is None:
        max_wn = min(DEFAULT_MAX_WAVENUMBER, 1.0 / (2.0 * dt * SPEED_OF_LIGHT_CM_PER_FS))
    m, mdot = series.dipoles, series.dipole_derivative
    if series.stored_dipole_jump is not None and series.stored_dipole_jump > 0.1:
        print(
            f"lesmd spectrum: warning: the stored dipoles jump by up to {series.stored_dipole_jump:.3g} e·Å "
            "against Σ q·(unwrapped r): computed from wrapped positions? try --dipole-source charges",
            file=sys.stderr,
        )
    if m is None:  # M(t) from ∫ Ṁ dt (trapezoid); the constant does not matter for fluctuations
        m = np.concatenate([np.zeros((1, 3)), np.cumsum(0.5 * (mdot[1:] + mdot[:-1]) * dt, axis=0)])
    ir = spectra.ir_spectrum(
        None if mdot is not None else m,
        dt,
        volume,
        temperature,
        dipole_derivative=mdot,
        quantum_correction=args.quantum_correction,
        window=args.window,
        max_lag_fs=args.max_lag,
        max_wavenumber=max_wn,
    )
    n_blocks = max(2, min(args.blocks, len(m) // 2))
    static = spectra.static_dielectric(m, volume, temperature, args.epsilon_inf, n_blocks=n_blocks)
    omega = spectra.dielectric_spectrum(
        m, dt, volume, temperature, args.epsilon_inf, window=args.window, max_wavenumber=max_wn
    )
    tau = spectra.correlation_time(m, dt)
    block_fs = (len(m) // n_blocks) * dt
    if block_fs < 5.0 * tau:
        print(
            f"lesmd spectrum: warning: blocks of {block_fs / 1000:g} ps are shorter than 5 dipole correlation times "
            f"({tau / 1000:.3g} ps each): epsilon_err underestimates the error; run longer",
            file=sys.stderr,
        )
    return {
        "ir": ir,
        "static": static,
        "omega": omega,
        "timestep_fs": dt,
        "temperature_K": float(temperature),
        "correlation_time_fs": tau,
    }


def write_outputs(res: dict, series: trajectory.DipoleSeries, out: Path, plots: bool = True) -> None:
    """Write ir.csv, dielectric.json, epsilon_omega.csv and (optionally) the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    ir, static, omega = res["ir"], res["static"], res["omega"]
    ir.to_csv(out / "ir.csv")
    omega.to_csv(out / "epsilon_omega.csv")
    summary = {
        "epsilon": static.epsilon,
        "epsilon_err": static.epsilon_err,
        "n_frames": static.n_frames,
        "timestep_fs": res["timestep_fs"],
        "temperature_K": res["temperature_K"],
        "volume_A3": static.volume_A3,
        "epsilon_inf": static.epsilon_inf,
        "n_blocks": static.n_blocks,
        "dipole_source": series.source,
        "dipole_correlation_time_ps": res["correlation_time_fs"] / 1000.0,
        "peaks_cm-1": [round(wn, 1) for wn, _ in ir.peaks()],
        "running_time_ps": (static.running_frames * res["timestep_fs"] / 1000.0).tolist(),
        "running_epsilon": static.running_epsilon.tolist(),
    }
    (out / "dielectric.json").write_text(json.dumps(summary, indent=1) + "\n")
    if plots:
        from lesmd import spectra_plots

        spectra_plots.plot_ir(ir, out / "ir.png")
        spectra_plots.plot_dielectric_running(static, res["timestep_fs"], out / "dielectric_running.png")
        spectra_plots.plot_epsilon_omega(omega, out / "epsilon_omega.png")


def analyse_file(trajectory_path, out=None, **options) -> dict:
    """Notebook entry: the `lesmd spectrum` analysis of a file, options named as the CLI's (underscores).

    Example: ``res = analyse_file("nve.traj", timestep=2.0, epsilon_inf=1.78)``; ``res["ir"]`` is a
    :class:`~lesmd.spectra.SpectrumResult`, ``res["static"]`` a :class:`~lesmd.spectra.DielectricResult`,
    ``res["omega"]`` a :class:`~lesmd.spectra.DielectricSpectrum`, ``res["series"]`` the dipole series.
    With ``out`` the files and plots are written there too.
    """
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(trajectory_path), "--out", str(out or "."), "--no-progress"])
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(args, key, value)
    series = read_series(args)
    res = analyse(series, args)
    if out is not None:
        write_outputs(res, series, Path(out), plots=not args.no_plots)
    return {**res, "series": series}


def run(args: argparse.Namespace) -> int:
    """Entry point of `lesmd spectrum`; returns 0. Bad input raises a one-line ValueError (the `lesmd` command
    prints it and exits with status 1)."""
    series = read_series(args)
    res = analyse(series, args)
    write_outputs(res, series, Path(args.out), plots=not args.no_plots)
    static = res["static"]
    peaks = ", ".join(f"{wn:.0f}" for wn, _ in sorted(res["ir"].peaks()))
    print(
        f"{static.n_frames} frames, dt = {res['timestep_fs']:g} fs, T = {res['temperature_K']:.1f} K, "
        f"dipoles from {series.source}: ε = {static.epsilon:.3f} ± {static.epsilon_err:.3f}; "
        f"IR peaks (cm⁻¹): {peaks}; files in {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m lesmd.spectra_cli`), same as `lesmd spectrum`."""
    parser = argparse.ArgumentParser(prog="lesmd spectrum", description=__doc__.splitlines()[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except (ValueError, FileNotFoundError) as err:
        print(f"lesmd spectrum: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
