"""The interface every lesmd model implements.

A model maps one structure to energies and latent charges. Everything else (forces, stress, dipoles, Born
effective charges, field terms) is derived from it by :func:`lesmd.evaluate.evaluate` with autograd, so a model
only has to be differentiable with respect to positions and cell.
"""

from __future__ import annotations

import torch


class AtomisticModel(torch.nn.Module):
    """Base class of lesmd models.

    Attributes:
        species: atomic numbers the model knows.
        cutoff: largest interaction range of the local (short-range) part, Å.

    ``forward(numbers, positions, cell, pbc, total_charge=0.0)`` takes
      - numbers: (N,) int64 atomic numbers,
      - positions: (N, 3) Å (may require grad),
      - cell: (3, 3) Å, rows are lattice vectors (zeros allowed when no direction is periodic; may require grad),
      - pbc: (3,) bool,
      - total_charge: total charge Q in e,
    and returns a dict with
      - "energy": scalar, eV (short-range + long-range; no external-field term),
      - "energy_sr": scalar, eV,
      - "energy_lr": scalar, eV,
      - "charges": (N,) latent charges in e, after the total-charge shift (sum = Q).
    """

    species: list[int]
    cutoff: float

    def check_species(self, numbers: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the first element the model does not know."""
        known = set(int(z) for z in self.species)
        for z in torch.unique(numbers).tolist():
            if int(z) not in known:
                from ase.data import chemical_symbols  # only for the message

                name = chemical_symbols[int(z)] if 0 < int(z) < len(chemical_symbols) else "(no such element)"
                raise ValueError(
                    f"unknown element {name} (Z={int(z)}): model knows "
                    + ", ".join(chemical_symbols[s] for s in sorted(known))
                )
