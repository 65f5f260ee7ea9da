"""Peak positions of the water IR spectrum next to experiment, and ε with its error bar.

Usage: python summarize.py RESULTS_DIR   (the output folder of `lesmd spectrum`); writes RESULTS_DIR/summary.md.
"""

import json
import sys
from pathlib import Path

import numpy as np

from lesmd.spectra import find_peaks

#: band: (search window cm⁻¹, experimental peak cm⁻¹) — liquid water at 300 K (Bertie & Lan, Appl. Spectrosc.
#: 50, 1047 (1996)); static ε = 78.4 (298 K)
BANDS = {"libration": ((300, 1100), 650.0), "bend": ((1400, 1900), 1645.0), "stretch": ((2800, 3900), 3400.0)}
EPSILON_EXPERIMENT = 78.4


def band_peak(wavenumber, absorption, window):
    sel = (wavenumber >= window[0]) & (wavenumber <= window[1])
    peaks = find_peaks(wavenumber[sel], absorption[sel], max_peaks=1, min_prominence=0.0, min_wavenumber=window[0])
    return peaks[0] if peaks else (float(wavenumber[sel][np.argmax(absorption[sel])]), float(absorption[sel].max()))


def main(folder: str) -> None:
    out = Path(folder)
    table = np.loadtxt(out / "ir.csv", delimiter=",", skiprows=1)
    info = json.loads((out / "dielectric.json").read_text())
    lines = [
        f"# Water IR and dielectric constant ({info['n_frames']} frames, {info['timestep_fs']} fs apart, "
        f"{info['n_frames'] * info['timestep_fs'] / 1000:.1f} ps, T = {info['temperature_K']:.1f} K, "
        f"V = {info['volume_A3']:.1f} Å³)",
        "",
        "| band | lesmd (cm⁻¹) | experiment (cm⁻¹) |",
        "| --- | --- | --- |",
    ]
    for name, (window, experiment) in BANDS.items():
        wn, _ = band_peak(table[:, 0], table[:, 1], window)
        lines.append(f"| {name} | {wn:.0f} | {experiment:.0f} |")
    lines += [
        "",
        f"static ε = {info['epsilon']:.1f} ± {info['epsilon_err']:.1f} (ε∞ = {info['epsilon_inf']}, "
        f"{info['n_blocks']} blocks); experiment {EPSILON_EXPERIMENT}",
    ]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
