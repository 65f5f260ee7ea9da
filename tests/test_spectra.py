"""IR and dielectric analysis (lesmd.spectra) against analytic results for synthetic dipole signals.

A stationary Gaussian signal with a prescribed autocorrelation is built by spectral synthesis (random phases,
exact amplitudes), so the expected spectra are known in closed form.
"""

import math

import ase.units
import numpy as np
import pytest

from lesmd.spectra import (
    autocorrelation,
    correlation_time,
    dielectric_spectrum,
    find_peaks,
    harmonic_quantum_correction,
    ir_spectrum,
    lag_window,
    quantum_correction_factor,
    static_dielectric,
)
from lesmd.units import EPSILON0, KB, SPEED_OF_LIGHT_CM_PER_FS

C = SPEED_OF_LIGHT_CM_PER_FS


def synthesize(n: int, dt: float, spectrum, seed: int = 0) -> np.ndarray:
    """(n, 3) stationary signal whose autocorrelation per component is the inverse FT of spectrum(ω).

    spectrum(ω): two-sided S(ω) = ∫ C(t) e^{−iωt} dt, ω in rad/fs.
    """
    rng = np.random.default_rng(seed)
    omega = 2.0 * np.pi * np.fft.rfftfreq(n, dt)
    amplitude = np.sqrt(spectrum(omega) / dt)
    out = []
    for _ in range(3):
        phase = np.exp(2j * np.pi * rng.random(len(omega)))
        phase[0] = phase[-1] = 1.0
        out.append(np.fft.irfft(amplitude * phase * math.sqrt(n), n))
    return np.stack(out, axis=1)


def damped_oscillators(lines, tau):
    """S(ω) of C(t) = Σ A e^{−|t|/τ} cos(ω0 t) for lines [(wavenumber cm⁻¹, A (e·Å)²)]."""

    def spectrum(omega):
        total = np.zeros_like(omega)
        for wavenumber, amp in lines:
            w0 = 2.0 * np.pi * C * wavenumber
            total += amp * (tau / (1 + ((omega - w0) * tau) ** 2) + tau / (1 + ((omega + w0) * tau) ** 2))
        return total

    return spectrum


LINES = [(1000.0, 1.0), (2500.0, 0.3)]
TAU, MAX_LAG, DT, VOLUME, TEMPERATURE = 500.0, 4000.0, 2.0, 1000.0, 300.0


@pytest.fixture(scope="module")
def oscillator_dipoles():
    return synthesize(2**18, DT, damped_oscillators(LINES, TAU))


def test_damped_oscillations_give_peaks_at_their_wavenumbers_with_analytic_heights(oscillator_dipoles):
    result = ir_spectrum(oscillator_dipoles, DT, VOLUME, TEMPERATURE, max_lag_fs=MAX_LAG)
    peaks = sorted(result.peaks(max_peaks=2))
    # αn(ω) = β/(6cVε0) · 3 · ω² S_M(ω); at ω0: S_M = A·τ_eff with the Hann lag window w(t) = ½ + ½cos(πt/T):
    # τ_eff = ∫_0^∞ e^{−t/τ} w(t) dt = τ [½ + ½ / (1 + (πτ/T)²)] (the same for both lines).
    tau_eff = TAU * (0.5 + 0.5 / (1.0 + (math.pi * TAU / MAX_LAG) ** 2))
    prefactor = 1.0 / (KB * TEMPERATURE * 6.0 * C * VOLUME * EPSILON0)
    expected = [prefactor * 3.0 * amp * (2 * math.pi * C * wn) ** 2 * tau_eff for wn, amp in LINES]
    for (wn, height), (wn_true, _), h_true in zip(peaks, LINES, expected, strict=True):
        assert abs(wn - wn_true) < 2.0
        assert height == pytest.approx(h_true, rel=0.02)
    # relative height: (A1 ω1²)/(A2 ω2²)
    ratio = (LINES[0][1] * LINES[0][0] ** 2) / (LINES[1][1] * LINES[1][0] ** 2)
    assert peaks[0][1] / peaks[1][1] == pytest.approx(ratio, rel=0.02)


