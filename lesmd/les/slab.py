"""2-D periodic (slab) boundaries: Yeh–Berkowitz with the charged-slab correction.

Yeh and Berkowitz, J. Chem. Phys. 111, 3155 (1999): a slab periodic in x and y is computed with the 3-D
Ewald sum in a cell elongated along z (vacuum between the periodic replicas of the slab) plus the correction for
the replicas' dipole layers. Ballenegger, Arnold and Cerdà, J. Chem. Phys. 131, 094107 (2009), eq. (20), give the
complete correction, valid for charged slabs too (3-D sum with the uniform neutralising background):

    E_slab = E_3D(extended cell) + (2π k_e / V) [ M_z² − Q Σ_i q_i (z_i² + s_i²) − Q² L_z² / 12 ],

M_z = Σ_i q_i z_i, Q = Σ_i q_i, V and L_z the volume and height of the extended cell; for Gaussian charges the
second moment Σ q_i z_i² becomes Σ q_i (z_i² + s_i²) (∫ρ z² of a Gaussian). The correction is invariant under
a shift of z. For a neutral slab it is the Yeh–Berkowitz term 2π k_e M_z²/V. For a charged slab the result is
the 2-D periodic energy whose k_∥ = 0 term is the pair interaction of charged sheets −(2π k_e/A) q_i q_j |z_ij|
(a net charge in 2-D periodic boundaries has no other finite definition); it no longer depends on L_z.

What lesmd requires and does:
* the first two cell vectors (the periodic directions) must lie in the xy plane (zero z components); the third
  cell vector given by the user is not used (positions are not wrapped along z);
* the extended cell has c = (0, 0, L_z) with L_z = max(user's c_z, thickness + gap), thickness the z-extent of
  the charges and gap = ln(1/ε)/κ_min + 10 s_max (κ_min the shortest in-plane reciprocal vector): the neglected
  interaction between replicas decays as e^(−κ_min · gap) < ε. Larger vacuum costs more k-vectors or mesh points.
  thickness + gap is rounded up to a multiple of :data:`HEIGHT_STEP`, so that in MD the extended cell (and
  everything cached for it: k-vectors, mesh weights) stays the same from step to step while the slab breathes.
"""

from __future__ import annotations

import math

import torch

from lesmd.les.lattice import volume
from lesmd.units import COULOMB

#: the extended cell's height is rounded up to a multiple of this (Å)
HEIGHT_STEP = 4.0


def check_slab_cell(cell: torch.Tensor) -> None:
    """Raise ValueError unless the two periodic cell vectors lie in the xy plane and span it."""
    in_plane = cell[:2].detach()
    if float(in_plane[:, 2].abs().max()) > 1e-10 * float(in_plane.abs().max()):
        raise ValueError("slab (pbc = T, T, F): the first two cell vectors must lie in the xy plane (zero z)")
    area = float(torch.linalg.det(in_plane[:, :2].double()).abs())
    if area <= 1e-8 * float(torch.linalg.norm(in_plane[0]) * torch.linalg.norm(in_plane[1])):
        raise ValueError("slab (pbc = T, T, F): the in-plane cell vectors are parallel or zero")


def smallest_inplane_wavevector(cell: torch.Tensor) -> float:
    """Shortest nonzero 2-D reciprocal vector κ_min (Å⁻¹) of the in-plane lattice."""
    in_plane = cell[:2, :2].detach().double()
    recip = 2.0 * math.pi * torch.linalg.inv(in_plane).T  # rows: 2-D reciprocal vectors
    n = torch.cartesian_prod(torch.arange(-3, 4), torch.arange(-3, 4)).double()
    k = torch.linalg.norm(n @ recip, dim=1)
    return float(k[k > 0].min())


def extended_cell(cell: torch.Tensor, positions: torch.Tensor, widths2: torch.Tensor, accuracy: float) -> torch.Tensor:
    """(3,3) cell with the user's in-plane vectors and c = (0, 0, L_z) leaving enough vacuum (see module doc)."""
    check_slab_cell(cell)
    z = positions[:, 2].detach()
    thickness = float(z.max() - z.min())
    gap = math.log(1.0 / accuracy) / smallest_inplane_wavevector(cell) + 10.0 * math.sqrt(float(widths2.max()))
    needed = math.ceil((thickness + gap) / HEIGHT_STEP) * HEIGHT_STEP
    height = max(float(cell[2, 2].detach().abs()), needed)
    column = torch.zeros(3, dtype=cell.dtype, device=cell.device)
    column[2] = height
    in_plane = torch.cat([cell[:2, :2], torch.zeros(2, 1, dtype=cell.dtype, device=cell.device)], dim=1)
    return torch.cat([in_plane, column[None, :]], dim=0)


def slab_correction(
    charges: torch.Tensor, positions: torch.Tensor, widths2: torch.Tensor, cell: torch.Tensor
) -> torch.Tensor:
    """Ballenegger–Arnold–Cerdà correction (eV) for the extended cell ``cell`` (c along z)."""
    cell_volume = volume(cell)
    height = cell[2, 2]
    z = positions[:, 2]
    total = charges.sum()
    dipole = (charges * z).sum()
    second = (charges * (z * z + widths2)).sum()
    return 2.0 * math.pi * COULOMB / cell_volume * (dipole * dipole - total * second - total * total * height**2 / 12.0)


def slab_correction_matrix(positions: torch.Tensor, widths2: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """(N,N) matrix of the correction, E_corr = ½ qᵀ C q: C_ij = (4π k_e/V)[−(z_i−z_j)²/2 − (s_i²+s_j²)/2 − L_z²/12]."""
    cell_volume = volume(cell)
    z = positions[:, 2]
    dz2 = (z[:, None] - z[None, :]) ** 2
    pair = -0.5 * dz2 - 0.5 * (widths2[:, None] + widths2[None, :]) - cell[2, 2] ** 2 / 12.0
    return 4.0 * math.pi * COULOMB / cell_volume * pair
