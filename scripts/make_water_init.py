"""Equilibrated 64-H₂O starting structure for the examples (lesmd/pretrained/water64_300K.xyz, the i-PI init.xyz).

A freshly built box (`lesmd.structures.water_box`) sits far above the model's potential-energy surface: started
from it, the "300 K" examples ran at 400–650 K. This relaxes the box (FIRE), then runs Langevin NVT at 300 K with
the shipped water model (1 ps with strong friction, then ``--ps`` with the examples' friction) and writes the last
frame, so every example starts in equilibrium at 300 K.

Usage: python scripts/make_water_init.py [--model water] [--ps 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import numpy as np
from ase import units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.optimize import FIRE

from lesmd.calculator import LESCalculator
from lesmd.structures import water_box

INPUTS = Path(__file__).resolve().parents[1] / "inputs"
#: the structure lesmd.structures.equilibrated_water64() reads (package data: our own MD, not DFT data)
PACKAGED = Path(__file__).resolve().parents[1] / "lesmd" / "pretrained" / "water64_300K.xyz"
#: the i-PI examples that start from 64 H₂O
IPI_EXAMPLES = ("water-nvt-ipi", "water-driven-ipi", "water-pimd-ipi", "water-efield-ipi", "thz-pulse-ipi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--ps", type=float, default=4.0)
    args = parser.parse_args()
    atoms = water_box(64, seed=0)
    atoms.calc = LESCalculator(args.model)
    FIRE(atoms, logfile=None).run(fmax=0.1, steps=300)
    rng = np.random.default_rng(0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
    Stationary(atoms)
    Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.1 / units.fs, rng=rng).run(2000)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=rng)
    temperatures = []
    for _ in range(int(args.ps * 2000) // 20):
        dyn.run(20)
        temperatures.append(atoms.get_temperature())
    print(f"mean T over the last half: {np.mean(temperatures[len(temperatures) // 2:]):.1f} K")
    atoms.wrap()
    frame = atoms.copy()
    frame.calc = None
    frame.info = {"molecules": 64, "note": "64 H2O equilibrated at 300 K with the shipped lesmd water model"}
    ase.io.write(PACKAGED, frame, format="extxyz")  # positions and velocities (momenta)
    positions_only = frame.copy()
    positions_only.set_momenta(None)
    for example in IPI_EXAMPLES:
        ase.io.write(INPUTS / example / "init.xyz", positions_only, format="extxyz")
    print(f"wrote {PACKAGED} and init.xyz of {', '.join(IPI_EXAMPLES)}")


if __name__ == "__main__":
    main()