def test_finite_difference_filter_is_undone_for_coarse_sampling():
    """Sampling every 4 fs (ωΔt/2 ≈ 0.94 at 2500 cm⁻¹) still gives the analytic ω² S_M peak height."""
    dt = 4.0
    m = synthesize(2**17, dt, damped_oscillators([(2500.0, 1.0)], TAU), seed=3)
    result = ir_spectrum(m, dt, VOLUME, TEMPERATURE, max_lag_fs=MAX_LAG)
    tau_eff = TAU * (0.5 + 0.5 / (1.0 + (math.pi * TAU / MAX_LAG) ** 2))
    expected = 3.0 * (2 * math.pi * C * 2500.0) ** 2 * tau_eff / (KB * TEMPERATURE * 6 * C * VOLUME * EPSILON0)
    ((wn, height),) = result.peaks(max_peaks=1)
    assert abs(wn - 2500.0) < 2.0
    assert height == pytest.approx(expected, rel=0.02)


def test_ir_from_dipole_derivative_equals_ir_from_dipoles(oscillator_dipoles):
    """Ṁ given directly (e.g. Σ Z*·v) and M given (finite differences + filter correction) agree."""
    m = oscillator_dipoles[:50000]
    # exact spectral derivative of the sampled signal (not limited by a finite-difference error of the test)
    freq = 2j * np.pi * np.fft.rfftfreq(len(m), DT)[:, None]
    mdot = np.fft.irfft(np.fft.rfft(m, axis=0) * freq, len(m), axis=0)
    a = ir_spectrum(m, DT, VOLUME, TEMPERATURE, max_lag_fs=MAX_LAG)
    b = ir_spectrum(
        dipole_derivative=mdot, timestep_fs=DT, volume_A3=VOLUME, temperature_K=TEMPERATURE, max_lag_fs=MAX_LAG
    )
    sel = (a.wavenumber > 500) & (a.wavenumber < 3500)
    scale = a.absorption[sel].max()
    assert np.max(np.abs(a.absorption[sel] - b.absorption[sel])) < 0.01 * scale


def test_ir_absorption_equals_omega_times_dielectric_loss_over_c(oscillator_dipoles):
    """α(ω)n(ω) = ω ε''(ω)/c: the IR (from ⟨ṀṀ⟩) and ε(ω) (from ⟨MM⟩) paths are consistent."""
    ir = ir_spectrum(oscillator_dipoles, DT, VOLUME, TEMPERATURE, max_lag_fs=MAX_LAG)
    eps = dielectric_spectrum(oscillator_dipoles, DT, VOLUME, TEMPERATURE, max_lag_fs=MAX_LAG)
    assert np.allclose(ir.wavenumber, eps.wavenumber)
    for wn, _ in LINES:
        i = np.argmin(np.abs(ir.wavenumber - wn))
        omega = 2 * math.pi * C * ir.wavenumber[i]
        assert ir.absorption[i] == pytest.approx(omega * eps.epsilon_imag[i] / C, rel=0.01)


def test_debye_relaxation_gives_loss_peak_at_inverse_relaxation_time():
    """C(t) = A e^{−|t|/τ}: ε(ω) = ε∞ + Δε/(1 + iωτ); ε'' peaks at ω = 1/τ with height Δε/2, ε'(1/τ) = ε∞ + Δε/2."""
    tau, dt, amp, eps_inf = 1000.0, 10.0, 2.0, 1.8
    m = synthesize(2**16, dt, lambda w: amp * 2 * tau / (1 + (w * tau) ** 2), seed=1)
    delta = 3 * amp / (3 * VOLUME * KB * TEMPERATURE * EPSILON0)
    eps = dielectric_spectrum(m, dt, VOLUME, TEMPERATURE, eps_inf, max_lag_fs=20 * tau)
    peak = np.argmax(eps.epsilon_imag)
    assert eps.wavenumber[peak] == pytest.approx(1 / (2 * math.pi * C * tau), rel=0.05)
    assert eps.epsilon_imag[peak] == pytest.approx(delta / 2, rel=0.03)
    assert eps.epsilon_real[peak] == pytest.approx(eps_inf + delta / 2, rel=0.03)
    static = static_dielectric(m, VOLUME, TEMPERATURE, eps_inf)
    assert eps.epsilon_real[0] == pytest.approx(static.epsilon, rel=1e-12)
    assert static.epsilon == pytest.approx(eps_inf + delta, rel=0.02)


def test_exponential_correlation_has_integrated_time_tau():
    tau, dt = 1000.0, 10.0
    m = synthesize(2**16, dt, lambda w: 2 * tau / (1 + (w * tau) ** 2), seed=5)
    assert correlation_time(m, dt) == pytest.approx(tau, rel=0.1)


