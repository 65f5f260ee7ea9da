"""Trajectory readers for spectra: the total dipole M(t) (or Ṁ(t)), volumes and times of an MD run.

Readers (all yield :class:`FrameChunk` blocks of frames, in lesmd units Å, fs, e):

* ASE: `.traj`, extxyz and anything `ase.io.iread` reads. Dipole from the calculator results or `info["dipole"]`
  (e·Å); Born effective charges from results/arrays/info `born_effective_charges` or info `BEC` ((N,3,3),
  [atom, dipole α, displacement β], e); charges from arrays/info/results `charges` or `initial_charges`;
  velocities from the momenta (converted to Å/fs).
* i-PI (3.x) outputs: xyz trajectories whose comment line carries the cell (`CELL(abcABC)` or `CELL(H)`) and the
  units (`positions{angstrom}`, `velocities{atomic_unit}`, `cell{...}`), converted to Å and Å/fs; and `extras`
  files (`#EXTRAS(dipole)# Step: n` blocks, or `raw` JSON) whose "dipole" is in e·Bohr and whose "BEC" has shape
  (3N, 3), row 3i+β (displacement), column α (dipole), in e. i-PI never converts extras: the units are those of
  the lesmd driver (DESIGN.md).
* mdtraj: any format mdtraj loads with a topology (nm, ps converted to Å, fs).

Itinerant dipole: positions are unwrapped frame to frame with the displacement scheme
u_t = u_{t−1} + Δw − h_t·round(h_t⁻¹Δw) (Δw = w_t − w_{t−1}, h_t the cell of frame t; Kulke & Vermaas,
J. Chem. Theory Comput. 18, 6161 (2022)), valid while no atom moves more than half a cell between stored frames.
Then M = Σ_i q_i u_i does not jump by q·L when atoms cross the cell. With Born charges and velocities,
Ṁ = Σ_i Z*_i v_i (no unwrapping needed).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesmd.units import AMU, BOHR, KB

__all__ = [
    "DipoleSeries",
    "FrameChunk",
    "Unwrapper",
    "detect_format",
    "dipole_series",
    "iter_ase",
    "iter_ipi",
    "iter_mdtraj",
    "itinerant_dipoles",
    "read_ipi_extras",
]

DIPOLE_SOURCES = ("auto", "stored", "bec", "charges", "model")
_MDTRAJ_EXT = {
    ".dcd",
    ".xtc",
    ".trr",
    ".nc",
    ".ncdf",
    ".h5",
    ".lh5",
    ".dtr",
    ".binpos",
    ".lammpstrj",
    ".arc",
    ".hdf5",
    ".netcdf",
    ".mdcrd",
    ".crd",
    ".gro",
    ".pdb",
}


@dataclass
class FrameChunk:
    """A block of k consecutive frames of N atoms (arrays absent from the file are None).

    numbers (N,) atomic numbers; positions (k,N,3) Å; cells (k,3,3) Å, rows = lattice vectors, zeros when open;
    pbc (3,) bool; velocities (k,N,3) Å/fs; dipoles (k,3) e·Å; bec (k,N,3,3) e [atom, dipole α, displacement β];
    charges (k,N) e; times_fs (k,) fs.
    """

    numbers: np.ndarray
    positions: np.ndarray | None = None
    cells: np.ndarray | None = None
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, bool))
    velocities: np.ndarray | None = None
    dipoles: np.ndarray | None = None
    bec: np.ndarray | None = None
    charges: np.ndarray | None = None
    times_fs: np.ndarray | None = None

    def __len__(self) -> int:
        for arr in (self.positions, self.dipoles, self.velocities):
            if arr is not None:
                return len(arr)
        return 0


@dataclass
class DipoleSeries:
    """What the spectra need from a trajectory.

    dipoles (F,3) itinerant M in e·Å and/or dipole_derivative (F,3) Ṁ in e·Å/fs; volumes (F,) Å³ (None when the
    trajectory has no 3-D periodic cell); times_fs (F,) or None; kinetic_temperature_K (from velocities) or None;
    source: which dipole source was used; stored_dipole_jump (e·Å): for stored dipoles of a periodic trajectory
    that also stores charges, the largest frame-to-frame change of (Σ q u − M_stored): ≈ 0 for itinerant stored
    dipoles, ≈ q·L when they were computed from wrapped positions.
    """

    dipoles: np.ndarray | None
    dipole_derivative: np.ndarray | None
    volumes: np.ndarray | None
    times_fs: np.ndarray | None
    kinetic_temperature_K: float | None
    source: str
    stored_dipole_jump: float | None = None

    @property
    def n_frames(self) -> int:
        arr = self.dipoles if self.dipoles is not None else self.dipole_derivative
        return len(arr)


# ----------------------------------------------------------------------------------------------- unwrapping
class Unwrapper:
    """Frame-to-frame unwrapping of positions, carried across chunks (see the module docstring).

    u_t = w_t + S_t where S_t accumulates −h_t·round(h_t⁻¹ Δw_t) over frames; the corrections are sparse (only
    frames where an atom crosses the cell), which keeps the dipole path to a few passes over the positions.
    """

    def __init__(self) -> None:
        self._last_wrapped: np.ndarray | None = None
        self._shift: np.ndarray | None = None  # (N,3) u − w at the last frame seen

    def _crossings(self, positions: np.ndarray, cells: np.ndarray):
        """(frame index (m,), atom index (m,), lattice correction (m,3) Å) of every cell crossing in the chunk."""
        cells = np.asarray(cells, dtype=np.float64)
        constant = bool(np.all(cells == cells[:1]))
        ref = cells[:1] if constant else cells
        if np.any(np.abs(np.linalg.det(ref)) < 1e-12):
            raise ValueError("cannot unwrap positions: a frame has no (or a singular) 3-D cell")
        if self._last_wrapped is None:
            self._last_wrapped, self._shift = positions[0], np.zeros(positions.shape[1:])
        if positions.shape[1:] != self._shift.shape:
            raise ValueError("the number of atoms changes along the trajectory")
        delta = np.empty_like(positions)  # Δw (k,N,3), then the image numbers round(h⁻¹Δw)
        np.subtract(positions[1:], positions[:-1], out=delta[1:])
        np.subtract(positions[0], self._last_wrapped, out=delta[0])
        if constant and np.count_nonzero(ref[0] - np.diag(np.diag(ref[0]))) == 0:  # fixed orthorhombic cell
            images = np.rint(np.multiply(delta, 1.0 / np.diag(ref[0]), out=delta), out=delta)
        elif constant:
            images = np.rint(delta @ np.linalg.inv(ref[0]))
        else:
            images = np.rint(delta @ np.linalg.inv(cells))
        flat = np.flatnonzero(images)  # crossings are rare: work on the few nonzero entries only
        pairs = np.unique(flat // 3)
        frame, atom = np.divmod(pairs, positions.shape[1])
        lattice = ref[np.zeros_like(frame) if constant else frame]
        vectors = -np.einsum("mj,mjb->mb", images[frame, atom], lattice)
        self._last_wrapped = positions[-1].copy()
        return frame, atom, vectors

    def __call__(self, positions: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """positions (k,N,3) Å, cells (k,3,3) Å (rows = lattice vectors) → unwrapped (k,N,3) Å."""
        positions = np.asarray(positions, dtype=np.float64)
        frame, atom, vectors = self._crossings(positions, cells)
        steps = np.zeros_like(positions)
        np.add.at(steps, (frame, atom), vectors)
        shift = self._shift + np.cumsum(steps, axis=0)
        self._shift = shift[-1].copy()
        return positions + shift

    def dipoles(self, positions: np.ndarray, cells: np.ndarray, charges: np.ndarray) -> np.ndarray:
        """Σ_i q_i u_i (k,3) e·Å for fixed charges (N,) e, without building the unwrapped positions."""
        positions = np.asarray(positions, dtype=np.float64)
        frame, atom, vectors = self._crossings(positions, cells)
        steps = np.zeros((len(positions), 3))
        np.add.at(steps, frame, charges[atom, None] * vectors)
        dipoles = _fixed_charge_dipoles(charges, positions) + charges @ self._shift
        np.add.at(self._shift, atom, vectors)
        return dipoles + np.cumsum(steps, axis=0)


def _fixed_charge_dipoles(charges: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Σ_i q_i r_i for charges (N,) and positions (k,N,3) → (k,3), as one batched matrix product."""
    return np.matmul(charges, positions)  # (N,) @ (k,N,3) → (k,3)


