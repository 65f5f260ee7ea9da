"""Analytic models with known answers, for tests and teaching.

- :class:`FixedChargeModel`: fixed per-atom charges (Gaussian-smeared LES Coulomb, optional) plus harmonic bonds
  and an optional uniform restraint. Its Born effective charges are exactly Z*_i = q_i·I.
- :class:`CoordinationChargeModel`: charges that depend on the geometry (open boundaries, all pairs),
  q̃_i = a_i + b_i Σ_j exp(−r_ij²/λ²); a small, fully analytic test case for non-trivial BECs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lesmd.les.charges import apply_total_charge
from lesmd.les.ewald import les_energy
from lesmd.models.base import AtomisticModel


def _bond_vectors(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, i: torch.Tensor,
                  j: torch.Tensor) -> torch.Tensor:
    """r_j − r_i with the minimum-image convention along periodic directions (Å)."""
    d = positions[j] - positions[i]
    if bool(pbc.any()):
        frac = torch.linalg.solve(cell.T, d.T).T
        frac = frac - torch.where(pbc, torch.round(frac.detach()), torch.zeros_like(frac))
        d = frac @ cell
    return d


class FixedChargeModel(AtomisticModel):
    """Fixed charges + harmonic bonds.

    E = Σ_bonds ½ k (|r_ij| − r0)² + [E_LES(q) if coulomb].

    Args:
        charges: (N,) fixed charges, e (the total charge is whatever they sum to; ``total_charge`` is ignored).
        bonds: sequence of (i, j, k eV/Å², r0 Å).
        coulomb: include the Gaussian-smeared Coulomb energy of the charges (width ``sigma``, Å).
    """

    def __init__(self, charges: Sequence[float], bonds: Sequence[tuple[int, int, float, float]] = (),
                 coulomb: bool = False, sigma: float = 1.0) -> None:
        super().__init__()
        self.species = list(range(1, 119))
        self.cutoff = 0.0
        self.sigma = float(sigma)
        self.coulomb = bool(coulomb)
        self.register_buffer("fixed_charges", torch.as_tensor(charges, dtype=torch.float64))
        idx = torch.as_tensor([(b[0], b[1]) for b in bonds], dtype=torch.long).reshape(-1, 2)
        self.register_buffer("bond_index", idx)
        self.register_buffer("bond_k", torch.as_tensor([b[2] for b in bonds], dtype=torch.float64))
        self.register_buffer("bond_r0", torch.as_tensor([b[3] for b in bonds], dtype=torch.float64))

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                total_charge: float = 0.0) -> dict[str, torch.Tensor]:
        if numbers.shape[0] != self.fixed_charges.shape[0]:
            raise ValueError(f"model has {self.fixed_charges.shape[0]} charges, structure has {numbers.shape[0]} atoms")
        q = self.fixed_charges.to(positions.dtype)
        e_sr = positions.new_zeros(())
        if self.bond_index.shape[0]:
            d = _bond_vectors(positions, cell, pbc, self.bond_index[:, 0], self.bond_index[:, 1])
            r = torch.linalg.norm(d, dim=1)
            e_sr = (0.5 * self.bond_k.to(r.dtype) * (r - self.bond_r0.to(r.dtype)) ** 2).sum()
        e_lr = les_energy(q, positions, cell, pbc, self.sigma) if self.coulomb else positions.new_zeros(())
        return {"energy": e_sr + e_lr, "energy_sr": e_sr, "energy_lr": e_lr, "charges": q * 1.0}


class CoordinationChargeModel(AtomisticModel):
    """Open-boundary model whose charges depend on geometry: q̃_i = a_{Z_i} + b_{Z_i} Σ_{j≠i} exp(−r_ij²/λ²).

    Energy: E = ½ Σ_bonds k(|r_ij| − r0)² + E_LES(q) with q the total-charge-shifted q̃.

    Args:
        a, b: dicts {atomic number: value in e}.
        length: λ, Å.
        bonds: harmonic bonds (i, j, k eV/Å², r0 Å) to keep a molecule together.
        sigma: LES Gaussian width, Å.
    """

    def __init__(self, a: dict[int, float], b: dict[int, float], length: float = 1.5,
                 bonds: Sequence[tuple[int, int, float, float]] = (), sigma: float = 1.0) -> None:
        super().__init__()
        self.species = sorted(a)
        self.cutoff = 5.0 * length
        self.length = float(length)
        self.sigma = float(sigma)
        table_a = torch.zeros(119, dtype=torch.float64)
        table_b = torch.zeros(119, dtype=torch.float64)
        for z in a:
            table_a[z] = a[z]
            table_b[z] = b.get(z, 0.0)
        self.register_buffer("table_a", table_a)
        self.register_buffer("table_b", table_b)
        self.bonds = FixedChargeModel([], bonds)

    def forward(self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
                total_charge: float = 0.0) -> dict[str, torch.Tensor]:
        if bool(pbc.any()):
            raise ValueError("CoordinationChargeModel supports open boundaries only")
        diff = positions.unsqueeze(0) - positions.unsqueeze(1)
        r2 = (diff**2).sum(-1)
        mask = ~torch.eye(len(numbers), dtype=torch.bool, device=positions.device)
        coordination = (torch.exp(-r2 / self.length**2) * mask).sum(1)
        raw = self.table_a.to(positions.dtype)[numbers] + self.table_b.to(positions.dtype)[numbers] * coordination
        q = apply_total_charge(raw, total_charge)
        e_sr = positions.new_zeros(())
        if self.bonds.bond_index.shape[0]:
            i, j = self.bonds.bond_index[:, 0], self.bonds.bond_index[:, 1]
            r = torch.linalg.norm(positions[j] - positions[i], dim=1)
            e_sr = (0.5 * self.bonds.bond_k.to(r.dtype) * (r - self.bonds.bond_r0.to(r.dtype)) ** 2).sum()
        e_lr = les_energy(q, positions, cell, pbc, self.sigma)
        return {"energy": e_sr + e_lr, "energy_sr": e_sr, "energy_lr": e_lr, "charges": q}
