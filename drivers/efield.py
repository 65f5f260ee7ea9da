"""i-PI PES plugin: an LES model in a static uniform electric field, applied by the driver.

The driver returns the electric enthalpy H = E0 − E·M and its forces F_i = −∂E0/∂r_i + Z*_iᵀE (one backward
pass, no BEC tensor), so any ordinary i-PI ``<motion mode="dynamics">`` (NVE, NVT, PIMD...) runs in the field.
For time-dependent fields use i-PI's ``driven_dynamics`` with BECs from ``drivers/les.py`` instead.

    i-pi-py_driver -m custom -P drivers/efield.py -u -a NAME -o template=init.xyz,efield=0;0;0.05
    i-pi-py_driver -m custom -P drivers/efield.py -u -a NAME -o template=init.xyz,field_xml=field.xml

Options (strings, as i-PI passes them): ``efield`` (``Ex;Ey;Ez`` in V/Å) or ``field_xml`` (a file holding an
i-PI ``<efield>`` block, read with :meth:`lesmd.fields.ElectricField.from_ipi_xml`; it must be static), plus
everything :mod:`drivers/les.py <les>` takes (``template``, ``model``, ``extras``, ``epsilon_inf``, ``charge``,
``pbc``, ``dtype``). Same physics as ``lesmd serve --efield Ex,Ey,Ez``. Note that i-PI's ``potential`` is then
the enthalpy H and its conserved quantity K + H.
"""

import sys
from pathlib import Path

try:
    import lesmd  # noqa: F401
except ImportError:  # running from a source checkout: drivers/ sits next to lesmd/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # i-PI loads plugins by path: find les.py beside us
from les import LESDriver  # noqa: E402

from lesmd.fields import ElectricField, parse_field_vector  # noqa: E402

__DRIVER_NAME__ = "lesmd_efield"
__DRIVER_CLASS__ = "LESFieldDriver"


def static_field(efield=None, field_xml=None):
    """The field vector (3,) V/Å from ``efield`` ("Ex;Ey;Ez") or ``field_xml`` (exactly one of them)."""
    if (efield is None) == (field_xml is None):
        raise ValueError("give exactly one of efield=Ex;Ey;Ez (V/Å) or field_xml=FILE with an <efield> block")
    if field_xml is not None:
        field = ElectricField.from_ipi_xml(Path(str(field_xml)).read_text())
        if not field.is_static:
            raise ValueError(f"{field_xml}: the field is time dependent; use <motion mode='driven_dynamics'> "
                             "with drivers/les.py (extras=dipole;BEC) instead")
        return field(0.0)  # static: A cos φ
    return parse_field_vector(str(efield).replace(";", ","))


class LESFieldDriver(LESDriver):
    """:class:`les.LESDriver` with a static field that the driver applies (see the module docstring)."""

    def __init__(self, template, efield=None, field_xml=None, *args, **kwargs):
        vector = static_field(efield, field_xml)
        super().__init__(template, *args, efield=";".join(f"{v:.17g}" for v in vector), **kwargs)