def _charge_dipoles(charges: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Σ_i q_i r_i for charges (N,) or (k,N) and positions (k,N,3) → (k,3)."""
    charges = np.asarray(charges, dtype=np.float64)
    if charges.ndim == 1 or bool(np.all(charges == charges[:1])):
        return _fixed_charge_dipoles(charges if charges.ndim == 1 else charges[0], positions)
    return np.matmul(charges[:, None, :], positions)[:, 0]


def itinerant_dipoles(positions: np.ndarray, cells: np.ndarray | None, charges: np.ndarray) -> np.ndarray:
    """M(t) = Σ_i q_i u_i(t) with positions unwrapped frame to frame.

    Args:
        positions: (F,N,3) Å, possibly wrapped into the cell.
        cells: (F,3,3) or (3,3) Å (rows = lattice vectors), or None for open boundaries (no unwrapping).
        charges: (N,) or (F,N) e.
    Returns:
        (F,3) e·Å, continuous in time.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise ValueError(f"positions must have shape (n_frames, n_atoms, 3), got {positions.shape}")
    charges = np.asarray(charges, dtype=np.float64)
    if charges.shape not in (positions.shape[1:2], positions.shape[:2]):
        raise ValueError(f"charges must have shape (n_atoms,) or (n_frames, n_atoms), got {charges.shape}")
    if cells is None:
        return _charge_dipoles(charges, positions)
    cells = np.broadcast_to(np.asarray(cells, dtype=np.float64), (len(positions), 3, 3))
    if charges.ndim == 1:
        return Unwrapper().dipoles(positions, cells, charges)
    return _charge_dipoles(charges, Unwrapper()(positions, cells))


# ----------------------------------------------------------------------------------------------- ASE
def _first(containers, keys, shape) -> np.ndarray | None:
    """The first of `keys` found in `containers` (dict-like), as float64 reshaped to `shape`."""
    for container in containers:
        for key in keys:
            value = container.get(key) if key in container else None
            if value is not None:
                return np.asarray(value, dtype=np.float64).reshape(shape)
    return None


def _frame(numbers, positions, cell, pbc, velocities, results, arrays, info, initial_charges) -> dict:
    """One frame as a dict of arrays (Å, Å/fs, e·Å, e); results/arrays/info are dict-like (possibly empty)."""
    n = len(numbers)
    charges = _first((arrays, info, results), ("charges",), (n,))
    if charges is None and initial_charges is not None and np.any(initial_charges != 0.0):
        charges = np.asarray(initial_charges, dtype=np.float64)
    return {
        "numbers": np.asarray(numbers),
        "positions": np.asarray(positions, dtype=np.float64),
        "cell": np.asarray(cell, dtype=np.float64).reshape(3, 3),
        "pbc": np.asarray(pbc, dtype=bool).reshape(3),
        "velocities": velocities,
        "dipole": _first((results, info), ("dipole",), (3,)),
        "bec": _first((results, arrays, info), ("born_effective_charges", "BEC"), (n, 3, 3)),
        "charges": charges,
    }


def _atoms_frame(atoms) -> dict:
    import ase.units

    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    velocities = atoms.get_velocities() * ase.units.fs if "momenta" in atoms.arrays else None
    return _frame(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, velocities, results, atoms.arrays,
                  atoms.info, atoms.arrays.get("initial_charges"))  # fmt: skip


def _frames_chunk(frames: list[dict]) -> FrameChunk:
    first = frames[0]
    if any(len(f["numbers"]) != len(first["numbers"]) for f in frames):
        raise ValueError("the number of atoms changes along the trajectory")

    def stack(key):
        values = [f[key] for f in frames]
        return None if any(v is None for v in values) else np.stack(values)

    return FrameChunk(
        numbers=first["numbers"].copy(),
        positions=stack("positions"),
        cells=stack("cell"),
        pbc=first["pbc"].copy(),
        velocities=stack("velocities"),
        dipoles=stack("dipole"),
        bec=stack("bec"),
        charges=stack("charges"),
    )


def _chunked(frames: Iterable[dict], chunk: int) -> Iterator[FrameChunk]:
    batch: list = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == chunk:
            yield _frames_chunk(batch)
            batch = []
    if batch:
        yield _frames_chunk(batch)


def _ase_traj_frames(path: str | Path) -> Iterator[dict]:
    """Frames of an ASE .traj file read from its backend directly (≈ 5× faster than building Atoms)."""
    import ase.data
    import ase.units
    from ase.io.trajectory import TrajectoryReader

    reader = TrajectoryReader(str(path))
    try:
        for i in range(len(reader)):
            b = reader.backend[i]
            own = "numbers" in b  # header data written with this frame
            numbers = b.numbers if own else reader.numbers
            masses = b.get("masses") if own else reader.masses
            masses = ase.data.atomic_masses[numbers] if masses is None else masses
            momenta = b.get("momenta")
            velocities = None if momenta is None else momenta / masses[:, None] * ase.units.fs
            results = b.calculator if "calculator" in b else {}
            yield _frame(numbers, b.positions, b.cell, b.pbc if own else reader.pbc, velocities, results, {},
                         b.get("info") or {}, b.get("charges"))  # fmt: skip
    finally:
        reader.close()


def iter_ase(path: str | Path, chunk: int = 256, index: str = ":") -> Iterator[FrameChunk]:
    """Read an ASE-readable trajectory (.traj, extxyz, ...) in chunks of `chunk` frames."""
    import ase.io

    if Path(path).suffix == ".traj" and index == ":":
        yield from _chunked(_ase_traj_frames(path), chunk)
    else:
        yield from _chunked((_atoms_frame(a) for a in _whole_frames(ase.io.iread(str(path), index=index), path)),
                            chunk)  # fmt: skip


def _whole_frames(frames: Iterator, path) -> Iterator:
    """The frames of ``frames`` up to a truncated or unreadable one (the last frame of a killed run): a warning
    names where reading stopped; ValueError when not even the first frame reads."""
    count = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001 - ASE's readers raise many types for a cut-off frame
            if count == 0:
                raise ValueError(f"{path}: cannot read the first frame ({type(error).__name__}: {error})") from None
            warnings.warn(f"{path}: stopped after {count} frames, frame {count + 1} is truncated or unreadable "
                          f"(an interrupted run?): {type(error).__name__}", stacklevel=2)
            return
        count += 1
        yield frame


# ----------------------------------------------------------------------------------------------- i-PI
_STEP_RE = re.compile(r"Step:\s*(\d+)")


def _ipi_cell(comment: str) -> np.ndarray:
    """ASE cell (rows = lattice vectors) from an i-PI comment line, in the comment's cell units."""
    import ipi.utils.mathtools as mt

    abc = re.search(r"CELL[\(\[\{]abcABC[\)\]\}]:\s*([-+0-9.Ee ]*)", comment)
    if abc is not None:
        a, b, c, alpha, beta, gamma = (float(x) for x in abc.group(1).split()[:6])
        return mt.abc2h(a, b, c, *np.radians([alpha, beta, gamma])).T
    hmat = re.search(r"CELL[\(\[\{]H[\)\]\}]:\s*([-+0-9.Ee ]*)", comment)
    if hmat is not None:
        return np.array(hmat.group(1).split()[:9], float).reshape(3, 3).T
    raise ValueError(f"i-PI xyz comment line has no CELL(abcABC) or CELL(H) field: {comment.strip()!r}")


def _ipi_factors(comment: str) -> tuple[str, float, float]:
    """(dimension, factor to Å or Å/fs, cell factor to Å) from an i-PI comment line."""
    from ipi.utils.io.io_units import auto_units
    from ipi.utils.units import unit_to_internal

    from lesmd.units import AU_TIME_FS

    dimension, units, cell_units = auto_units(comment)
    to_lesmd = {"length": BOHR, "velocity": BOHR / AU_TIME_FS}
    if dimension not in to_lesmd:
        raise ValueError(f"i-PI trajectory holds {dimension!r}; expected positions or velocities")
    factor = unit_to_internal(dimension, units, 1.0) * to_lesmd[dimension]
    return dimension, factor, unit_to_internal("length", cell_units, 1.0) * BOHR


def _iter_ipi_xyz(path: str | Path, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list]]:
    """Yield (values (k,N,3) in Å or Å/fs, cells (k,3,3) Å, steps (k,), names) from an i-PI xyz file."""
    with open(path) as fh:
        first = fh.readline()
        if not first.strip():
            raise ValueError(f"{path}: empty i-PI xyz file")
        natoms = int(first)
        fh.seek(0)
        factors = None
        while True:
            lines = list(itertools.islice(fh, chunk * (natoms + 2)))
            if not lines:
                return
            if len(lines) % (natoms + 2):
                raise ValueError(f"{path}: truncated last frame (expected {natoms} atoms per frame)")
            frames = np.array(lines, dtype=object).reshape(-1, natoms + 2)
            comments = frames[:, 1]
            if factors is None:
                factors = _ipi_factors(comments[0])
            _, factor, cell_factor = factors
            tokens = " ".join(frames[:, 2:].ravel()).split()
            if len(tokens) != 4 * natoms * len(frames):
                raise ValueError(f"{path}: expected 'name x y z' on every atom line")
            names = tokens[: 4 * natoms : 4]
            del tokens[::4]  # keep the numbers only
            values = np.array(tokens, dtype=np.float64).reshape(len(frames), natoms, 3) * factor
            cells = np.stack([_ipi_cell(c) for c in comments]) * cell_factor
            steps = np.array([int(m.group(1)) if (m := _STEP_RE.search(c)) else -1 for c in comments])
            yield values, cells, steps, names


