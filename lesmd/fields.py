"""Uniform electric fields E(t): static, AC (plane wave) and Gaussian-envelope pulses.

One description serves both engines. The parameterisation is exactly that of i-PI's
``<motion mode="driven_dynamics"><driven_dynamics><efield>`` (``ipi/engine/motion/driven_dynamics.py``,
class ``ElectricField``)::

    E(t) = A · cos(ω t + φ) · g(t),   g(t) = exp(−(t − t_peak)² / (2 s²))  if t_peak > 0 and s < ∞, else 1

with A the amplitude vector, ω the *angular* frequency, φ the phase, t_peak the time of the envelope maximum
and s its standard deviation (the envelope's full width at half maximum is 2√(2 ln 2) s ≈ 2.355 s).
A static field is ω = 0, φ = 0, no envelope; an AC field has no envelope.

Units: lesmd uses A in V/Å, ω in rad/fs, t, t_peak, s in fs. i-PI uses atomic units internally
(A in Hartree/(e·Bohr) = 51.422 V/Å, ω in rad per a.u. of time, times in a.u. of time = 0.02419 fs);
:meth:`ElectricField.to_ipi_xml` writes an ``<efield>`` block in atomic units, and
:meth:`ElectricField.from_ipi_xml` reads one (honouring any ``units=`` attributes, via i-PI's own parser).

i-PI applies the field as F_i += Z*_iᵀ E(t) (BECs from the driver's extras) inside its ``eda-nve``/``eda-nvt``
integrators, at the start (time t) and end (time t + dt) of each velocity-Verlet step; lesmd's ASE route
(:mod:`lesmd.field_md`) uses the same times, so both engines integrate the same equations of motion.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lesmd.units import AU_FIELD, AU_TIME_FS

_TWO_PI = 2.0 * math.pi
#: 1 THz = 1e-3 fs⁻¹ (an SI prefix, not a physical constant).
_THZ_IN_PER_FS = 1.0e-3


def thz_to_angular_frequency(frequency_thz: float) -> float:
    """Ordinary frequency ν (THz) → angular frequency ω = 2πν (rad/fs)."""
    return _TWO_PI * float(frequency_thz) * _THZ_IN_PER_FS


def parse_field_vector(value: str | Sequence[float] | np.ndarray) -> np.ndarray:
    """A field vector (3,) in V/Å from "Ex,Ey,Ez" (commas, semicolons, spaces or colons) or 3 numbers.

    Raises:
        ValueError: not exactly three finite numbers.
    """
    if isinstance(value, str):
        tokens = value.replace(",", " ").replace(";", " ").replace(":", " ").split()
        try:
            numbers = [float(t) for t in tokens]
        except ValueError as err:
            raise ValueError(f"field must be three numbers Ex,Ey,Ez in V/Å, got {value!r}") from err
    else:
        numbers = np.asarray(value, dtype=np.float64).reshape(-1).tolist()
    vec = np.asarray(numbers, dtype=np.float64)
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise ValueError(f"field must be three finite numbers Ex,Ey,Ez in V/Å, got {value!r}")
    return vec


@dataclass(frozen=True, eq=False)
class ElectricField:
    """A uniform, possibly time-dependent electric field E(t) = A cos(ωt + φ) g(t) (see the module docstring).

    Args:
        amplitude: A, (3,) V/Å.
        angular_frequency: ω, rad/fs (0 for a static field).
        phase: φ, rad.
        peak: t_peak, fs, time of the envelope maximum; must be > 0 when ``sigma`` is finite (i-PI switches the
            envelope off for t_peak ≤ 0, so such a pulse could not be described to it).
        sigma: s, fs, standard deviation of the Gaussian envelope; ``inf`` (default) = no envelope.
    """

    amplitude: np.ndarray
    angular_frequency: float = 0.0
    phase: float = 0.0
    peak: float = 0.0
    sigma: float = math.inf

    def __post_init__(self) -> None:
        amp = parse_field_vector(self.amplitude)
        amp.setflags(write=False)
        object.__setattr__(self, "amplitude", amp)
        for name in ("angular_frequency", "phase", "peak"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"field {name} must be finite, got {value}")
            object.__setattr__(self, name, value)
        sigma = float(self.sigma)
        if math.isnan(sigma) or sigma <= 0:
            raise ValueError(f"pulse width sigma must be > 0 fs (inf for no envelope), got {sigma}")
        if math.isfinite(sigma) and self.peak <= 0:
            raise ValueError(
                f"a Gaussian pulse needs its peak time > 0 fs (got {self.peak}); i-PI ignores the envelope "
                "otherwise. Shift the time origin so that the pulse peaks at t > 0."
            )
        object.__setattr__(self, "sigma", sigma)

    # --- constructors -------------------------------------------------------------------------------------
    @classmethod
    def static(cls, amplitude: Sequence[float] | np.ndarray | str) -> ElectricField:
        """A constant field E (V/Å)."""
        return cls(amplitude)

    @classmethod
    def ac(cls, amplitude: Sequence[float] | np.ndarray, angular_frequency: float, phase: float = 0.0) -> ElectricField:
        """A plane wave E(t) = A cos(ωt + φ); ω in rad/fs (see :func:`thz_to_angular_frequency`)."""
        return cls(amplitude, angular_frequency=angular_frequency, phase=phase)

    @classmethod
    def pulse(cls, amplitude: Sequence[float] | np.ndarray, peak: float, sigma: float,
              angular_frequency: float = 0.0, phase: float = 0.0) -> ElectricField:
        """A Gaussian-envelope pulse A cos(ω t + φ) exp(−(t − t_peak)²/(2 s²)); times in fs, ω in rad/fs."""
        if not math.isfinite(float(sigma)):
            raise ValueError("a pulse needs a finite width sigma (fs)")
        return cls(amplitude, angular_frequency=angular_frequency, phase=phase, peak=peak, sigma=sigma)

    # --- evaluation ---------------------------------------------------------------------------------------
    @property
    def has_envelope(self) -> bool:
        """True when the Gaussian envelope is on (same rule as i-PI: t_peak > 0 and s finite)."""
        return self.peak > 0 and math.isfinite(self.sigma)

    @property
    def is_static(self) -> bool:
        """True when E(t) does not depend on t."""
        return self.angular_frequency == 0.0 and not self.has_envelope

    def envelope(self, time: float | np.ndarray) -> float | np.ndarray:
        """Gaussian envelope g(t) (dimensionless, max 1 at t_peak); t in fs."""
        t = np.asarray(time, dtype=np.float64)
        if not self.has_envelope:
            return np.ones_like(t) if t.ndim else 1.0
        g = np.exp(-0.5 * ((t - self.peak) / self.sigma) ** 2)
        return g if t.ndim else float(g)

    def scalar(self, time: float | np.ndarray) -> float | np.ndarray:
        """The time profile f(t) = cos(ωt + φ) g(t), so that E(t) = A f(t)."""
        t = np.asarray(time, dtype=np.float64)
        f = np.cos(self.angular_frequency * t + self.phase) * self.envelope(t)
        return f if t.ndim else float(f)

    def __call__(self, time: float | np.ndarray) -> np.ndarray:
        """E(t), V/Å: shape (3,) for a scalar time (fs), (T, 3) for an array of T times."""
        f = np.asarray(self.scalar(time))
        return f[..., None] * self.amplitude

    def time_derivative(self, time: float | np.ndarray) -> np.ndarray:
        """dE/dt, V/(Å·fs), same shapes as :meth:`__call__`."""
        t = np.asarray(time, dtype=np.float64)
        phase = self.angular_frequency * t + self.phase
        g = np.asarray(self.envelope(t))
        dg = -(t - self.peak) / self.sigma**2 * g if self.has_envelope else np.zeros_like(g)
        df = -self.angular_frequency * np.sin(phase) * g + np.cos(phase) * dg
        return np.asarray(df)[..., None] * self.amplitude

    # --- i-PI ---------------------------------------------------------------------------------------------
    def to_ipi_xml(self, indent: str = "    ") -> str:
        """The ``<efield>`` block of i-PI's ``<driven_dynamics>``, every value in atomic units.

        The envelope lines are written only when the envelope is on, so i-PI's defaults (peak 0, sigma inf)
        stand for "no envelope" exactly as here.
        """
        amp = self.amplitude / AU_FIELD
        lines = [
            "<efield>",
            f"{indent}<amp units='atomic_unit'> [ {amp[0]:.17g}, {amp[1]:.17g}, {amp[2]:.17g} ] </amp>",
            f"{indent}<freq units='atomic_unit'> {self.angular_frequency * AU_TIME_FS:.17g} </freq>",
            f"{indent}<phase> {self.phase:.17g} </phase>",
        ]
        if self.has_envelope:
            lines.append(f"{indent}<peak units='atomic_unit'> {self.peak / AU_TIME_FS:.17g} </peak>")
            lines.append(f"{indent}<sigma units='atomic_unit'> {self.sigma / AU_TIME_FS:.17g} </sigma>")
        lines.append("</efield>")
        return "\n".join(lines)

    @classmethod
    def from_ipi_xml(cls, text: str) -> ElectricField:
        """Read an ``<efield>`` block (or the first one inside a whole i-PI input file) with i-PI's parser.

        Units attributes (``v/ang``, ``thz``, ``femtosecond``, ...) are honoured as i-PI honours them. An envelope
        that i-PI would ignore (peak ≤ 0 with a finite sigma) is dropped with a warning, reproducing i-PI's E(t).

        Raises:
            ValueError: no ``<efield>`` element in ``text`` or unparsable values.
        """
        from ipi.inputs.motion.driven_dynamics import InputElectricField
        from ipi.utils.io.inputs.io_xml import xml_parse_string

        try:
            root = xml_parse_string(text)
        except Exception as err:  # i-PI raises bare exceptions for malformed XML
            raise ValueError(f"could not parse i-PI XML: {err}") from err
        node = _find_node(root, "efield")
        if node is None:
            raise ValueError("no <efield> element found in the i-PI XML")
        reader = InputElectricField()
        try:
            reader.parse(node)
            ef = reader.fetch()
        except Exception as err:
            raise ValueError(f"invalid <efield> block: {err}") from err
        amp = np.asarray(ef.amp, dtype=np.float64) * AU_FIELD
        peak, sigma = float(ef.peak) * AU_TIME_FS, float(ef.sigma) * AU_TIME_FS
        if peak <= 0 and math.isfinite(sigma):
            warnings.warn(f"<efield> has sigma but peak {peak} fs ≤ 0: i-PI ignores the envelope; so does lesmd",
                          stacklevel=2)
            peak, sigma = 0.0, math.inf
        return cls(amp, angular_frequency=float(ef.freq) / AU_TIME_FS, phase=float(ef.phase), peak=peak,
                   sigma=sigma)


def _find_node(node, name: str):  # noqa: ANN001, ANN202 - i-PI's xml_node has no public type
    """Depth-first search of i-PI's parsed XML tree for the first element called ``name``."""
    for tag, child in getattr(node, "fields", []):
        if tag == name:
            return child
        found = _find_node(child, name)
        if found is not None:
            return found
    return None
