"""PNG plots of spectra a person can read: IR with labelled peaks, ε running estimate, ε(ω).

Matplotlib with the non-interactive Agg backend (works without a screen).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lesmd.spectra import DielectricResult, DielectricSpectrum, SpectrumResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ir(result: SpectrumResult, path: str | Path, max_labels: int = 6) -> None:
    """IR absorption α(ω)n(ω) (cm⁻¹) vs wavenumber (cm⁻¹), the highest peaks labelled with their position."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(result.wavenumber, result.absorption, color="tab:blue", lw=1.2)
    ymax = float(np.max(result.absorption[result.wavenumber >= 50.0], initial=np.max(result.absorption)))
    for wn, height in result.peaks(max_peaks=max_labels):
        ax.annotate(
            f"{wn:.0f}",
            (wn, height),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            color="tab:red",
        )
        ax.plot([wn], [height], "v", color="tab:red", ms=4)
    qc = {"none": "classical = harmonic quantum correction", "harmonic": "harmonic quantum correction"}.get(
        result.quantum_correction, f"{result.quantum_correction} quantum correction")
    ax.set(
        xlabel="wavenumber (cm$^{-1}$)",
        ylabel=r"$\alpha(\omega)\,n(\omega)$ (cm$^{-1}$)",
        title=f"IR spectrum ({qc}, T = {result.temperature_K:.0f} K, {result.n_frames} frames)",
        xlim=(0, result.wavenumber[-1]),
        ylim=(min(0.0, float(result.absorption.min())), 1.15 * ymax),
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_dielectric_running(result: DielectricResult, timestep_fs: float, path: str | Path) -> None:
    """Running estimate of the static ε vs simulated time (ps), with the final ε ± error band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    time_ps = result.running_frames * timestep_fs / 1000.0
    ax.plot(time_ps, result.running_epsilon, color="tab:blue", lw=1.2, label="running estimate")
    ax.axhline(result.epsilon, color="k", lw=0.8)
    ax.axhspan(
        result.epsilon - result.epsilon_err,
        result.epsilon + result.epsilon_err,
        color="gray",
        alpha=0.3,
        label=f"ε = {result.epsilon:.2f} ± {result.epsilon_err:.2f} ({result.n_blocks} blocks)",
    )
    ax.set(
        xlabel="simulated time (ps)",
        ylabel="static dielectric constant ε",
        title=f"ε running estimate (ε∞ = {result.epsilon_inf:g}, T = {result.temperature_K:.0f} K)",
    )
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_epsilon_omega(spectrum: DielectricSpectrum, path: str | Path) -> None:
    """ε'(ω) and ε''(ω) vs wavenumber (cm⁻¹, log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    sel = spectrum.wavenumber > 0
    ax.semilogx(spectrum.wavenumber[sel], spectrum.epsilon_real[sel], label="ε′ (real)")
    ax.semilogx(spectrum.wavenumber[sel], spectrum.epsilon_imag[sel], label="ε″ (loss)")
    ax.set(xlabel="wavenumber (cm$^{-1}$)", ylabel="dielectric function", title="ε(ω) = ε′ − iε″")
    ax.legend(loc="best")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
