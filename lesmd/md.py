"""`lesmd md`: molecular dynamics with ASE and an LES model (the main job: a periodic water box at 300 K).

Integrators are ASE's: Langevin (NVT; Allen–Tildesley BBK-type splitting as implemented in ASE), VelocityVerlet
(NVE) and Berendsen NPT (``ase.md.nptberendsen``). Forces, stress, charges and the dipole come from
:class:`lesmd.calculator.LESCalculator`; ASE does not wrap positions, so the logged dipole M = Σ q_i r_i is the
continuous (itinerant) one. Each logged step prints time, potential and total energy, temperature and M, and
appends a frame (positions, velocities, energy, forces, charges, dipole) to the trajectory (.traj or .xyz/.extxyz).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

from lesmd.units import KB

ENSEMBLES = ("nvt", "nve", "npt")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd md`."""
    parser.add_argument("--structure", default=None,
                        help="starting structure (any ASE format; default: a 64-H2O box at 1 g/cm³)")
    parser.add_argument("--molecules", type=int, default=64, help="water molecules in the default box")
    parser.add_argument("--model", default=None, help="model file (default: the embedded water model)")
    parser.add_argument("--steps", type=int, default=200, help="MD steps (default 200)")
    parser.add_argument("--timestep", type=float, default=0.5, help="time step, fs (default 0.5)")
    parser.add_argument("--temperature", type=float, default=300.0, help="temperature, K (default 300)")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nvt", help="nvt (Langevin), nve, npt (Berendsen)")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    parser.add_argument("--pressure", type=float, default=1.0, help="NPT pressure, bar (default 1)")
    parser.add_argument("--efield", default=None, metavar="Ex,Ey,Ez", help="static uniform field, V/Å")
    parser.add_argument("--charge", type=float, default=0.0, help="total charge, e")
    parser.add_argument("--epsilon-inf", type=float, default=1.0, help="ε∞ scaling of charges/dipoles")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None, help="evaluation precision")
    parser.add_argument("--log-interval", type=int, default=1, help="log and write a frame every N steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed (structure, velocities, thermostat)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--relax-steps", type=int, default=None,
                        help="FIRE steps before MD (default: 100 for the built water box, 0 for --structure)")
    parser.add_argument("--bec", action="store_true",
                        help="also store Born effective charges in every written frame (for IR from Z*·v)")
    parser.add_argument("--out", default="md.traj", help="trajectory file: .traj or .xyz/.extxyz (default md.traj)")


def load_structure(path: str | None, molecules: int, seed: int):
    """The starting ``Atoms``: read from ``path``; 64 molecules: the shipped box equilibrated at 300 K; otherwise a
    freshly built water box (relaxed by :func:`relax` before the run)."""
    if path is None:
        from lesmd.structures import equilibrated_water64, water_box

        return equilibrated_water64() if molecules == 64 else water_box(molecules, seed=seed)
    from ase.io import read

    if not Path(path).is_file():
        raise FileNotFoundError(f"structure file {path} not found")
    return read(path)


def make_dynamics(atoms, ensemble: str, timestep_fs: float, temperature: float, friction: float,
                  pressure_bar: float, seed: int):
    """The ASE dynamics object for ``ensemble`` (velocities are drawn from Maxwell–Boltzmann first)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    if timestep_fs <= 0 or temperature < 0:
        raise ValueError(f"timestep must be > 0 fs and temperature ≥ 0 K, got {timestep_fs}, {temperature}")
    rng = np.random.default_rng(seed)
    if not atoms.has("momenta") or not np.any(atoms.get_momenta()):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt":
        from ase.md.langevin import Langevin

        return Langevin(atoms, timestep=dt, temperature_K=temperature, friction=friction / units.fs, rng=rng,
                        fixcm=False)
    if not atoms.pbc.all():
        raise ValueError("npt needs a 3-D periodic structure")
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(atoms, timestep=dt, temperature_K=temperature, pressure_au=pressure_bar * units.bar,
                        taut=100 * units.fs, taup=1000 * units.fs, compressibility_au=4.57e-5 / units.bar)


def check_writable(path: Path) -> None:
    """ValueError naming the problem when ``path`` cannot be written (a directory, a missing or non-directory
    parent, no permission), before any MD step runs."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory: give a file name, e.g. {path / 'md.traj'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        what = "is a file, not a directory" if parent.exists() else "does not exist"
        raise ValueError(f"--out {path}: the folder {parent} {what}")
    try:
        with open(path, "ab"):
            pass
    except OSError as error:
        raise ValueError(f"--out {path} cannot be written: {error.strerror or error}") from None


