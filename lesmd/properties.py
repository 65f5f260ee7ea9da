"""Every property lesmd computes, named once: its shape, unit, and the names ASE and i-PI give it.

The calculator, the evaluation, the i-PI extras and ``lesmd md --out`` take their lists from here
(NequIP's ``_keys.py`` idea). N is the number of atoms; BEC index order [atom, dipole α, displacement β].
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Property:
    """One property: ``name`` (lesmd and ASE results key), ``shape``, ``unit`` (lesmd/ASE), ``ipi`` (the extras
    key i-PI reads, None if not sent as an extra), ``ipi_unit`` and ``ipi_shape`` on the wire, and a description."""

    name: str
    shape: str
    unit: str
    description: str
    ipi: str | None = None
    ipi_unit: str | None = None
    ipi_shape: str | None = None


PROPERTIES: dict[str, Property] = {p.name: p for p in (
    Property("energy", "()", "eV", "potential energy (the electric enthalpy E0 − E·M in a field)"),
    Property("free_energy", "()", "eV", "= energy (ASE's name for the force-consistent energy)"),
    Property("energy_zero_field", "()", "eV", "E0, the energy without the field term"),
    Property("forces", "(N, 3)", "eV/Å", "−∂H/∂r"),
    Property("stress", "(3, 3)", "eV/Å³", "(1/V) ∂H/∂ε, ASE sign (Voigt (6,) in the ASE calculator)"),
    Property("charges", "(N,)", "e", "latent charges × √ε∞", "charges", "e", "(N,)"),
    Property("dipole", "(3,)", "e·Å", "M = √ε∞ Σ q_i r_i of the positions as given", "dipole", "e·Bohr", "(3,)"),
    Property("polarization", "(3,)", "e/Å²", "M/V (3-D periodic only)"),
    Property("born_effective_charges", "(N, 3, 3)", "e", "Z*_{i,αβ} = ∂M_α/∂r_iβ, [atom, α dipole, β displacement]",
             "BEC", "e", "(3N, 3): row 3i+β (displacement), column α (dipole)"),
)}  # fmt: skip

#: names of :data:`PROPERTIES`, the keys :func:`lesmd.evaluate.evaluate` accepts
NAMES: tuple[str, ...] = tuple(PROPERTIES)
#: what the ASE calculator declares (energy_zero_field is an extra result, not an ASE property)
ASE_PROPERTIES: tuple[str, ...] = tuple(n for n in NAMES if n != "energy_zero_field")
#: i-PI extras names → lesmd property names
IPI_EXTRAS: dict[str, str] = {p.ipi: p.name for p in PROPERTIES.values() if p.ipi is not None}