def test_autocorrelation_equals_direct_lagged_sum():
    x = np.random.default_rng(2).normal(size=(300, 3))
    acf = autocorrelation(x, 50)
    direct = [np.sum(x[: 300 - k] * x[k:]) / (300 - k) for k in range(50)]
    assert np.allclose(acf, direct, rtol=1e-12, atol=1e-12)


def test_lag_windows_start_at_one_and_vanish_at_the_end():
    for name in ("hann", "blackman"):
        w = lag_window(name, 1000)
        assert w[0] == pytest.approx(1.0) and abs(w[-1]) < 1e-4 and np.all(np.diff(w) <= 1e-15)


def test_harmonic_quantum_correction_matches_ase_constants():
    wn, temperature = np.array([0.0, 1000.0, 3400.0]), 300.0
    x = ase.units._hbar * 2 * math.pi * ase.units._c * 100 * wn / (ase.units._k * temperature)
    expected = np.where(wn > 0, x / (1 - np.exp(-np.where(wn > 0, x, 1.0))), 1.0)
    assert np.allclose(harmonic_quantum_correction(wn, temperature), expected, rtol=2e-6)  # ASE: CODATA 2014
    # the factors applied to the classical α n: Q·(1 − e^{−x})/x
    assert np.allclose(quantum_correction_factor("harmonic", wn, temperature), 1.0, rtol=0, atol=1e-15)
    standard = np.where(wn > 0, np.tanh(x / 2) / np.where(wn > 0, x / 2, 1.0), 1.0)
    assert np.allclose(quantum_correction_factor("standard", wn, temperature), standard, rtol=2e-6)
    with pytest.raises(ValueError, match="quantum_correction"):
        quantum_correction_factor("kubo", wn, temperature)


@pytest.mark.parametrize("temperature", [100.0, 300.0, 1000.0])
def test_harmonic_oscillator_band_obeys_the_quantum_sum_rule_at_any_temperature(temperature):
    """A harmonic O–H-like oscillator (3400 cm⁻¹, m = 0.95 amu, dipole derivative μ' = 0.3 e along x): the exact
    quantum band intensity is ∫ α n dν̃ = μ'²/(12 c² V ε0 m), independent of T and ħ (Thomas–Reiche–Kuhn). The
    harmonic-corrected spectrum of the classical trajectory (⟨ẋ²⟩ = k_B T/m) must give it; multiplying the classical
    formula by βħω/(1 − e^{−βħω}) once more would be ≈ 5–50× too large here. Constants from ASE (CODATA)."""
    mass = 0.95 / ase.units.fs**2  # amu → eV·fs²/Å²
    mu_prime, wavenumber, dt, n = 0.3, 3400.0, 1.0, 20000
    mdot2 = mu_prime**2 * ase.units.kB * temperature / mass  # ⟨Ṁ_x²⟩, (e·Å/fs)²
    t = np.arange(n) * dt
    mdot = np.zeros((n, 3))
    mdot[:, 0] = math.sqrt(2 * mdot2) * np.cos(2 * math.pi * (ase.units._c * 100 / 1e15) * wavenumber * t)
    eps0 = ase.units._eps0 / (ase.units._e * 1e10)  # e²/(eV·Å)
    c = ase.units._c * 100 / 1e15  # cm/fs
    exact = mu_prime**2 / (12 * c**2 * VOLUME * eps0 * mass)  # cm⁻²
    spectra = {qc: ir_spectrum(dipole_derivative=mdot, timestep_fs=dt, volume_A3=VOLUME, temperature_K=temperature,
                               quantum_correction=qc) for qc in ("harmonic", "standard")}
    integral = {qc: np.trapezoid(res.absorption, res.wavenumber) for qc, res in spectra.items()}
    assert integral["harmonic"] == pytest.approx(exact, rel=0.01)
    x = ase.units._hbar * 2 * math.pi * ase.units._c * 100 * wavenumber / (ase.units._k * temperature)
    assert integral["standard"] == pytest.approx(exact * math.tanh(x / 2) / (x / 2), rel=0.02)


def test_static_dielectric_block_error_matches_sampling_theory():
    """Independent Gaussian M: std(ε̂) = (ε − ε∞)·√(2/(3n)) for 3 components of equal variance."""
    n, s2 = 20000, 4.0
    m = np.random.default_rng(4).normal(scale=math.sqrt(s2), size=(n, 3))
    res = static_dielectric(m, VOLUME, TEMPERATURE, epsilon_inf=1.0, n_blocks=50)
    nuclear = 3 * s2 / (3 * VOLUME * KB * TEMPERATURE * EPSILON0)
    assert res.epsilon == pytest.approx(1 + nuclear, rel=0.05)
    assert res.epsilon_err == pytest.approx(nuclear * math.sqrt(2 / (3 * n)), rel=0.35)
    assert res.running_epsilon[-1] == pytest.approx(res.epsilon, rel=1e-12)
    assert res.running_frames[-1] == n


