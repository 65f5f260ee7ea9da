"""The electrode package's slab (EW3DC) against the core's slab (Yeh–Berkowitz + Ballenegger–Arnold–Cerdà).

Two implementations of the same 2-D periodic Coulomb energy of Gaussian charges:
* :class:`lesmd.electrode.electrostatics.Electrostatics` ("slab"): 3-D Ewald in the cell extended along z by
  ``slab_factor`` plus the dipole correction M_z²/(2ε0V_ext) (Yeh & Berkowitz, JCP 111, 3155 (1999));
* :func:`lesmd.les.ewald.coulomb_energy` with pbc = (T, T, F): its own vacuum (replica error < ε) and the
  complete Ballenegger–Arnold–Cerdà correction (JCP 131, 094107 (2009)).

For a neutral system both converge to the 2-D periodic limit; EW3DC's only extra error is the interaction of the
z-replicas beyond the dipole, ~ e^(−κ_min·gap) (κ_min the shortest in-plane reciprocal vector, gap = slab_factor·
L_z − thickness). Here κ_min = 0.659 Å⁻¹, thickness 12 Å, L_z = 14 Å: slab_factor 3 gives gap 30 Å and
e^(−19.8) ≈ 3e-9, below the Ewald accuracy ε = 1e-8 of both sides, so the tolerance is the claimed accuracy
ε·k_eΣq²/W_min (lesmd.les.tuning); slab_factor 2 (gap 16 Å, e^(−10.5) ≈ 3e-5) must show a visible difference.

Potentials: EW3DC's quadratic form differs from the 2-D one by (2πk_e/V_ext)(u_i + u_j), u_i = z_i² + s_i², which
vanishes on neutral charge vectors but shifts every potential by the same constant (2πk_e/V_ext)·Σ_j q_j u_j
(absorbed by the electrode's total-charge constraint), so φ_core = φ_EW3DC − that constant, atom by atom.
"""

import math

import pytest
import torch

from lesmd.electrode.electrostatics import Electrostatics
from lesmd.les.ewald import coulomb_energy, electrostatic_potential
from lesmd.les.slab import smallest_inplane_wavevector
from lesmd.units import COULOMB

SLAB = (True, True, False)
ACCURACY = 1e-8
CELL = torch.tensor([[10.0, 0.0, 0.0], [3.0, 9.5, 0.0], [0.0, 0.0, 14.0]], dtype=torch.float64)
ELECTRODE_WIDTH = 1.0 / (math.sqrt(2.0) * 1.979)  # s = 1/(√2η), the Au electrode Gaussian
ELECTROLYTE_WIDTH = 0.7  # LES σ = 0.99 Å


@pytest.fixture(scope="module")
def system():
    """40 neutral Gaussian charges, z in [1, 13] Å: even indices electrode-like, odd electrolyte-like widths."""
    g = torch.Generator().manual_seed(5)
    frac = torch.rand(40, 3, generator=g, dtype=torch.float64)
    positions = frac @ CELL
    positions[:, 2] = 1.0 + 12.0 * frac[:, 2]
    charges = torch.randn(40, generator=g, dtype=torch.float64)
    charges = charges - charges.mean()
    electrode = torch.arange(40) % 2 == 0
    widths = torch.where(electrode, ELECTRODE_WIDTH, ELECTROLYTE_WIDTH).to(torch.float64)
    return charges, positions, widths, electrode


def _tolerance(charges: torch.Tensor) -> float:
    """ε · k_e Σq² / W_min, W_min = √2 s_min the narrowest pair width (eV): the accuracy both sides claim."""
    return ACCURACY * COULOMB * float((charges * charges).sum()) / (math.sqrt(2.0) * ELECTRODE_WIDTH)


def _ew3dc_offset(charges, positions, widths, slab_factor: float) -> float:
    volume = float(torch.linalg.det(CELL)) * slab_factor
    return 2.0 * math.pi * COULOMB / volume * float((charges * (positions[:, 2] ** 2 + widths**2)).sum())


def test_replica_error_of_ew3dc_at_slab_factor_3_is_below_the_ewald_accuracy():
    gap = 3.0 * float(CELL[2, 2]) - 12.0
    assert math.exp(-smallest_inplane_wavevector(CELL) * gap) < ACCURACY


def test_ew3dc_energy_equals_core_slab_energy_of_neutral_gaussian_charges(system):
    charges, positions, widths, _ = system
    core = coulomb_energy(charges, positions, CELL, SLAB, widths, accuracy=ACCURACY, method="direct",
                          self_energy=True)
    ew3dc = Electrostatics("slab", ACCURACY, slab_factor=3.0).electrode_energy(charges, positions, CELL, widths)
    # energy 196.39 eV; measured |ΔE| = 6e-9 eV, tolerance 1.6e-5 eV
    assert abs(float(ew3dc - core)) < _tolerance(charges)


def test_ew3dc_with_too_little_vacuum_departs_from_the_2d_limit(system):
    charges, positions, widths, _ = system
    core = coulomb_energy(charges, positions, CELL, SLAB, widths, accuracy=ACCURACY, method="direct",
                          self_energy=True)
    ew3dc = Electrostatics("slab", ACCURACY, slab_factor=2.0).electrode_energy(charges, positions, CELL, widths)
    gap = 2.0 * float(CELL[2, 2]) - 12.0
    replica_scale = math.exp(-smallest_inplane_wavevector(CELL) * gap) * COULOMB * float((charges**2).sum())
    # measured |ΔE| = 7.8e-5 eV: the comparison resolves the replica error, bounded by e^(−κ gap)·k_eΣq²/Å
    assert _tolerance(charges) < abs(float(ew3dc - core)) < replica_scale


def test_ew3dc_matrix_potential_equals_core_slab_potential_up_to_the_uniform_offset(system):
    charges, positions, widths, _ = system
    core = electrostatic_potential(charges, positions, CELL, SLAB, widths, accuracy=ACCURACY, method="direct",
                                   self_energy=True)
    matrix = Electrostatics("slab", ACCURACY, slab_factor=3.0).matrix(positions, CELL, widths)
    offset = _ew3dc_offset(charges, positions, widths, 3.0)  # −0.218 V here
    # measured: max |φ_core − (Aq − offset)| = 3e-9 V
    assert float((core - (matrix @ charges - offset)).abs().max()) < 1e-6


def test_electrode_electrolyte_coupling_potential_equals_core_slab_potential(system):
    charges, positions, widths, electrode = system
    core = electrostatic_potential(charges, positions, CELL, SLAB, widths, accuracy=ACCURACY, method="direct",
                                   self_energy=True)[electrode]
    ew3dc = Electrostatics("slab", ACCURACY, slab_factor=3.0)
    from_electrodes = ew3dc.matrix(positions[electrode], CELL, widths[electrode]) @ charges[electrode]
    from_electrolyte = ew3dc.coupling_potential(positions[electrode], positions[~electrode], charges[~electrode],
                                                CELL, widths[electrode], ELECTROLYTE_WIDTH)
    offset = _ew3dc_offset(charges, positions, widths, 3.0)
    # measured: max deviation 2.1e-7 V (the coupling sum with its 12 Å real-space cutoff, ε = 1e-8)
    assert float((core - (from_electrodes + from_electrolyte - offset)).abs().max()) < 1e-6
