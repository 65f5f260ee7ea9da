"""Infrared and dielectric spectra from the total dipole M(t) of a molecular-dynamics trajectory.

Units: M in e·Å, time in fs, volume in Å³, temperature in K, energies in eV; ε is dimensionless and the
IR absorption α(ω)n(ω) comes out in cm⁻¹. Wavenumbers ν̃ = ω / (2π c) in cm⁻¹.

Physics (classical linear response, conducting "tin-foil" boundary conditions of Ewald sums):

* Static dielectric constant (Neumann, Mol. Phys. 50, 841 (1983)):
  ε = ε∞ + (⟨M·M⟩ − ⟨M⟩·⟨M⟩) / (3 V k_B T ε0).
  The error bar comes from block averaging (ε of each of n contiguous blocks, standard error of their mean);
  the running estimate uses the first t of the trajectory.
* Frequency-dependent dielectric function, ε(ω) = ε'(ω) − i ε''(ω) for fields ∝ e^{iωt}
  (Neumann & Steinhauser, Chem. Phys. Lett. 95, 417 (1983)), with C(t) = ⟨δM(0)·δM(t)⟩, δM = M − ⟨M⟩:
  ε(ω) − ε∞ = [C(0) − iω ∫_0^∞ C(t) e^{−iωt} dt] / (3 V k_B T ε0),  so ε(0) is the static ε above.
* IR absorption coefficient times refractive index (McQuarrie, Statistical Mechanics, ch. 21;
  Ramírez, López-Ciudad, Kumar & Marx, J. Chem. Phys. 121, 3973 (2004)), SI form:
  α(ω) n(ω) = β / (6 c V ε0) ∫_{−∞}^{∞} e^{−iωt} ⟨Ṁ(0)·Ṁ(t)⟩ dt = ω ε''(ω) / c,
  with β = 1/(k_B T) in 1/eV, c in cm/fs, ε0 in e²/(eV·Å): the result is in cm⁻¹.
* Quantum corrections (Ramírez et al. 2004). The quantum expression is
  α n = [ω (1 − e^{−βħω}) / (6ħcVε0)] C̃_MM(ω), C̃ the Fourier transform of the quantum ⟨M(0)·M(t)⟩; a quantum
  correction factor Q(ω) approximates it from the classical one, C̃ ≈ Q C̃_cl. With ⟨Ṁ·Ṁ⟩(ω) = ω² C̃_MM(ω):
  α n = [β / (6cVε0)] ∫ e^{−iωt}⟨Ṁ(0)·Ṁ(t)⟩_cl dt × Q(ω)(1 − e^{−x})/x,  x = βħω.
  "harmonic" Q = x/(1 − e^{−x}) (exact for harmonic systems with linear dipoles; the only Q consistent with
  the fluctuation–dissipation theorem) makes the last factor 1: the classical formula above *is* the harmonic
  quantum-corrected spectrum, and its band integrals obey the quantum (Thomas–Reiche–Kuhn) sum rule. "standard"
  Q = 2/(1 + e^{−x}) gives the factor tanh(x/2)/(x/2); "schofield" Q = e^{x/2} gives 2 sinh(x/2)/x.
  Multiplying the classical formula by x/(1 − e^{−x}) would count the correction twice (×16 at 3400 cm⁻¹).

Numerics: correlation functions by zero-padded FFT (Wiener–Khinchin, no circular wrap-around), unbiased
normalisation 1/(n − k), truncated at a maximum lag and multiplied by a one-sided window (Hann by default),
then zero-padded before the cosine transform to interpolate the spectrum on a fine grid. When only M(t) is known,
Ṁ is taken from finite differences ΔM/Δt and the spectrum is divided by the finite-difference filter
[sin(ωΔt/2)/(ωΔt/2)]², which makes it the exact spectral derivative of the sampled signal (below Nyquist).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.signal

from lesmd.units import EPSILON0, HBAR, KB, SPEED_OF_LIGHT_CM_PER_FS

__all__ = [
    "DielectricResult",
    "DielectricSpectrum",
    "SpectrumResult",
    "add_cli_arguments",
    "autocorrelation",
    "correlation_time",
    "dielectric_spectrum",
    "find_peaks",
    "harmonic_quantum_correction",
    "quantum_correction_factor",
    "ir_spectrum",
    "lag_window",
    "run_cli",
    "static_dielectric",
]

#: Fewest frames any analysis accepts.
MIN_FRAMES = 16
WINDOWS = ("hann", "blackman", "gaussian", "none")
QUANTUM_CORRECTIONS = ("none", "harmonic", "standard", "schofield")


# ----------------------------------------------------------------------------------------------- checks
def _check_series(values: np.ndarray, name: str, min_frames: int = MIN_FRAMES) -> np.ndarray:
    """Return `values` as a float64 (n_frames, 3) array after checking shape, length and finiteness."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_frames, 3), got {arr.shape}")
    if arr.shape[0] < min_frames:
        raise ValueError(f"too few frames: {arr.shape[0]} {name} given, at least {min_frames} are needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _check_positive(value: float | None, name: str, unit: str) -> float:
    if value is None:
        raise ValueError(f"{name} is required ({unit})")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number in {unit}, got {value}")
    return value


def _mean_volume(volume_A3: float | np.ndarray | None) -> float:
    if volume_A3 is None:
        raise ValueError("the volume is required (Å³): the trajectory has no cell; pass a volume")
    vol = np.asarray(volume_A3, dtype=np.float64)
    if vol.size == 0 or not np.all(np.isfinite(vol)) or np.any(vol <= 0.0):
        raise ValueError(f"the volume must be positive and finite (Å³), got {volume_A3}")
    return float(vol.mean())


# ----------------------------------------------------------------------------------------------- numerics
def autocorrelation(x: np.ndarray, max_lag: int | None = None) -> np.ndarray:
    """Unbiased autocorrelation C(k) = (1/(n−k)) Σ_t x(t)·x(t+k), summed over components.

    Args:
        x: (n_frames,) or (n_frames, d) samples at uniform spacing.
        max_lag: number of lags to return (k = 0 … max_lag−1); default n_frames.
    Returns:
        (max_lag,) float64; same units as x².
    Computed by FFT with zero padding to ≥ 2 n (no circular wrap-around), O(n log n).
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    n = arr.shape[0]
    max_lag = n if max_lag is None else int(max_lag)
    if not 1 <= max_lag <= n:
        raise ValueError(f"max_lag must be in [1, {n}], got {max_lag}")
    n_fft = scipy.fft.next_fast_len(2 * n, real=True)
    spec = scipy.fft.rfft(arr, n=n_fft, axis=0)
    power = (spec.real**2 + spec.imag**2).sum(axis=1)
    acf = scipy.fft.irfft(power, n=n_fft)[:max_lag]
    return acf / (n - np.arange(max_lag))


def correlation_time(x: np.ndarray, timestep_fs: float) -> float:
    """Integrated correlation time (fs) of the fluctuations of x (n_frames, d): ∫ C(t)/C(0) dt up to C's first zero.

    Used to judge whether blocks for an error bar are long enough (they should span several of it).
    """
    arr = _check_series(x, "samples")
    acf = autocorrelation(arr - arr.mean(axis=0), len(arr) // 2)
    if acf[0] <= 0.0:
        return 0.0
    negative = np.flatnonzero(acf <= 0.0)
    end = negative[0] if len(negative) else len(acf)
    return float(timestep_fs * (acf[:end].sum() / acf[0] - 0.5))


def lag_window(name: str, n_lags: int) -> np.ndarray:
    """One-sided lag window w(k), k = 0 … n_lags−1, with w(0) = 1 falling to 0 at k = n_lags.

    `name`: "hann" (0.5 + 0.5 cos(πk/n)), "blackman", "gaussian" (exp(−½ (3k/n)²)) or "none" (boxcar).
    """
    k = np.arange(n_lags) / n_lags
    if name == "hann":
        return 0.5 + 0.5 * np.cos(np.pi * k)
    if name == "blackman":
        return 0.42 + 0.5 * np.cos(np.pi * k) + 0.08 * np.cos(2.0 * np.pi * k)
    if name == "gaussian":
        return np.exp(-0.5 * (3.0 * k) ** 2)
    if name == "none":
        return np.ones(n_lags)
    raise ValueError(f"unknown window {name!r}; choose one of {', '.join(WINDOWS)}")


def _lag_count(n_frames: int, timestep_fs: float, max_lag_fs: float | None, default_fs: float) -> int:
    """Number of correlation lags: max_lag_fs (or the default, capped at half the trajectory) / Δt + 1."""
    half = n_frames // 2
    if max_lag_fs is None:
        if not math.isfinite(default_fs):
            return max(2, half)
        return max(2, min(half, int(round(default_fs / timestep_fs)) + 1))
    n_lags = int(round(_check_positive(max_lag_fs, "max_lag_fs", "fs") / timestep_fs)) + 1
    if n_lags > n_frames - 1:
        total = (n_frames - 1) * timestep_fs
        raise ValueError(f"max_lag_fs = {max_lag_fs} fs exceeds the trajectory length {total:g} fs")
    return max(2, n_lags)


def _even_fourier(c: np.ndarray, timestep_fs: float, pad_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided transform ∫ e^{−iωt} c(|t|) dt (trapezoid) of a one-sided even function c(t ≥ 0).

    Returns (wavenumber cm⁻¹, transform) on the grid ν̃_j = j / (n_fft Δt c), n_fft ≥ pad_factor·2·len(c).
    """
    if int(pad_factor) < 1:
        raise ValueError(f"pad_factor must be ≥ 1, got {pad_factor}")
    n_fft = scipy.fft.next_fast_len(2 * len(c) * int(pad_factor), real=True)
    transform = timestep_fs * (2.0 * scipy.fft.rfft(c, n=n_fft).real - c[0])
    wavenumber = np.arange(len(transform)) / (n_fft * timestep_fs * SPEED_OF_LIGHT_CM_PER_FS)
    return wavenumber, transform


def _nyquist_cm(timestep_fs: float) -> float:
    return 1.0 / (2.0 * timestep_fs * SPEED_OF_LIGHT_CM_PER_FS)


def _crop(wavenumber: np.ndarray, max_wavenumber: float | None, timestep_fs: float) -> np.ndarray:
    """Boolean mask of the grid points up to max_wavenumber; error if it lies above Nyquist."""
    nyquist = _nyquist_cm(timestep_fs)
    if max_wavenumber is None:
        return wavenumber <= nyquist
    max_wavenumber = _check_positive(max_wavenumber, "max_wavenumber", "cm⁻¹")
    if max_wavenumber > nyquist * (1.0 + 1e-9):
        raise ValueError(
            f"timestep {timestep_fs:g} fs resolves wavenumbers only up to {nyquist:.1f} cm⁻¹ (Nyquist), "
            f"below the requested {max_wavenumber:g} cm⁻¹: is the timestep (fs, × output stride) right?"
        )
    return wavenumber <= max_wavenumber


def _beta_hbar_omega(wavenumber: np.ndarray, temperature_K: float) -> np.ndarray:
    omega = 2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * np.asarray(wavenumber, dtype=np.float64)  # rad/fs
    return HBAR * omega / (KB * temperature_K)


def harmonic_quantum_correction(wavenumber: np.ndarray, temperature_K: float) -> np.ndarray:
    """Harmonic quantum correction factor Q = βħω / (1 − e^{−βħω}) (→ 1 at ω = 0) of the *correlation function*
    C̃_MM (not of the classical absorption formula, see the module doc), dimensionless."""
    x = _beta_hbar_omega(wavenumber, temperature_K)
    out = np.ones_like(x)
    nz = x > 1e-12
    out[nz] = x[nz] / (-np.expm1(-x[nz]))
    return out


def quantum_correction_factor(name: str, wavenumber: np.ndarray, temperature_K: float) -> np.ndarray:
    """Factor Q(ω)(1 − e^{−x})/x (x = βħω) applied to the classical α(ω)n(ω) for correction ``name``.

    "none" (classical) and "harmonic" give 1, "standard" tanh(x/2)/(x/2), "schofield" 2 sinh(x/2)/x; all → 1 as
    ω → 0 (module doc; Ramírez et al., J. Chem. Phys. 121, 3973 (2004)).
    """
    if name not in QUANTUM_CORRECTIONS:
        raise ValueError(f"unknown quantum_correction {name!r}; use one of {QUANTUM_CORRECTIONS}")
    x = _beta_hbar_omega(wavenumber, temperature_K)
    out = np.ones_like(x)
    nz = x > 1e-12
    if name == "standard":
        out[nz] = np.tanh(x[nz] / 2.0) / (x[nz] / 2.0)
    elif name == "schofield":
        out[nz] = 2.0 * np.sinh(x[nz] / 2.0) / x[nz]
    return out


# ----------------------------------------------------------------------------------------------- results
@dataclass
class SpectrumResult:
    """IR spectrum α(ω)n(ω).

    Attributes:
        wavenumber: (n,) cm⁻¹.
        absorption: (n,) α(ω)n(ω) in cm⁻¹ (with the factor of `quantum_correction`, module doc).
        lag_fs: (n_lags,) correlation lags, fs.
        correlation: (n_lags,) ⟨Ṁ(0)·Ṁ(t)⟩ in (e·Å/fs)², before the window.
        timestep_fs, temperature_K, volume_A3, window, quantum_correction, n_frames: analysis settings.
    """

    wavenumber: np.ndarray
    absorption: np.ndarray
    lag_fs: np.ndarray
    correlation: np.ndarray
    timestep_fs: float
    temperature_K: float
    volume_A3: float
    window: str
    quantum_correction: str
    n_frames: int

    def peaks(self, max_peaks: int = 8, min_prominence: float = 0.05, min_wavenumber: float = 50.0):
        """Peak list [(wavenumber cm⁻¹, height cm⁻¹)], highest first; see :func:`find_peaks`."""
        return find_peaks(self.wavenumber, self.absorption, max_peaks, min_prominence, min_wavenumber)

    def to_csv(self, path) -> None:
        """Write `wavenumber_cm-1,absorption` (cm⁻¹, cm⁻¹) with that exact header."""
        _write_csv(path, ["wavenumber_cm-1", "absorption"], [self.wavenumber, self.absorption])


@dataclass
class DielectricResult:
    """Static dielectric constant with its block-averaged standard error and running estimate.

    Attributes:
        epsilon, epsilon_err: ε and its standard error (dimensionless).
        epsilon_inf, n_frames, n_blocks, temperature_K, volume_A3 (mean volume, Å³): inputs.
        block_epsilon: (n_blocks,) ε of each contiguous block.
        running_frames: (m,) frame counts; running_epsilon: (m,) ε from the first running_frames frames.
    """

    epsilon: float
    epsilon_err: float
    epsilon_inf: float
    n_frames: int
    n_blocks: int
    temperature_K: float
    volume_A3: float
    block_epsilon: np.ndarray
    running_frames: np.ndarray
    running_epsilon: np.ndarray
    extra: dict = field(default_factory=dict)


@dataclass
class DielectricSpectrum:
    """ε(ω) = ε'(ω) − i ε''(ω): wavenumber (n,) cm⁻¹, epsilon_real (n,), epsilon_imag (n,) = ε'' ≥ 0."""

    wavenumber: np.ndarray
    epsilon_real: np.ndarray
    epsilon_imag: np.ndarray

    def to_csv(self, path) -> None:
        """Write `wavenumber_cm-1,epsilon_real,epsilon_imag`."""
        _write_csv(
            path,
            ["wavenumber_cm-1", "epsilon_real", "epsilon_imag"],
            [self.wavenumber, self.epsilon_real, self.epsilon_imag],
        )


def _write_csv(path, header: list[str], columns: list[np.ndarray]) -> None:
    data = np.column_stack(columns)
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="", fmt="%.10g")