def append_whole(path: Path, text: str) -> None:
    """Append one frame's text with a single write on an O_APPEND descriptor, so that a killed run leaves whole
    frames only (ASE's extxyz writer issues one write per line); a full disk is a one-line OSError."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare: signals, quotas) continues where it stopped
            written += os.write(fd, data[written:])
    except OSError as error:
        raise OSError(f"writing a frame to {path} failed: {error.strerror or error} (disk full?)") from None
    finally:
        os.close(fd)


class StepLogger:
    """Prints one line per logged step and appends the frame to the trajectory."""

    def __init__(self, atoms, dyn, out: str | Path, stream=sys.stdout, bec: bool = False) -> None:
        self.atoms, self.dyn, self.stream, self.bec = atoms, dyn, stream, bec
        self.out = Path(out)
        self.start = time.perf_counter()
        suffix = self.out.suffix.lower()
        if suffix not in (".traj", ".xyz", ".extxyz"):
            raise ValueError(f"--out must end in .traj, .xyz or .extxyz, got {self.out.name}")
        check_writable(self.out)
        if suffix == ".traj":
            from ase.io.trajectory import Trajectory

            properties = ["energy", "forces", "charges", "dipole"] + (["born_effective_charges"] if bec else [])
            self.traj = Trajectory(str(self.out), "w", atoms, properties=properties)
        else:
            self.traj = None
            self.out.unlink(missing_ok=True)
        print(f"{'step':>7} {'time/fs':>9} {'Epot/eV':>14} {'Etot/eV':>14} {'T/K':>8} "
              f"{'Mx/eÅ':>9} {'My/eÅ':>9} {'Mz/eÅ':>9}", file=stream, flush=True)

    def __call__(self) -> None:
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.io import write

        a = self.atoms
        epot = a.get_potential_energy()
        ekin = a.get_kinetic_energy()
        temperature = 2 * ekin / (3 * len(a) * KB) if len(a) else 0.0
        dipole = a.calc.get_property("dipole", a)
        step = self.dyn.nsteps
        t_fs = step * self.dyn.dt / _fs()
        print(f"{step:7d} {t_fs:9.2f} {epot:14.6f} {epot + ekin:14.6f} {temperature:8.1f} "
              f"{dipole[0]:9.4f} {dipole[1]:9.4f} {dipole[2]:9.4f}", file=self.stream, flush=True)
        if self.traj is not None:
            self.traj.write()
        else:
            frame = a.copy()
            frame.calc = SinglePointCalculator(frame, energy=epot, forces=a.get_forces(), dipole=dipole,
                                               charges=a.get_charges())
            if self.bec:  # extxyz holds per-atom arrays of rank ≤ 2: 9 columns [α, β] row-major
                bec = a.calc.get_property("born_effective_charges", a)
                frame.arrays["born_effective_charges"] = bec.reshape(len(a), 9)
            frame.info.update(time_fs=t_fs, temperature_K=temperature)
            text = io.StringIO()
            write(text, frame, format="extxyz")
            append_whole(self.out, text.getvalue())

    def close(self) -> None:
        if self.traj is not None:
            self.traj.close()


def _fs() -> float:
    from ase import units

    return units.fs


def run_md(atoms, calc, *, steps: int = 200, ensemble: str = "nvt", timestep: float = 0.5,
           temperature: float = 300.0, friction: float = 0.01, pressure: float = 1.0, seed: int = 0,
           log_interval: int = 1, out: str | Path = "md.traj", stream=sys.stdout, bec: bool = False):
    """Run ``steps`` MD steps of ``atoms`` with ``calc``; log and write every ``log_interval`` steps
    (with ``bec``, every written frame also holds the Born effective charges, (N, 3, 3) e).

    Returns the final ``Atoms`` (the same object, propagated).
    """
    if steps < 0 or log_interval < 1:
        raise ValueError(f"steps must be ≥ 0 and log interval ≥ 1, got {steps}, {log_interval}")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {', '.join(ENSEMBLES)}, got {ensemble!r}")
    atoms.calc = calc
    dyn = make_dynamics(atoms, ensemble, timestep, temperature, friction, pressure, seed)
    logger = StepLogger(atoms, dyn, out, stream, bec=bec)
    dyn.attach(logger, interval=log_interval)
    start = time.perf_counter()
    try:
        dyn.run(steps)
    finally:
        logger.close()
    wall = time.perf_counter() - start
    rate = steps / wall if wall > 0 else float("inf")
    print(f"# {steps} steps of {timestep} fs ({ensemble}, {len(atoms)} atoms) in {wall:.1f} s "
          f"({rate:.1f} steps/s); trajectory: {out}", file=stream, flush=True)
    return atoms


def relax(atoms, calc, steps: int, fmax: float = 0.2, stream=sys.stdout) -> None:
    """Remove the worst strain of a built structure with ≤ ``steps`` FIRE steps (forces below ``fmax`` eV/Å).

    A freshly built box sits far above the model's potential-energy surface at 300 K; without this the first
    picoseconds of MD heat up by hundreds of kelvin while that energy is released.
    """
    from ase.optimize import FIRE

    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    FIRE(atoms, logfile=None).run(fmax=fmax, steps=steps)
    print(f"# relaxed the starting structure: {e0:.4f} -> {atoms.get_potential_energy():.4f} eV "
          f"({steps} FIRE steps at most)", file=stream, flush=True)


def run_cli(args: argparse.Namespace) -> int:
    """`lesmd md`."""
    import torch

    from lesmd.calculator import LESCalculator
    from lesmd.ipi import parse_vector

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if out.suffix.lower() not in (".traj", ".xyz", ".extxyz"):
        raise ValueError(f"--out must end in .traj, .xyz or .extxyz, got {out.name}")
    check_writable(out)  # before the relaxation and the first step, not after
    atoms = load_structure(args.structure, args.molecules, args.seed)
    dtype = {None: None, "float32": torch.float32, "float64": torch.float64}[args.dtype]
    calc = LESCalculator(args.model, dtype=dtype, charge=args.charge, epsilon_inf=args.epsilon_inf,
                         efield=parse_vector(args.efield))
    built = args.structure is None and args.molecules != 64  # the 64-molecule start is equilibrated already
    relax_steps = args.relax_steps if args.relax_steps is not None else (100 if built else 0)
    if relax_steps > 0:
        relax(atoms, calc, relax_steps)
    run_md(atoms, calc, steps=args.steps, ensemble=args.ensemble, timestep=args.timestep,
           temperature=args.temperature, friction=args.friction, pressure=args.pressure, seed=args.seed,
           log_interval=args.log_interval, out=args.out, bec=args.bec)
    return 0
