"""i-PI PES plugin for lesmd: LES models in i-PI's Python driver and in ``<ffdirect>`` (no socket).

    i-pi-py_driver -m custom -P drivers/les.py -u -a NAME -o 'template=init.xyz,model=water.pt,extras=dipole;BEC'

or, in-process, ``<ffdirect name="les"><pes>custom</pes><pes_path>drivers/les.py</pes_path>
<parameters>{template: init.xyz, extras: dipole;BEC}</parameters></ffdirect>``.

Options (strings, as i-PI passes them): ``template`` (structure file giving the elements in i-PI's atom order;
required), ``model`` (model file; default: the embedded water model), ``extras`` (``;``-separated subset of
dipole;BEC;charges, default dipole;charges; ``none``: no extras), ``efield`` (``Ex;Ey;Ez`` V/Å), ``epsilon_inf``,
``charge`` (e), ``electrode`` (constant-potential config file), ``pbc`` (true/false), ``dtype`` (float32/float64).
Units and the extras format are documented in :mod:`lesmd.ipi`, which does all the work.
"""

import sys
from pathlib import Path

from ipi.pes.dummy import Dummy_driver

try:
    import lesmd  # noqa: F401
except ImportError:  # running from a source checkout: drivers/ sits next to lesmd/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lesmd.ipi import IPIDriver, build_potential, read_template

__DRIVER_NAME__ = "lesmd"
__DRIVER_CLASS__ = "LESDriver"


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "t")


class LESDriver(Dummy_driver):
    """i-PI PES evaluating an LES model through :class:`lesmd.ipi.IPIDriver` (see the module docstring)."""

    def __init__(self, template, model=None, extras="dipole;charges", efield=None, epsilon_inf=1.0, charge=0.0,
                 electrode=None, pbc=True, dtype=None, *args, **kwargs):
        self.template = str(template)
        self.options = dict(model=model, extras=extras, efield=efield, epsilon_inf=float(epsilon_inf),
                            charge=float(charge), electrode=electrode, pbc=_flag(pbc), dtype=dtype)
        kwargs.pop("verbosity", None)  # <ffdirect> adds it
        super().__init__(*args, **kwargs)

    def check_parameters(self):
        """Load the model and the template structure once."""
        o = self.options
        potential = build_potential(o["model"], charge=o["charge"], epsilon_inf=o["epsilon_inf"],
                                    efield=o["efield"], electrode=o["electrode"], dtype=o["dtype"])
        numbers, positions = read_template(self.template)
        self.driver = IPIDriver(potential, numbers, pbc=o["pbc"], extras=o["extras"], template_positions=positions)

    def compute_structure(self, cell, pos):
        """Energy (Ha), forces (Ha/Bohr), virial (Ha) and extras JSON for one structure in atomic units."""
        return self.driver.compute_structure(cell, pos)

    def compute(self, cell, pos):
        """i-PI's entry point: lists of cells and positions (a batch of beads/replicas) go to the model in one
        call (:meth:`lesmd.ipi.IPIDriver.compute_batch`); single structures as before."""
        if isinstance(cell, list):
            if not isinstance(pos, list) or len(cell) != len(pos):
                raise ValueError("batched mode needs lists of cells and positions of the same length")
            return self.driver.compute_batch(cell, pos)
        return self.compute_structure(cell, pos)