def test_find_peaks_refines_between_grid_points():
    x = np.arange(0.0, 3000.0, 10.0)
    y = np.exp(-0.5 * ((x - 1234.0) / 30.0) ** 2)
    ((wn, h),) = find_peaks(x, y)
    assert abs(wn - 1234.0) < 1.0 and h == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("dt", [0.0, -1.0, float("nan")])
def test_non_positive_timestep_is_rejected(dt):
    with pytest.raises(ValueError, match="timestep"):
        ir_spectrum(np.zeros((100, 3)), dt, VOLUME, TEMPERATURE)


def test_timestep_too_coarse_for_requested_wavenumbers_is_rejected():
    with pytest.raises(ValueError, match="Nyquist"):
        ir_spectrum(np.random.default_rng(0).normal(size=(200, 3)), 10.0, VOLUME, TEMPERATURE, max_wavenumber=4000)


def test_too_few_frames_are_rejected():
    with pytest.raises(ValueError, match="too few frames"):
        ir_spectrum(np.zeros((5, 3)), 1.0, VOLUME, TEMPERATURE)
    with pytest.raises(ValueError, match="too few frames"):
        static_dielectric(np.zeros((5, 3)), VOLUME, TEMPERATURE)


def test_missing_volume_is_rejected():
    with pytest.raises(ValueError, match="volume"):
        static_dielectric(np.ones((100, 3)), None, TEMPERATURE)
    with pytest.raises(ValueError, match="volume"):
        ir_spectrum(np.ones((100, 3)), 1.0, 0.0, TEMPERATURE)


def test_bad_dipole_shape_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        ir_spectrum(np.zeros((100, 3, 2)), 1.0, VOLUME, TEMPERATURE)


def _debye_and_oscillator(dt: float, n: int):
    from lesmd.units import SPEED_OF_LIGHT_CM_PER_FS

    t = np.arange(n) * dt
    tau, delta = 100.0, 91.0
    debye = delta * np.exp(-t / tau)  # χ = Δε/(1 + iωτ)
    w0, gamma, delta2 = 2 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * 1650.0, 0.02, 1.0
    w1 = np.sqrt(w0**2 - gamma**2 / 4)
    oscillator = delta2 * np.exp(-gamma * t / 2) * (np.cos(w1 * t) + gamma / (2 * w1) * np.sin(w1 * t))
    return (debye, lambda w: delta / (1 + 1j * w * tau)), (oscillator, lambda w: delta2 * w0**2 / (w0**2 - w**2
                                                                                               + 1j * w * gamma))


def test_relaxation_response_matches_analytic_debye_and_damped_oscillator():
    """ε(ω) − ε∞ from C(t) by the exact transform of the interpolated samples: within 1 % (of the static value
    for the oscillator near resonance) across the IR range; the trapezoid rule was off by Δε(ωΔt)²/12."""
    from lesmd.spectra import relaxation_response
    from lesmd.units import SPEED_OF_LIGHT_CM_PER_FS

    dt = 2.0
    (debye, debye_exact), (osc, osc_exact) = _debye_and_oscillator(dt, 20000)
    wavenumber, chi = relaxation_response(debye, dt)
    omega = 2 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * wavenumber
    for target in (1000.0, 2000.0, 4000.0):
        k = int(np.argmin(abs(wavenumber - target)))
        exact = debye_exact(omega[k])
        assert abs(1.78 + chi[k].real - (1.78 + exact.real)) < 0.01 * (1.78 + exact.real), (target, chi[k], exact)
        assert abs(chi[k].imag - exact.imag) < 0.01 * abs(exact.imag)
    assert chi[0].real == pytest.approx(91.0, rel=1e-3)  # static limit
    dt = 0.5
    (_, _), (osc, osc_exact) = _debye_and_oscillator(dt, 80000)
    wavenumber, chi = relaxation_response(osc, dt)
    omega = 2 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * wavenumber
    band = (wavenumber > 200) & (wavenumber < 4000)
    exact = osc_exact(omega[band])
    assert np.max(np.abs(chi[band] - exact)) < 0.01 * np.max(np.abs(exact))
