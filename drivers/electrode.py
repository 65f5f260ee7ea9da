"""i-PI PES plugin: an LES electrolyte between constant-potential electrodes (lesmd.electrode).

    i-pi-py_driver -m custom -P drivers/electrode.py -u -a NAME -o template=init.xyz,config=electrode.toml

or in-process: ``<ffdirect name="electrode"><pes>custom</pes><pes_path>drivers/electrode.py</pes_path>
<parameters>{template: init.xyz, config: electrode.toml}</parameters></ffdirect>``.

Options: ``template`` (structure file giving the elements in i-PI's atom order), ``config`` (electrode TOML,
see :mod:`lesmd.electrode`), ``model`` (model file; default: the embedded water model), ``charge`` (total
electrolyte charge, e), ``dtype`` (float32/float64). The energy is the conserved constant-potential energy; the
virial is zero (no NPT). Extras JSON: "charges" (N,) e, "electrode_total_charges" (K,) e, "electrode_potentials"
(K,) V. Unit conversion and the socket are in :mod:`lesmd.ipi`.
"""

import json
import sys
from pathlib import Path

from ipi.pes.dummy import Dummy_driver

try:
    import lesmd  # noqa: F401
except ImportError:  # running from a source checkout: drivers/ sits next to lesmd/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lesmd.electrode import potential_from_config
from lesmd.ipi import IPIDriver, read_template
from lesmd.potential import LESPotential

__DRIVER_NAME__ = "lesmd_electrode"
__DRIVER_CLASS__ = "ElectrodeDriver"


class ElectrodeDriver(Dummy_driver):
    """i-PI PES over :class:`lesmd.electrode.ElectrodePotential` (see the module docstring)."""

    def __init__(self, template, config, model=None, charge=0.0, dtype=None, *args, **kwargs):
        self.template, self.config = str(template), str(config)
        self.model, self.charge, self.dtype = model, float(charge), dtype
        kwargs.pop("verbosity", None)  # <ffdirect> adds it
        super().__init__(*args, **kwargs)

    def check_parameters(self):
        """Load the model, the electrode config and the template structure once."""
        import torch

        dtype = {None: None, "float32": torch.float32, "float64": torch.float64}[self.dtype]
        # no model given: the embedded default, loaded lazily (vacuum electrodes need no model file)
        base = None if self.model is None and dtype is None else LESPotential(self.model, dtype=dtype)
        self.potential = potential_from_config(self.config, base, total_charge=self.charge)
        numbers, positions = read_template(self.template)
        self.driver = IPIDriver(self.potential, numbers, pbc=True, extras=("charges",), template_positions=positions)
        self.driver.properties = ("energy", "forces", "charges", "dipole")  # no stress for electrode cells

    def compute_structure(self, cell, pos):
        """Energy (Ha), forces (Ha/Bohr), zero virial and extras JSON for one structure in atomic units."""
        energy, forces, virial, extras = self.driver.compute_structure(cell, pos)
        data = json.loads(extras)
        out = self.potential.last_results
        data["electrode_total_charges"] = out["electrode_total_charges"].tolist()
        data["electrode_potentials"] = out["electrode_potentials"].tolist()
        return energy, forces, virial, json.dumps(data)
