"""Write input.xml for the THz-pulse run from a lesmd field description (one description for ASE and i-PI).

    python make_input.py [--amplitude 0.05] [--thz 1.0] [--peak 1000] [--sigma 300] [--phase 0] [--steps 5000]

E(t) = A ẑ cos(2π ν t + φ) exp(−(t − t_peak)²/(2 σ²)); A in V/Å, ν in THz, times in fs. The <efield> block is
written by lesmd.fields.ElectricField.to_ipi_xml() in atomic units; ElectricField.from_ipi_xml() reads it back.
"""

import argparse
from pathlib import Path

from lesmd.fields import ElectricField, thz_to_angular_frequency

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--amplitude", type=float, default=0.05, help="peak field along z, V/Å")
parser.add_argument("--thz", type=float, default=1.0, help="carrier frequency, THz")
parser.add_argument("--peak", type=float, default=1000.0, help="time of the envelope maximum, fs (> 0)")
parser.add_argument("--sigma", type=float, default=300.0, help="envelope standard deviation, fs")
parser.add_argument("--phase", type=float, default=0.0, help="carrier phase, rad")
parser.add_argument("--steps", type=int, default=5000, help="MD steps of 0.5 fs")
args = parser.parse_args()

field = ElectricField.pulse([0.0, 0.0, args.amplitude], peak=args.peak, sigma=args.sigma,
                            angular_frequency=thz_to_angular_frequency(args.thz), phase=args.phase)
block = field.to_ipi_xml(indent="  ").replace("\n", "\n        ")
template = Path(__file__).with_name("input.template.xml").read_text()
text = template.replace("@EFIELD@", block).replace("@STEPS@", str(args.steps)).replace(
    "@DESCRIPTION@", f"A = {args.amplitude} V/Å along z, ν = {args.thz} THz, peak {args.peak} fs, "
                     f"σ = {args.sigma} fs, φ = {args.phase}")
Path(__file__).with_name("input.xml").write_text(text)
print(f"wrote input.xml: {field}")