# ----------------------------------------------------------------------------------------------- analyses
def _dipole_derivative(dipoles: np.ndarray | None, derivative: np.ndarray | None, timestep_fs: float):
    """Return (Ṁ samples (e·Å/fs), whether they are finite differences of M)."""
    if (dipoles is None) == (derivative is None):
        raise ValueError("give exactly one of dipoles (e·Å) or dipole_derivative (e·Å/fs)")
    if derivative is not None:
        return _check_series(derivative, "dipole derivatives"), False
    m = _check_series(dipoles, "dipoles", MIN_FRAMES + 1)
    return np.diff(m, axis=0) / timestep_fs, True


def ir_spectrum(
    dipoles: np.ndarray | None = None,
    timestep_fs: float | None = None,
    volume_A3: float | np.ndarray | None = None,
    temperature_K: float | None = None,
    *,
    dipole_derivative: np.ndarray | None = None,
    quantum_correction: str = "none",
    window: str = "hann",
    max_lag_fs: float | None = None,
    pad_factor: int = 4,
    max_wavenumber: float | None = None,
) -> SpectrumResult:
    """IR absorption α(ω)n(ω) = β/(6cVε0) ∫ e^{−iωt} ⟨Ṁ(0)·Ṁ(t)⟩ dt, in cm⁻¹.

    Args:
        dipoles: (n_frames, 3) total dipole M(t) in e·Å (itinerant: continuous in time); or
        dipole_derivative: (n_frames, 3) Ṁ(t) = Σ_i Z*_i v_i in e·Å/fs (give exactly one of the two).
        timestep_fs: time between stored frames (fs).
        volume_A3: cell volume (Å³), scalar or per frame (the mean is used).
        temperature_K: temperature (K).
        quantum_correction: "none" (classical), "harmonic" (the same numbers: the classical formula is the
            harmonic quantum-corrected spectrum), "standard" or "schofield" (see the module doc).
        window: lag window of the correlation function (see :func:`lag_window`).
        max_lag_fs: correlation length; default min(2 ps, half the trajectory). Resolution ≈ 1/(c·max_lag).
        pad_factor: zero padding of the windowed correlation (finer wavenumber grid).
        max_wavenumber: highest wavenumber returned (cm⁻¹, default Nyquist); above Nyquist is an error.
    Returns:
        :class:`SpectrumResult` with `absorption` in cm⁻¹ on `wavenumber` in cm⁻¹.
    """
    dt = _check_positive(timestep_fs, "timestep_fs", "fs")
    volume = _mean_volume(volume_A3)
    temperature = _check_positive(temperature_K, "temperature_K", "K")
    if quantum_correction not in QUANTUM_CORRECTIONS:
        raise ValueError(f"unknown quantum_correction {quantum_correction!r}; use one of {QUANTUM_CORRECTIONS}")
    mdot, differenced = _dipole_derivative(dipoles, dipole_derivative, dt)
    n_lags = _lag_count(len(mdot), dt, max_lag_fs, default_fs=2000.0)
    corr = autocorrelation(mdot, n_lags)
    wavenumber, transform = _even_fourier(corr * lag_window(window, n_lags), dt, pad_factor)
    if differenced:  # undo the finite-difference filter |2 sin(ωΔt/2)/(ωΔt)|²
        half = np.pi * SPEED_OF_LIGHT_CM_PER_FS * wavenumber * dt  # ωΔt/2
        transform = transform / np.sinc(half / np.pi) ** 2
    prefactor = 1.0 / (KB * temperature * 6.0 * SPEED_OF_LIGHT_CM_PER_FS * volume * EPSILON0)
    absorption = prefactor * transform
    absorption = absorption * quantum_correction_factor(quantum_correction, wavenumber, temperature)
    keep = _crop(wavenumber, max_wavenumber, dt)
    return SpectrumResult(
        wavenumber=wavenumber[keep],
        absorption=absorption[keep],
        lag_fs=np.arange(n_lags) * dt,
        correlation=corr,
        timestep_fs=dt,
        temperature_K=temperature,
        volume_A3=volume,
        window=window,
        quantum_correction=quantum_correction,
        n_frames=len(mdot) + int(differenced),
    )


