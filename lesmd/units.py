"""Physical constants and unit conversions: the one home for every number with a unit.

Internal units of lesmd: energy eV, length Å, charge e, time fs, mass amu, field V/Å
(1 V/Å acting on 1 e gives 1 eV/Å). i-PI speaks Hartree atomic units.
CODATA 2018 values (as used by ASE and i-PI).
"""

import math

#: Vacuum permittivity ε0 in e²/(eV·Å).
EPSILON0 = 5.526349406e-3
#: Coulomb constant k_e = 1/(4π ε0) in eV·Å/e².
COULOMB = 1.0 / (4.0 * math.pi * EPSILON0)  # 14.3996454...
#: 1/(2 ε0) in eV·Å/e² (the prefactor of the reciprocal Ewald sum per unit volume).
HALF_OVER_EPSILON0 = 1.0 / (2.0 * EPSILON0)  # 90.4756...

#: Boltzmann constant in eV/K.
KB = 8.617333262e-5
#: Speed of light in cm/fs (for wavenumbers in cm⁻¹: ν̃ = ω / (2π c)).
SPEED_OF_LIGHT_CM_PER_FS = 2.99792458e-5

#: Bohr radius in Å.
BOHR = 0.529177210903
#: Hartree in eV.
HARTREE = 27.211386246
#: Atomic unit of time in fs.
AU_TIME_FS = 2.4188843265857e-2
#: Atomic unit of electric field in V/Å (Hartree / (e·Bohr)).
AU_FIELD = HARTREE / BOHR  # 51.42208...
#: Atomic unit of force in eV/Å.
AU_FORCE = HARTREE / BOHR
#: Dipole: 1 e·Å in e·Bohr.
DIPOLE_EA_TO_AU = 1.0 / BOHR

#: amu in eV·fs²/Å² (so that F/m with F in eV/Å and m in amu gives Å/fs²).
AMU = 1.66053906660e-27 / (1.602176634e-19 * 1e-30 / 1e-20)  # kg -> eV·fs²/Å² (≈ 103.6427)

#: Reduced Planck constant ħ in eV·fs (CODATA 2018), for the quantum correction of spectra.
HBAR = 6.582119569e-1
