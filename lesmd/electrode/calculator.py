"""ASE calculator for electrode systems: :class:`lesmd.calculator.LESCalculator` over an ElectrodePotential.

Thin adapter: resolves electrodes given by ``tag`` from ``atoms.get_tags()`` and copies the electrode outputs
into ``results`` ("electrode_charges" (N_el,) e, "electrode_total_charges" (K,) e, "electrode_potentials" (K,) V,
"energy_model" eV). "energy" is the conserved constant-potential energy Ω (eV), "charges" (N,) e all charges.
Keep frozen electrodes fixed (``ase.constraints.FixAtoms``) when the config uses ``solver = "matrix"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.calculators.calculator import all_changes

from lesmd.calculator import LESCalculator
from lesmd.electrode.config import ElectrodeConfig, load_config
from lesmd.electrode.potential import ElectrodePotential

_EXTRA = ("electrode_charges", "electrode_total_charges", "electrode_potentials", "energy_model")


class ElectrodeCalculator(LESCalculator):
    """ASE calculator: an LES electrolyte between constant-potential electrodes.

    Args:
        config: :class:`ElectrodeConfig` or path to its TOML file.
        model: None (embedded default model), a model file path, an AtomisticModel, or an LESPotential.
        charge: total electrolyte charge, e.
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.
    """

    def __init__(self, config: ElectrodeConfig | str | Path, model=None, charge: float = 0.0, **kwargs) -> None:
        config = load_config(config) if isinstance(config, (str, Path)) else config
        potential = ElectrodePotential(model, config, total_charge=charge)
        super().__init__(potential=potential, charge=charge, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Resolve tag-selected electrodes, then compute like :class:`LESCalculator` and add electrode outputs."""
        config = self.potential.config
        if atoms is not None and any(e.tag is not None for e in config.electrodes):
            config.resolve_tags(np.asarray(atoms.get_tags()))
        super().calculate(atoms, properties, system_changes)
        for key in _EXTRA:
            if key in self.potential.last_results:
                self.results[key] = self.potential.last_results[key]