def _fluctuation_epsilon(m: np.ndarray, volume: float, temperature: float, epsilon_inf: float) -> float:
    variance = float(((m - m.mean(axis=0)) ** 2).sum(axis=1).mean())
    return epsilon_inf + variance / (3.0 * volume * KB * temperature * EPSILON0)


def static_dielectric(
    dipoles: np.ndarray,
    volume_A3: float | np.ndarray,
    temperature_K: float,
    epsilon_inf: float = 1.0,
    n_blocks: int = 10,
    n_running: int = 200,
) -> DielectricResult:
    """ε = ε∞ + (⟨M·M⟩ − ⟨M⟩·⟨M⟩)/(3 V k_B T ε0) with a block-averaged standard error.

    Args:
        dipoles: (n_frames, 3) itinerant total dipole M in e·Å.
        volume_A3: volume (Å³), scalar or per frame (mean used, as in `mdtraj.static_dielectric`).
        temperature_K: temperature (K).
        epsilon_inf: high-frequency (electronic) dielectric constant added to the nuclear part.
        n_blocks: contiguous blocks for the error bar: σ_ε = std(ε_blocks)/√n_blocks.
        n_running: number of points of the running estimate ε(first t).
    Returns:
        :class:`DielectricResult`.
    """
    m = _check_series(dipoles, "dipoles")
    volume = _mean_volume(volume_A3)
    temperature = _check_positive(temperature_K, "temperature_K", "K")
    if not (math.isfinite(epsilon_inf) and epsilon_inf >= 1.0):
        raise ValueError(f"epsilon_inf must be ≥ 1, got {epsilon_inf}")
    n = len(m)
    if not 2 <= n_blocks <= n // 2:
        raise ValueError(f"n_blocks must be between 2 and n_frames/2 = {n // 2}, got {n_blocks}")
    size = n // n_blocks
    blocks = np.array(
        [_fluctuation_epsilon(m[b * size : (b + 1) * size], volume, temperature, epsilon_inf) for b in range(n_blocks)]
    )
    # running estimate from cumulative sums: Var_k = <M²>_k − <M>_k², shifted by the mean for accuracy
    centred = m - m.mean(axis=0)
    counts = np.arange(1, n + 1)[:, None]
    mean_k = np.cumsum(centred, axis=0) / counts
    sq_k = np.cumsum((centred**2).sum(axis=1)) / counts[:, 0]
    running = epsilon_inf + (sq_k - (mean_k**2).sum(axis=1)) / (3.0 * volume * KB * temperature * EPSILON0)
    idx = np.unique(np.linspace(1, n - 1, min(n_running, n - 1)).astype(int))
    return DielectricResult(
        epsilon=_fluctuation_epsilon(m, volume, temperature, epsilon_inf),
        epsilon_err=float(blocks.std(ddof=1) / math.sqrt(n_blocks)),
        epsilon_inf=float(epsilon_inf),
        n_frames=n,
        n_blocks=n_blocks,
        temperature_K=temperature,
        volume_A3=volume,
        block_epsilon=blocks,
        running_frames=idx + 1,
        running_epsilon=running[idx],
    )