def read_ipi_extras(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read an i-PI extras file: (steps (F,), {name: (F, ...) float64 array}) in the units of the driver.

    Handles `extra_type="dipole"`/`"BEC"`/`"dipole,BEC"` blocks (one header `#EXTRAS(<type>)# Step: n` then
    numeric rows) and `extra_type="raw"` (i-PI's whole extras dictionary per frame, one value per bead: the bead
    of the file name suffix `_<bead>` is taken). For stacked types the columns are returned under the joint name.
    """
    steps, blocks, names = [], [], None
    current: list[str] | None = None
    with open(path) as fh:
        for line in fh:
            if line.lstrip().startswith("#EXTRAS"):
                head = re.match(r"\s*#EXTRAS\w*\(([^)]*)\)#\s*Step:\s*(\d+)", line)
                if head is None:
                    raise ValueError(f"{path}: cannot parse i-PI extras header {line.strip()!r}")
                names = head.group(1)
                steps.append(int(head.group(2)))
                current = []
                blocks.append(current)
            elif current is not None and line.strip():
                current.append(line)
    if not blocks:
        raise ValueError(f"{path}: no i-PI extras frames (#EXTRAS headers) found")
    if names == "raw":  # str() of i-PI's extras dict: {key: [value of bead 0, bead 1, ...], "raw": [...]}
        bead = re.search(r"_(\d+)$", Path(path).name)
        bead = int(bead.group(1)) if bead else 0
        data = [_literal("".join(b), path) for b in blocks]
        keys = [k for k, v in data[0].items() if k != "raw" and _numeric(v)]
        out = {k: np.array([np.asarray(d[k], dtype=np.float64)[bead] for d in data]) for k in keys}
    else:
        rows = {len(b) for b in blocks}
        if len(rows) != 1:
            raise ValueError(f"{path}: extras frames have different numbers of rows {sorted(rows)}")
        flat = np.loadtxt([line for b in blocks for line in b], ndmin=2)  # one parse for all frames
        out = {names: flat.reshape(len(blocks), rows.pop(), flat.shape[1])}
    return np.array(steps), out


def _literal(text: str, path) -> dict:
    """A dict written by i-PI as JSON or as Python's str() of a dict."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{path}: cannot parse a raw i-PI extras frame") from None


def _numeric(value) -> bool:
    try:
        return np.asarray(value, dtype=np.float64).size > 0
    except (TypeError, ValueError):
        return False


def _extras_arrays(extras: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(dipoles (F,3) e·Å, bec (F,N,3,3) e) from i-PI extras (dipole e·Bohr; BEC (3N,3) [3i+β, α])."""
    dip = bec = None
    for name, arr in extras.items():
        keys = [k.strip() for k in name.split(",")]
        if keys == ["dipole"]:
            dip = arr.reshape(len(arr), 3) * BOHR
        elif keys == ["BEC"]:
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[1] % 3:
                raise ValueError(f"i-PI extras BEC must be (3N, 3) per frame, got {arr.shape[1:]}")
            natoms = arr.shape[1] // 3
            bec = arr.reshape(len(arr), natoms, 3, 3).transpose(0, 1, 3, 2)  # [i, β, α] → [i, α, β]
        elif "dipole" in keys or "BEC" in keys:
            raise ValueError(f"stacked extras {name!r} cannot be separated; write dipole and BEC to two files")
    return dip, bec


def iter_ipi(
    positions: str | Path | None,
    velocities: str | Path | None = None,
    extras: Iterable[str | Path] = (),
    chunk: int = 256,
) -> Iterator[FrameChunk]:
    """Read i-PI outputs: positions and/or velocities xyz files plus extras files (dipole, BEC), frame-aligned.

    All files must hold the same frames (checked through their `Step:` numbers). Without a positions file the
    extras alone give M(t) (volume then unknown).
    """
    import ase.data

    dip = bec = None
    extras_steps = None
    for path in extras:
        steps, data = read_ipi_extras(path)
        if extras_steps is not None and not np.array_equal(steps, extras_steps):
            raise ValueError(f"{path}: its Step numbers differ from the other extras file")
        extras_steps = steps
        d, b = _extras_arrays(data)
        dip = d if d is not None else dip
        bec = b if b is not None else bec
    sources = [s for s in (positions, velocities) if s is not None]
    if not sources:
        if dip is None and bec is None:
            raise ValueError("no i-PI file with positions, velocities, dipoles or BECs given")
        yield FrameChunk(numbers=np.zeros(0, int), dipoles=dip, bec=bec)
        return
    readers = [_iter_ipi_xyz(s, chunk) for s in sources]
    start = 0
    for parts in itertools.zip_longest(*readers):
        if any(p is None for p in parts):
            raise ValueError("i-PI positions and velocities files hold different numbers of frames")
        values, cells, steps, names = parts[0]
        for other in parts[1:]:
            if not np.array_equal(other[2], steps):
                raise ValueError("i-PI positions and velocities files hold different Step numbers")
        k = len(steps)
        frame = FrameChunk(
            numbers=np.array([ase.data.atomic_numbers[re.sub(r"[^A-Za-z]", "", s).capitalize()] for s in names]),
            cells=cells,
            pbc=np.ones(3, bool),
        )
        for path, part in zip(sources, parts, strict=True):
            kind = "velocities" if path == velocities else "positions"
            setattr(frame, kind, part[0])
        if extras_steps is not None:
            if len(extras_steps) < start + k or not np.array_equal(extras_steps[start : start + k], steps):
                raise ValueError(
                    "i-PI extras and xyz trajectories hold different Step numbers "
                    "(use the same stride for both outputs)"
                )
            frame.dipoles = None if dip is None else dip[start : start + k]
            frame.bec = None if bec is None else bec[start : start + k]
        start += k
        yield frame
    if extras_steps is not None and len(extras_steps) != start:
        raise ValueError(f"i-PI extras hold {len(extras_steps)} frames, the xyz trajectory {start}")


# ----------------------------------------------------------------------------------------------- mdtraj
def iter_mdtraj(path: str | Path, topology: str | Path | None, chunk: int = 1000) -> Iterator[FrameChunk]:
    """Read any mdtraj format (with a topology file where the format needs one); nm, ps → Å, fs."""
    import mdtraj

    kwargs = {} if topology is None else {"top": str(topology)}
    for traj in mdtraj.iterload(str(path), chunk=chunk, **kwargs):
        numbers = np.array([a.element.number if a.element is not None else 0 for a in traj.topology.atoms])
        has_cell = traj.unitcell_vectors is not None
        yield FrameChunk(
            numbers=numbers,
            positions=traj.xyz.astype(np.float64) * 10.0,
            cells=traj.unitcell_vectors.astype(np.float64) * 10.0 if has_cell else None,
            pbc=np.full(3, has_cell),
            times_fs=np.asarray(traj.time, dtype=np.float64) * 1000.0,
        )


def detect_format(path: str | Path, topology: str | Path | None = None) -> str:
    """Guess the reader of a file: "ipi-extras", "ipi-xyz", "mdtraj" or "ase"."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"trajectory file not found: {path}")
    if topology is not None or path.suffix.lower() in _MDTRAJ_EXT - {".pdb", ".gro"}:
        return "mdtraj"
    with open(path, errors="replace") as fh:
        head = [fh.readline() for _ in range(2)]
    if head[0].lstrip().startswith("#EXTRAS"):
        return "ipi-extras"
    if path.suffix.lower() == ".xyz" and re.search(r"CELL[\(\[\{]", head[1]) and "Lattice=" not in head[1]:
        return "ipi-xyz"
    return "ase"


# ----------------------------------------------------------------------------------------------- dipoles
def _charges_for(chunk: FrameChunk, charges) -> np.ndarray | None:
    """Charges (k,N) in e from the user (array (N,) or {symbol: q}) or the file."""
    if charges is None:
        return chunk.charges
    if isinstance(charges, dict):
        import ase.data

        try:
            per_atom = np.array([charges[ase.data.chemical_symbols[z]] for z in chunk.numbers], float)
        except KeyError as err:
            raise ValueError(f"no charge given for element {err.args[0]}") from None
    else:
        per_atom = np.asarray(charges, dtype=np.float64)
    if per_atom.shape != chunk.numbers.shape:
        raise ValueError(f"{per_atom.size} charges given for {chunk.numbers.size} atoms")
    return np.broadcast_to(per_atom, (len(chunk), len(per_atom)))


def _pick_source(chunk: FrameChunk, source: str, charges, model) -> str:
    available = {
        "stored": chunk.dipoles is not None,
        "bec": chunk.bec is not None and chunk.velocities is not None,
        "charges": chunk.positions is not None and _charges_for(chunk, charges) is not None,
        "model": chunk.positions is not None and model is not None,
    }
    if source == "auto":
        if available["stored"] and available["bec"]:
            return "stored+bec"  # M from the stored dipoles (ε), Ṁ = Σ Z*·v from the BECs (IR)
        for name in ("bec", "stored", "charges", "model"):
            if available[name]:
                return name
        raise ValueError(
            "the trajectory has no dipoles, no Born charges with velocities and no charges: "
            "give per-atom charges (--charges) or a model (--model)"
        )
    if source not in available:
        raise ValueError(f"unknown dipole source {source!r}; choose one of {', '.join(DIPOLE_SOURCES)}")
    if not available[source]:
        need = {
            "stored": "stored dipoles",
            "bec": "Born effective charges and velocities",
            "charges": "positions and per-atom charges",
            "model": "positions and a model",
        }[source]
        raise ValueError(f"dipole source {source!r} needs {need}, which the trajectory does not provide")
    return source


def _model_dipoles(chunk: FrameChunk, unwrapped: np.ndarray, model) -> np.ndarray:
    """M for each frame from a callable dipole_fn(atoms) → (3,) or an object with `compute(...)["dipole"]`."""
    out = np.empty((len(chunk), 3))
    for k in range(len(chunk)):
        cell = np.array(chunk.cells[k]) if chunk.cells is not None else np.zeros((3, 3))
        if hasattr(model, "compute"):
            res = model.compute(chunk.numbers, unwrapped[k], cell, chunk.pbc, ["dipole"])
            out[k] = np.asarray(res["dipole"], dtype=np.float64).reshape(3)
        else:
            import ase

            atoms = ase.Atoms(numbers=chunk.numbers, positions=unwrapped[k], cell=cell, pbc=chunk.pbc)
            out[k] = np.asarray(model(atoms), dtype=np.float64).reshape(3)
    return out


def _kinetic_energy_sum(chunk: FrameChunk) -> float:
    import ase.data

    masses = ase.data.atomic_masses[chunk.numbers] * AMU  # eV·fs²/Å²
    return float(0.5 * np.einsum("i,kij,kij->", masses, chunk.velocities, chunk.velocities))


def dipole_series(
    chunks: Iterable[FrameChunk],
    source: str = "auto",
    charges=None,
    model=None,
    progress: bool = False,
    total: int | None = None,
) -> DipoleSeries:
    """Consume frame chunks into an itinerant dipole series.

    Args:
        chunks: from :func:`iter_ase`, :func:`iter_ipi` or :func:`iter_mdtraj`.
        source: "auto" (stored dipoles and BECs with velocities when both are there: M from the dipoles, Ṁ = Σ Z*·v
            for the IR; else bec → stored → charges → model), "stored", "bec", "charges" or "model".
        charges: per-atom charges (N,) in e or {element symbol: charge}; overrides charges in the file.
        model: callable dipole_fn(ase.Atoms) → (3,) e·Å, or an object with the lesmd potential API
            `compute(numbers, positions, cell, pbc, properties)` returning "dipole" (e·Å).
        progress: show a tqdm progress bar (frames).
    Returns:
        :class:`DipoleSeries`.
    """
    from tqdm.auto import tqdm

    unwrap = Unwrapper()
    dipoles, derivs, volumes, times, check = [], [], [], [], []
    kinetic, n_atoms, chosen = 0.0, 0, None
    has_velocities = True
    bar = tqdm(total=total, unit="frame", disable=not progress, desc="reading")
    for chunk in chunks:
        chosen = chosen or _pick_source(chunk, source, charges, model)
        periodic = chunk.cells is not None and bool(np.all(chunk.pbc))
        if periodic:
            volumes.append(np.abs(np.linalg.det(chunk.cells)))
        if chosen in ("stored", "stored+bec"):
            dipoles.append(chunk.dipoles)
            if periodic and chunk.positions is not None and chunk.charges is not None:
                check.append(_charge_dipoles(chunk.charges, unwrap(chunk.positions, chunk.cells)) - chunk.dipoles)
        if chosen in ("bec", "stored+bec"):
            derivs.append(np.einsum("kiab,kib->ka", chunk.bec, chunk.velocities))
        if chosen in ("charges", "model"):
            q = _charges_for(chunk, charges) if chosen == "charges" else None
            if q is not None and periodic and bool(np.all(q == q[:1])):  # fast path: fixed charges
                dipoles.append(unwrap.dipoles(chunk.positions, chunk.cells, np.array(q[0])))
            else:
                pos = unwrap(chunk.positions, chunk.cells) if periodic else chunk.positions
                dipoles.append(_charge_dipoles(q, pos) if q is not None else _model_dipoles(chunk, pos, model))
        times.append(chunk.times_fs)
        if chunk.velocities is not None and len(chunk.numbers):
            kinetic += _kinetic_energy_sum(chunk)
            n_atoms = len(chunk.numbers)
        else:
            has_velocities = False
        bar.update(len(chunk))
    bar.close()
    if chosen is None:
        raise ValueError("the trajectory holds no frames")
    n_frames = sum(len(d) for d in (dipoles or derivs))
    if dipoles and derivs and sum(len(d) for d in derivs) != n_frames:
        raise ValueError("stored dipoles and BECs/velocities cover different frames: pick --dipole-source")
    temperature = None
    if has_velocities and n_atoms:
        dof = 3 * n_atoms - 3 if n_atoms > 1 else 3  # the centre of mass is fixed in MD
        temperature = 2.0 * kinetic / (dof * n_frames * KB)
    return DipoleSeries(
        dipoles=np.concatenate(dipoles) if dipoles else None,
        dipole_derivative=np.concatenate(derivs) if derivs else None,
        volumes=np.concatenate(volumes) if volumes else None,
        times_fs=None if any(t is None for t in times) else np.concatenate(times),
        kinetic_temperature_K=temperature,
        source=chosen,
        stored_dipole_jump=float(np.abs(np.diff(np.concatenate(check), axis=0)).max()) if len(check) else None,
    )
