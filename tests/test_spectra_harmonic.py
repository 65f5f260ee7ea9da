"""A harmonic, fixed-charge triatomic molecule: IR peaks from ASE molecular dynamics sit at the normal-mode
frequencies that `ase.vibrations.Vibrations` finds by finite differences of the same calculator."""

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet
from ase.vibrations import Vibrations

from lesmd.spectra import ir_spectrum

#: temperature (K) setting the mode amplitudes: small, so the pair springs stay harmonic (at 100 K the bend
#: already shifts by −5 cm⁻¹ from geometric anharmonicity)
AMP_T = 10.0
CHARGES = np.array([-0.8, 0.4, 0.4])
#: (i, j, k eV/Å², r0 Å): modes near 480, 1320, 1510 cm⁻¹, where a 0.5 fs Verlet step shifts them by < 1.5 cm⁻¹
BONDS = [(0, 1, 6.0, 1.0), (0, 2, 6.0, 1.0), (1, 2, 1.5, 1.6)]


class HarmonicChargedMolecule(Calculator):
    """Harmonic pair springs and fixed point charges: energy, forces and dipole M = Σ q_i r_i (e·Å)."""

    implemented_properties = ["energy", "forces", "dipole"]

    def check_state(self, atoms, tol=1e-15):
        # only positions change in this test; ASE's generic allclose-based comparison dominates the MD run time
        same = self.atoms is not None and np.array_equal(self.atoms.positions, atoms.positions)
        return [] if same else ["positions"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        energy, forces = 0.0, np.zeros_like(pos)
        for i, j, k, r0 in BONDS:
            d = pos[j] - pos[i]
            r = np.linalg.norm(d)
            energy += 0.5 * k * (r - r0) ** 2
            forces[i] += k * (r - r0) * d / r
            forces[j] -= k * (r - r0) * d / r
        self.results = {"energy": energy, "forces": forces, "dipole": CHARGES @ pos}


def _molecule() -> Atoms:
    # equilibrium geometry: the three springs at rest (O–H 1.0 Å, H–H 1.6 Å)
    half = np.arcsin(0.8)
    atoms = Atoms("OH2", positions=[[0, 0, 0], [np.sin(half), np.cos(half), 0], [-np.sin(half), np.cos(half), 0]])
    atoms.calc = HarmonicChargedMolecule()
    return atoms


@pytest.mark.slow
def test_harmonic_molecule_ir_peaks_at_ase_normal_mode_frequencies(tmp_path):
    atoms = _molecule()
    vib = Vibrations(atoms, name=str(tmp_path / "vib"), delta=0.005)
    vib.run()
    energies = vib.get_energies()
    modes = [vib.get_mode(i) for i in range(len(energies))]
    real = [i for i in np.argsort(np.abs(energies)) if abs(energies[i].imag) < 1e-9][-3:]
    expected = sorted(float(energies[i].real) / units.invcm for i in real)
    assert expected[0] > 300.0  # three genuine vibrations, well away from the six zero modes

    # start at rest, displaced along each normal mode with potential energy kT/2 at AMP_T: no rotation, no drift
    rng = np.random.default_rng(0)
    displacement = np.zeros_like(atoms.positions)
    for i in real:
        mode = modes[i] / np.linalg.norm(modes[i] * np.sqrt(atoms.get_masses())[:, None])  # mass-normalised
        omega = energies[i].real / (units._hbar * units.J * units.s)  # ħω (eV) / ħ (eV·ASE time)
        displacement += rng.choice([-1, 1]) * np.sqrt(units.kB * AMP_T) / omega * mode
    atoms.positions += displacement
    dipoles = []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dyn.attach(lambda: dipoles.append(atoms.calc.get_property("dipole", atoms)), interval=2)
    dyn.run(6000)  # 3 ps, dipole every 1 fs

    result = ir_spectrum(np.array(dipoles), 1.0, 1000.0, 100.0, max_lag_fs=1500.0, max_wavenumber=4000.0)
    found = sorted(wn for wn, _ in result.peaks(max_peaks=3, min_wavenumber=100.0))
    assert len(found) == 3
    for wn, ref in zip(found, expected, strict=True):
        assert abs(wn - ref) < 5.0, (found, expected)
