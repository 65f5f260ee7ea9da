"""ASE molecular dynamics in a time-dependent uniform field E(t), with the conserved quantity logged.

Physics (Umari & Pasquarello, PRL 89, 157602 (2002); Souza, Íñiguez & Vanderbilt, PRL 89, 117602 (2002)).
In a uniform field the nuclei move on the electric enthalpy

    H(r, p, t) = K(p) + E0(r) − E(t)·M(r),     F_i = −∂E0/∂r_i + Z*_iᵀ E(t),

with M the itinerant dipole (unwrapped positions; ASE integrators do not wrap, so M is continuous when atoms cross
a periodic face). H depends on time only through E(t), so along a trajectory (Hamilton's equations)

    dH/dt = ∂H/∂t = −Ė(t)·M(r(t))   ⇒   C(t) = H(t) + W(t),   W(t) = ∫₀ᵗ Ė(t')·M(t') dt',

is the conserved quantity. Integrating W by parts, C = K + E0 − E(0)·M(0) − ∫₀ᵗ E·Ṁ dt': the energy balance
"kinetic + internal energy change = work done by the field" (Ṁ = Σ_i Z*_i v_i, so ∫E·Ṁ dt = ∫Σ_i F_i^field·v_i dt).
For a static field W ≡ 0 and C = H. Along the discrete trajectory W is accumulated once per step with the
trapezoid rule on the field increments, W_{n+1} = W_n + (E_{n+1} − E_n)·(M_n + M_{n+1})/2, which needs no Ė and
is exactly zero for a static field.

Time discretisation. The field of a force evaluation is that of the time of its positions: inside step n
(t_n → t_{n+1}) the forces at the new positions use E(t_{n+1}), and the first half-kick uses the forces already
computed at (r_n, E(t_n)). For velocity Verlet this is the same splitting as i-PI's ``eda-nve`` integrator
(kicks with Z*ᵀE(t) at t and at t + dt), so both engines produce the same trajectory. This holds for every ASE
integrator whose ``step(forces)`` evaluates forces once, at the end of the step (VelocityVerlet, Langevin,
Bussi, Andersen, Berendsen); for the others (``step()`` without forces) the first half-kick is recomputed with
E(t_{n+1}), which is first order in dt. With a thermostat C is not conserved (the bath exchanges energy).

Polarisation along the path (periodic cells with a local charge model, e.g. :class:`lesmd.models.les.LESModel`).
There :func:`lesmd.evaluate.evaluate` applies the field as F = −∂E0/∂r + Z*ᵀE with minimum-image, sum-rule
corrected Z* and no exact potential goes with it (the total-charge shift moves charge through the cell), so the
snapshot dipole Σ q r is not the polarisation those forces conserve. The consistent M is the path integral of the
modern theory of polarisation, dM = Σ_i Z*_i dr_i, accumulated here with the trapezoid rule

    M_{n+1} = M_n + Σ_i ½ (Z*_i(r_n) + Z*_i(r_{n+1})) · (r_{n+1} − r_n),     M_0 = Σ q r at the start,

(Z* [atom, dipole α, displacement β] from the calculator's ``born_effective_charges``, requested together with
every force evaluation: one extra backward pass for LESModel). This M replaces the snapshot one in H = E0 − E·M,
in W and in C (``energy_zero_field`` E0 is the calculator's). Then Σ_i F_i^field·dr_i = E·dM step by step up to
O(dt³), and C is conserved as well as the zero-field energy is. ``path_dipole="auto"`` (default) uses it when the
cell is periodic and the calculator's model has ``born_effective_charges``; ``True`` always (for open boundaries it
reproduces Σ q r up to the O(dt²) trapezoid error), ``False`` never. Open boundaries and models without local
Born charges have the exact H = E0 − E·M with M = Σ q r, and use that snapshot dipole by default.

Usage::

    from ase.md.verlet import VelocityVerlet
    from lesmd.calculator import LESCalculator
    from lesmd.fields import ElectricField
    from lesmd.field_md import FieldDrivenMD

    atoms.calc = LESCalculator()
    dyn = VelocityVerlet(atoms, timestep=0.5 * ase.units.fs)
    driver = FieldDrivenMD(dyn, ElectricField.pulse([0, 0, 0.05], peak=200, sigma=50), logfile="field.log")
    dyn.run(1000)
    log = driver.log_arrays()          # time (fs), efield (V/Å), dipole (e·Å), energies (eV), conserved (eV)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
from ase import units as ase_units

from lesmd.fields import ElectricField

#: columns of the log (file and :meth:`FieldDrivenMD.log_arrays`)
COLUMNS = (
    "time_fs", "Ex", "Ey", "Ez", "Mx", "My", "Mz",
    "energy_zero_field", "enthalpy", "kinetic", "work", "conserved", "temperature_K",
)


class FieldDrivenMD:
    """Drive an ASE ``MolecularDynamics`` object with a uniform field E(t) and log E(t), M(t) and C(t).

    The field of the atoms' calculator is set to E(t) of the time of every force evaluation (see the module
    docstring), the work term W is accumulated each step, and a log line is written every ``loginterval`` steps.

    Args:
        dyn: an ASE MD object (``dyn.atoms.calc`` must be a lesmd calculator or any calculator with a settable
            ``efield`` (V/Å) that returns ``energy`` (the enthalpy E0 − E·M) and ``dipole`` (e·Å)).
        field: an :class:`~lesmd.fields.ElectricField` or a static field vector (3,) in V/Å.
        logfile: path, open text stream, ``"-"`` for stdout, or None (no file; :meth:`log_arrays` still works).
        loginterval: write/keep a log line every this many steps.
        start_time: simulation time (fs) of ``dyn.nsteps == 0``.
        path_dipole: "auto", True or False: log the path-integrated polarisation M = M_0 + ∫Σ Z*·dr instead of
            the snapshot dipole (see the module docstring; "auto": periodic cell and a model with local BECs).

    Attributes:
        work: W(t), eV, the accumulated ∫Ė·M dt.
        records: list of logged rows (same order as :data:`COLUMNS`).
        path_dipole: whether M is the path-integrated polarisation.
        snapshot_dipole: the calculator's Σ q r (e·Å, (3,)) at the current step (equals M when not path_dipole).
    """

    def __init__(self, dyn, field: ElectricField | Sequence[float] | np.ndarray, *,
                 logfile: str | Path | TextIO | None = None, loginterval: int = 1, start_time: float = 0.0,
                 path_dipole: bool | str = "auto") -> None:
        if not hasattr(dyn, "dt") or not hasattr(dyn, "nsteps"):
            raise TypeError(f"dyn must be an ASE MolecularDynamics object, got {type(dyn).__name__}")
        if int(loginterval) < 1:
            raise ValueError(f"loginterval must be ≥ 1, got {loginterval}")
        self.dyn = dyn
        self.atoms = dyn.atoms
        self.calc = self.atoms.calc
        if self.calc is None or not hasattr(self.calc, "efield"):
            raise ValueError("the atoms' calculator has no settable efield: use lesmd.calculator.LESCalculator")
        self.field = field if isinstance(field, ElectricField) else ElectricField.static(field)
        self.start_time = float(start_time)
        self.work = 0.0
        self.records: list[list[float]] = []
        self._file, self._own_file = _open_log(logfile)
        if self._file is not None:
            self._file.write("# " + " ".join(COLUMNS) + "   (fs, V/Å, e·Å, eV, K)\n")
        self.path_dipole = self._use_path_dipole(path_dipole)
        self._calculate = None
        if self.path_dipole:  # Z* with every force evaluation (one extra backward pass, no second evaluation)
            self._calculate = self.calc.calculate
            self.calc.calculate = self._calculate_with_bec
            self.calc.reset()
        self._inner_step = dyn.step
        self._step_takes_forces = "forces" in inspect.signature(dyn.step).parameters
        dyn.step = self._step
        self._set_field(self.time)  # resets cached results that belong to another field
        self._field_now = self.field(self.time)
        self.snapshot_dipole = self._dipole()
        self._dipole_now = self.snapshot_dipole.copy()
        if self.path_dipole:
            self._positions_now = self.atoms.get_positions()
            self._bec_now = self._bec()
        dyn.attach(self._log, interval=int(loginterval))

    @property
    def dt_fs(self) -> float:
        """Time step, fs."""
        return float(self.dyn.dt) / ase_units.fs

    @property
    def time(self) -> float:
        """Current simulation time, fs."""
        return self.start_time + int(self.dyn.nsteps) * self.dt_fs

    def _set_field(self, time: float) -> None:
        self.calc.efield = self.field(time)
        if hasattr(self.calc, "reset"):
            self.calc.reset()

    def _use_path_dipole(self, option: bool | str) -> bool:
        if option == "auto":
            model = getattr(getattr(self.calc, "potential", None), "model", None)
            return bool(np.any(self.atoms.pbc)) and hasattr(model, "born_effective_charges")
        if isinstance(option, bool):
            return option
        raise ValueError(f'path_dipole must be "auto", True or False, got {option!r}')

    def _calculate_with_bec(self, atoms=None, properties=("energy",), system_changes=None):  # noqa: ANN202
        properties = list(properties)
        if "born_effective_charges" not in properties:
            properties.append("born_effective_charges")
        if system_changes is None:
            return self._calculate(atoms, properties)
        return self._calculate(atoms, properties, system_changes)

    def _bec(self) -> np.ndarray:
        bec = self.calc.get_property("born_effective_charges", self.atoms)
        return np.asarray(bec, dtype=np.float64).reshape(len(self.atoms), 3, 3)

    def _path_increment(self) -> np.ndarray:
        """Advance the path-integrated M by the trapezoid rule over the last step; returns the new M (e·Å)."""
        positions, bec = self.atoms.get_positions(), self._bec()
        step = positions - self._positions_now
        dipole = self._dipole_now + 0.5 * np.einsum("iab,ib->a", self._bec_now + bec, step)
        self._positions_now, self._bec_now = positions, bec
        return dipole

    def _dipole(self) -> np.ndarray:
        return np.asarray(self.calc.get_property("dipole", self.atoms), dtype=np.float64).reshape(3)

    def _step(self, forces: np.ndarray | None = None):  # noqa: ANN202 - returns whatever the integrator returns
        """One MD step with E(t_{n+1}) for the forces evaluated at the new positions."""
        t_next = self.time + self.dt_fs
        if self._step_takes_forces:
            if forces is None:
                forces = self.atoms.get_forces(md=True)  # at (r_n, E(t_n)), cached
            self._set_field(t_next)
            out = self._inner_step(forces)
        else:
            self._set_field(t_next)
            out = self._inner_step()
        field_next = self.field(t_next)
        self.snapshot_dipole = self._dipole()
        dipole_next = self._path_increment() if self.path_dipole else self.snapshot_dipole
        self.work += float(np.dot(field_next - self._field_now, 0.5 * (self._dipole_now + dipole_next)))
        self._field_now, self._dipole_now = field_next, dipole_next
        return out

    def row(self) -> list[float]:
        """The current log row (see :data:`COLUMNS`)."""
        # E0 from the calculator's enthalpy and its own (snapshot) dipole; H with the logged M
        e_zero = float(self.atoms.get_potential_energy()) + float(np.dot(self._field_now, self.snapshot_dipole))
        enthalpy = e_zero - float(np.dot(self._field_now, self._dipole_now))
        kinetic = float(self.atoms.get_kinetic_energy())
        ndof = 3 * len(self.atoms)
        temperature = 2.0 * kinetic / (ndof * ase_units.kB) if ndof else 0.0
        return [self.time, *self._field_now, *self._dipole_now, e_zero, enthalpy, kinetic, self.work,
                enthalpy + kinetic + self.work, temperature]

    def _log(self) -> None:
        values = self.row()
        self.records.append(values)
        if self._file is not None:
            self._file.write(" ".join(f"{v:.10g}" for v in values) + "\n")
            self._file.flush()

    def log_arrays(self) -> dict[str, np.ndarray]:
        """The logged rows as arrays: "time" (T,) fs, "efield" (T, 3) V/Å, "dipole" (T, 3) e·Å,
        "energy_zero_field", "enthalpy", "kinetic", "work", "conserved" (T,) eV, "temperature" (T,) K."""
        data = np.asarray(self.records, dtype=np.float64).reshape(-1, len(COLUMNS))
        return {
            "time": data[:, 0], "efield": data[:, 1:4], "dipole": data[:, 4:7], "energy_zero_field": data[:, 7],
            "enthalpy": data[:, 8], "kinetic": data[:, 9], "work": data[:, 10], "conserved": data[:, 11],
            "temperature": data[:, 12],
        }

    def close(self) -> None:
        """Close the log file (if this object opened it) and give ``dyn.step`` back."""
        if self._own_file and self._file is not None:
            self._file.close()
        self._file = None
        self.dyn.step = self._inner_step
        if self._calculate is not None:
            del self.calc.calculate  # back to the class method
            self._calculate = None


def _open_log(logfile: str | Path | TextIO | None) -> tuple[TextIO | None, bool]:
    if logfile is None:
        return None, False
    if logfile == "-":
        import sys

        return sys.stdout, False
    if isinstance(logfile, str | Path):
        return open(logfile, "w"), True  # noqa: SIM115 - closed by FieldDrivenMD.close
    return logfile, False