def relaxation_response(corr: np.ndarray, timestep_fs: float, pad_factor: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """χ(ω) = C(0) − iω ∫_0^∞ C(t) e^{−iωt} dt = −∫_0^∞ Ċ(t) e^{−iωt} dt for samples C_n = C(nΔt), n < N.

    With ∫_0^∞ C e^{−iωt} dt = A − iB: χ = C(0) − ωB − iωA. A = ∫_0^∞ C cos ωt (ε″) is the trapezoid rule of the
    even extension, spectrally accurate for smooth C, plus the exact trapezoid error of a cusp, C′(0⁺) Δt²
    [1/(4 sin²(θ/2)) − 1/θ²] (= Δt²/12 C′(0⁺) for small θ; the sum Σ n cos nθ of the kink t·C′(0⁺) in closed
    form; C′(0⁺) by a second-order one-sided difference, which vanishes for smooth even C).
    B = ∫_0^∞ C sin ωt (ε′) is that of the piecewise-linear interpolant of the samples, done exactly: with
    θ = ωΔt, ∫_0^∞ C e^{−iωt} dt = Δt [C_0 (1 − iθ − e^{−iθ})/θ² +
    sinc²(θ/2) Σ_{n≥1} C_n e^{−inθ}]. The trapezoid rule for B errs by C(0)(ωΔt)²/12 (the kink of C(|t|) sin ω|t|
    at t = 0), which for a Debye relaxation (Δε 91, τ 100 fs, 2 fs frames) put ε′ at 3.1 / 6.2 / 19.6 instead of
    2.04 / 1.84 / 1.80 at 1000 / 2000 / 4000 cm⁻¹.

    Returns (wavenumber (n,) cm⁻¹, χ (n,) complex, units of C) on the grid ν̃_j = j/(n_fft Δt c).
    """
    if int(pad_factor) < 1:
        raise ValueError(f"pad_factor must be ≥ 1, got {pad_factor}")
    corr = np.asarray(corr, dtype=np.float64)
    n_fft = scipy.fft.next_fast_len(2 * len(corr) * int(pad_factor), real=True)
    tail = corr.copy()
    tail[0] = 0.0
    sums = scipy.fft.rfft(tail, n=n_fft)  # Σ_{n≥1} C_n e^{−inθ}
    wavenumber = np.arange(len(sums)) / (n_fft * timestep_fs * SPEED_OF_LIGHT_CM_PER_FS)
    theta = 2.0 * np.pi * np.arange(len(sums)) / n_fft  # ωΔt
    small = theta < 1e-4
    t = np.where(small, 1.0, theta)
    edge = np.where(small, 0.5 - 1j * theta / 6.0, (1.0 - 1j * t - np.exp(-1j * t)) / (t * t))
    sinc2 = np.where(small, 1.0 - theta**2 / 12.0, (np.sin(0.5 * t) / (0.5 * t)) ** 2)
    integral = timestep_fs * (corr[0] * edge + sinc2 * sums)
    omega = theta / timestep_fs
    # the cosine part (ε'') by the trapezoid rule of the even extension, exact for band-limited C (the linear
    # interpolant's sinc² would bias a smooth band by (ωΔt)²/12); the sine part (ε′) from the interpolant
    even = timestep_fs * (sums.real + 0.5 * corr[0])
    if len(corr) >= 3:  # end correction for a cusp at t = 0 (Debye); zero when C is smooth and even
        slope = (-3.0 * corr[0] + 4.0 * corr[1] - corr[2]) / (2.0 * timestep_fs)
        half = 0.5 * np.where(small, 1.0, theta)
        kink = np.where(small, 1.0 / 12.0 + theta**2 / 240.0,
                        1.0 / (4.0 * np.sin(half) ** 2) - 1.0 / (4.0 * half**2))  # fmt: skip
        even = even + timestep_fs**2 * slope * kink
    return wavenumber, corr[0] - 1j * omega * (even - 1j * (-integral.imag))


def dielectric_spectrum(
    dipoles: np.ndarray,
    timestep_fs: float,
    volume_A3: float | np.ndarray,
    temperature_K: float,
    epsilon_inf: float = 1.0,
    *,
    window: str = "hann",
    max_lag_fs: float | None = None,
    pad_factor: int = 4,
    max_wavenumber: float | None = None,
) -> DielectricSpectrum:
    """ε(ω) − ε∞ = [C(0) − iω ∫_0^∞ C(t) e^{−iωt} dt]/(3Vk_BTε0), C(t) = ⟨δM(0)·δM(t)⟩.

    Args:
        dipoles: (n_frames, 3) itinerant M in e·Å; timestep_fs: frame spacing (fs); volume_A3 (Å³);
        temperature_K (K); epsilon_inf: ε∞.
        window, pad_factor: as in :func:`ir_spectrum`; max_lag_fs: default half the trajectory (slow
        Debye relaxation needs long lags).
        max_wavenumber: highest wavenumber (cm⁻¹, default Nyquist).
    Returns:
        :class:`DielectricSpectrum` with ε' and ε'' ≥ 0 on a wavenumber grid (cm⁻¹); ε'(0) = static ε.
    """
    dt = _check_positive(timestep_fs, "timestep_fs", "fs")
    m = _check_series(dipoles, "dipoles")
    volume = _mean_volume(volume_A3)
    temperature = _check_positive(temperature_K, "temperature_K", "K")
    n_lags = _lag_count(len(m), dt, max_lag_fs, default_fs=math.inf)
    corr = autocorrelation(m - m.mean(axis=0), n_lags) * lag_window(window, n_lags)
    wavenumber, response = relaxation_response(corr, dt, pad_factor)
    response = response / (3.0 * volume * KB * temperature * EPSILON0)
    keep = _crop(wavenumber, max_wavenumber, dt)
    return DielectricSpectrum(
        wavenumber=wavenumber[keep],
        epsilon_real=epsilon_inf + response.real[keep],
        epsilon_imag=-response.imag[keep],
    )


def find_peaks(
    wavenumber: np.ndarray,
    absorption: np.ndarray,
    max_peaks: int = 8,
    min_prominence: float = 0.05,
    min_wavenumber: float = 50.0,
) -> list[tuple[float, float]]:
    """Local maxima of a spectrum, refined by a parabola through the three top points.

    Args:
        wavenumber, absorption: (n,) grid (cm⁻¹) and spectrum.
        max_peaks: most peaks returned (highest first).
        min_prominence: prominence threshold relative to the highest point above `min_wavenumber`.
        min_wavenumber: ignore the zero-frequency region below this (cm⁻¹).
    Returns:
        [(wavenumber cm⁻¹, height)] sorted by height, descending.
    """
    sel = wavenumber >= min_wavenumber
    x, y = np.asarray(wavenumber)[sel], np.asarray(absorption)[sel]
    if len(y) < 3:
        return []
    idx, props = scipy.signal.find_peaks(y, prominence=min_prominence * float(np.max(np.abs(y))))
    peaks = []
    for i in idx:
        y0, y1, y2 = y[i - 1], y[i], y[i + 1]
        denom = y0 - 2.0 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom != 0.0 else 0.0
        step = x[i + 1] - x[i]
        peaks.append((float(x[i] + shift * step), float(y1 - 0.25 * (y0 - y2) * shift)))
    peaks.sort(key=lambda p: -p[1])
    return peaks[:max_peaks]


# ----------------------------------------------------------------------------------------------- CLI
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd spectrum` (see :mod:`lesmd.spectra_cli`)."""
    from lesmd.spectra_cli import add_arguments

    add_arguments(parser)


def run_cli(args: argparse.Namespace) -> int:
    """Run `lesmd spectrum`: read the trajectory, write ir.csv, dielectric.json, epsilon_omega.csv, PNGs."""
    from lesmd.spectra_cli import run

    return run(args)
