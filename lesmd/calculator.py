"""ASE calculator over an LES potential: a thin adapter, no physics here.

The physics (energy, autograd forces and stress, latent charges, dipole, Born effective charges, field enthalpy)
lives in :func:`lesmd.evaluate.evaluate` behind :class:`lesmd.potential.LESPotential`; this module only converts
ASE ``Atoms`` to arrays, picks which properties to compute, and fills ``results`` with ASE shapes and units:

- energy, free_energy: eV (the electric enthalpy E0 − E·M when a field is on; ``energy_zero_field`` holds E0)
- forces: (N, 3) eV/Å
- stress: Voigt (6,) eV/Å³, ASE sign (σ = (1/V) ∂E/∂ε)
- charges: (N,) e (√ε∞-scaled latent charges)
- dipole: (3,) e·Å; polarization: (3,) e/Å² (= dipole / V, 3-D periodic cells only)
- born_effective_charges: (N, 3, 3) e, indexed [atom i, dipole component α, displacement component β]
  (Z*_{i,αβ} = ∂M_α/∂r_{iβ})

Any object with ``compute(numbers, positions, cell, pbc, properties) -> dict`` can replace the LES potential
(``potential=``), so the electrode and field potentials reuse this calculator.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from lesmd.potential import LESPotential
from lesmd.properties import ASE_PROPERTIES

#: properties computed on every call (free with the forward pass and one backward pass)
_ALWAYS = ("energy", "forces", "charges", "dipole")
#: properties computed only when asked (stress: strain graph; BEC: 3 extra vector-Jacobian products)
_ON_REQUEST = ("stress", "polarization", "born_effective_charges")


class LESCalculator(Calculator):
    """ASE calculator for Latent Ewald Summation models.

    Args:
        model: None (embedded default water model), a model file path, or an
            :class:`~lesmd.models.base.AtomisticModel`.
        device: torch device, e.g. "cpu".
        dtype: torch dtype of the evaluation (default: the model's).
        charge: default total charge Q, e; ``atoms.info["charge"]`` overrides it per structure.
        epsilon_inf: ε∞ for the √ε∞ scaling of charges, dipoles and Born effective charges.
        efield: uniform electric field (3,), V/Å, or None. Can be changed later through :attr:`efield`.
        potential: any object with ``compute(numbers, positions, cell, pbc, properties)`` (e.g. an electrode
            potential); when given, ``model``, ``device``, ``dtype``, ``epsilon_inf`` and ``efield`` are not used.
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator` (label, directory...).
    """

    implemented_properties = list(ASE_PROPERTIES)  # shapes and units: lesmd.properties
    default_parameters = {"charge": 0.0}

    def __init__(
        self,
        model: torch.nn.Module | str | Path | None = None,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        charge: float = 0.0,
        epsilon_inf: float = 1.0,
        efield: Sequence[float] | np.ndarray | None = None,
        potential: object | None = None,
        **kwargs,
    ) -> None:
        super().__init__(charge=float(charge), **kwargs)
        if potential is None:
            potential = LESPotential(
                model, total_charge=float(charge), epsilon_inf=epsilon_inf, efield=efield, dtype=dtype, device=device
            )
        elif not callable(getattr(potential, "compute", None)):
            raise TypeError(f"potential must have a compute(numbers, positions, cell, pbc, properties) method, "
                            f"got {type(potential).__name__}")
        self.potential = potential
        self._takes_total_charge = "total_charge" in inspect.signature(potential.compute).parameters

    @property
    def efield(self) -> np.ndarray | None:
        """Uniform field (3,), V/Å, of the underlying potential (None: no field)."""
        return getattr(self.potential, "efield", None)

    @efield.setter
    def efield(self, value: Sequence[float] | np.ndarray | None) -> None:
        if not hasattr(self.potential, "efield"):
            raise AttributeError(f"{type(self.potential).__name__} has no efield to set")
        self.potential.efield = value
        self.reset()  # cached energies/forces belong to the old field

    def total_charge(self, atoms) -> float:
        """Total charge Q (e) of ``atoms``: ``atoms.info["charge"]`` if present, else the calculator's default."""
        charge = atoms.info.get("charge", self.parameters.charge)
        try:
            return float(charge)
        except (TypeError, ValueError):
            raise ValueError(f'atoms.info["charge"] must be a number (e), got {charge!r}') from None

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """ASE's state check plus the total charge in ``atoms.info`` (a changed charge invalidates results)."""
        changes = super().check_state(atoms, tol)
        if self.atoms is not None and self.total_charge(atoms) != self.total_charge(self.atoms):
            changes.append("initial_charges")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Compute what ``properties`` asks for (plus energy, forces, charges and dipole) into ``self.results``."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        wanted = list(_ALWAYS) + [p for p in _ON_REQUEST if p in properties]
        extra = {}
        charge = self.total_charge(atoms)
        if self._takes_total_charge:
            extra["total_charge"] = charge
        elif "charge" in atoms.info and charge != 0.0:
            raise ValueError(f"{type(self.potential).__name__} takes no per-structure total charge; "
                             f'remove atoms.info["charge"] or set it on the potential')
        out = self.potential.compute(
            atoms.numbers, atoms.positions, np.asarray(atoms.cell), atoms.pbc, wanted, **extra
        )
        energy = float(out["energy"])
        if not np.isfinite(energy) or not np.all(np.isfinite(out["forces"])):
            raise ValueError("the model returned NaN or inf energy/forces for this structure")
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": np.asarray(out["forces"], dtype=np.float64).reshape(len(atoms), 3),
            "charges": np.asarray(out["charges"], dtype=np.float64).reshape(len(atoms)),
            "dipole": np.asarray(out["dipole"], dtype=np.float64).reshape(3),
        }
        if "energy_zero_field" in out:
            self.results["energy_zero_field"] = float(out["energy_zero_field"])
        if "stress" in out:
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(out["stress"], dtype=np.float64))
        if "polarization" in out:
            self.results["polarization"] = np.asarray(out["polarization"], dtype=np.float64).reshape(3)
        if "born_effective_charges" in out:
            bec = np.asarray(out["born_effective_charges"], dtype=np.float64)
            self.results["born_effective_charges"] = bec.reshape(len(atoms), 3, 3)
