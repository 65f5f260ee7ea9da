"""Electrode configuration: which atoms are electrodes, their potentials or charges, widths, boundary, solver.

The configuration is a plain dataclass; :func:`load_config` reads it from a TOML file (format documented in
:mod:`lesmd.electrode`). Units: potentials in V, charges in e, η in Å⁻¹, lengths in Å, LJ ε in eV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOUNDARIES = ("slab", "finite_field")
SOLVERS = ("matrix", "cg")
SHORT_RANGES = ("auto", "model", "lennard_jones")


@dataclass
class Electrode:
    """One electrode.

    Attributes:
        name: label used in outputs.
        indices: atom indices (into the full structure) of this electrode, sorted; or None when ``tag`` is used.
        tag: select the atoms with ``atoms.get_tags() == tag`` instead of ``indices`` (resolved by the adapters
            through :meth:`ElectrodeConfig.resolve_tags`).
        potential: set potential Ψ in V (None when ``charge`` is set).
        charge: fixed total charge in e instead of a potential (None when ``potential`` is set).
        eta: Gaussian width parameter η in Å⁻¹ (density ∝ exp(−η² r²); standard deviation s = 1/(√2 η)).
    """

    name: str
    indices: np.ndarray | None = None
    tag: int | None = None
    potential: float | None = None
    charge: float | None = None
    eta: float = 1.979

    @property
    def width(self) -> float:
        """Gaussian standard deviation s = 1/(√2 η) in Å."""
        return 1.0 / (math.sqrt(2.0) * self.eta)


@dataclass
class LennardJones:
    """Electrode–electrolyte Lennard-Jones repulsion 4ε[(σ/r)¹² − (σ/r)⁶], shifted to 0 at the cutoff.

    Attributes:
        elements: per-element (ε eV, σ Å), mixed by Lorentz–Berthelot (ε_ij = √(ε_i ε_j), σ_ij = (σ_i + σ_j)/2).
        pairs: explicit (electrode element, electrolyte element) → (ε, σ); overrides the mixing rule.
        cutoff: Å.
    """

    elements: dict[int, tuple[float, float]] = field(default_factory=dict)
    pairs: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    cutoff: float = 10.0

    def pair(self, z_electrode: int, z_electrolyte: int) -> tuple[float, float]:
        """(ε eV, σ Å) between an electrode element and an electrolyte element ((0, 0) if unknown)."""
        if (z_electrode, z_electrolyte) in self.pairs:
            return self.pairs[(z_electrode, z_electrolyte)]
        if z_electrode in self.elements and z_electrolyte in self.elements:
            (e1, s1), (e2, s2) = self.elements[z_electrode], self.elements[z_electrolyte]
            return math.sqrt(e1 * e2), 0.5 * (s1 + s2)
        return 0.0, 0.0


@dataclass
class ElectrodeConfig:
    """Everything the constant-potential driver needs besides the structure and the electrolyte model.

    Attributes:
        electrodes: the electrodes (at least one; indices disjoint).
        boundary: "slab" (pbc T,T,F, 2-D periodic with slab correction) or "finite_field" (3-D periodic with the
            field E_z = −(Ψ_top − Ψ_bot)/L_z on every charge; Dufils et al., PRL 123, 195501 (2019)).
        solver: "matrix" (frozen electrodes: A⁻¹ built once) or "cg" (mobile electrodes: preconditioned CG).
        electrolyte_width: Gaussian standard deviation (Å) of the electrolyte charges in their coupling to the
            electrodes; None: the model's own LES width σ/√2 (0 if the model has no ``sigma``); 0: point charges.
        epsilon_inf: ε∞ of the electrolyte model (√ε∞ scaling, see :mod:`lesmd.electrode`); None: the base
            potential's (1 for a bare model).
        accuracy: relative accuracy of the Ewald sums.
        cg_tolerance: CG stops when every component of the projected residual is below this (V).
        cg_max_iterations: CG gives up (ValueError) after this many iterations.
        short_range: where the electrode–electrolyte short range comes from. "model": the electrolyte model
            evaluated on all atoms (it must know every electrode element; its latent charges of the electrolyte
            atoms then see the metal); "lennard_jones": the ``lennard_jones`` table (required); "auto" (default):
            the model if it can (it knows every electrode element and offers ``short_range_and_raw_charges``, as
            :class:`~lesmd.models.les.LESModel` does), else Lennard-Jones (none when there is no table).
        lennard_jones: electrode–electrolyte repulsion (None: no short-range electrode–electrolyte term).
        min_distance: atoms closer than this (Å) raise ValueError (0 disables the check).
        slab_factor: slab boundary: the Ewald cell is L_z·slab_factor tall (≥ 2; vacuum above the atoms).
        real_space_cutoff: real-space cutoff (Å) of the electrode–electrolyte Ewald sum (sets the split).
    """

    electrodes: list[Electrode]
    boundary: str = "slab"
    solver: str = "matrix"
    electrolyte_width: float | None = None
    epsilon_inf: float | None = None
    accuracy: float = 1e-6
    cg_tolerance: float = 1e-9
    cg_max_iterations: int = 1000
    lennard_jones: LennardJones | None = None
    min_distance: float = 0.3
    slab_factor: float = 3.0
    real_space_cutoff: float = 12.0
    short_range: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent setting."""
        if not self.electrodes:
            raise ValueError("electrode config: need at least one [[electrode]]")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"electrode config: boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"electrode config: solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.short_range not in SHORT_RANGES:
            raise ValueError(f"electrode config: short_range must be one of {SHORT_RANGES}, got {self.short_range!r}")
        if self.short_range == "lennard_jones" and self.lennard_jones is None:
            raise ValueError("electrode config: short_range = 'lennard_jones' needs a [lennard_jones] table")
        if self.short_range == "model" and self.lennard_jones is not None:
            raise ValueError("electrode config: short_range = 'model' and a [lennard_jones] table: remove the table "
                             "or set short_range = 'lennard_jones'")
        if self.epsilon_inf is not None and not (self.epsilon_inf > 0 and math.isfinite(self.epsilon_inf)):
            raise ValueError(f"electrode config: epsilon_inf must be positive, got {self.epsilon_inf}")
        if not 0 < self.accuracy < 1:
            raise ValueError(f"electrode config: accuracy must lie in (0, 1), got {self.accuracy}")
        if not self.real_space_cutoff > 0:
            raise ValueError(f"electrode config: real_space_cutoff must be positive (Å), got {self.real_space_cutoff}")
        if not self.slab_factor >= 2.0:
            raise ValueError(f"electrode config: slab_factor must be ≥ 2, got {self.slab_factor}")
        if self.electrolyte_width is not None and not self.electrolyte_width >= 0:
            raise ValueError(f"electrode config: electrolyte_width must be ≥ 0 Å, got {self.electrolyte_width}")
        names = [e.name for e in self.electrodes]
        if len(set(names)) != len(names):
            raise ValueError(f"electrode config: electrode names must be unique, got {names}")
        for e in self.electrodes:
            if (e.potential is None) == (e.charge is None):
                raise ValueError(f"electrode {e.name!r}: give exactly one of 'potential' (V) or 'charge' (e)")
            value = e.potential if e.potential is not None else e.charge
            if not math.isfinite(value):
                raise ValueError(f"electrode {e.name!r}: potential/charge must be finite, got {value}")
            if not (e.eta > 0 and math.isfinite(e.eta)):
                raise ValueError(f"electrode {e.name!r}: eta must be positive (Å⁻¹), got {e.eta}")
            if e.indices is None and e.tag is None:
                raise ValueError(f"electrode {e.name!r}: give exactly one of 'indices' or 'tag'")
            if e.indices is not None:
                e.indices = np.asarray(e.indices, dtype=np.int64).reshape(-1)
                if len(e.indices) == 0:
                    raise ValueError(f"electrode {e.name!r}: no atoms")
                if np.any(e.indices < 0):
                    raise ValueError(f"electrode {e.name!r}: negative atom index")
                if len(np.unique(e.indices)) != len(e.indices):
                    raise ValueError(f"electrode {e.name!r}: repeated atom index")
        resolved = [e.indices for e in self.electrodes if e.indices is not None]
        if resolved:
            joined = np.concatenate(resolved)
            if len(np.unique(joined)) != len(joined):
                raise ValueError("electrode config: an atom belongs to two electrodes")
        if self.boundary == "finite_field":
            if len(self.electrodes) != 2 or any(e.potential is None for e in self.electrodes):
                raise ValueError("finite_field boundary needs exactly two electrodes with set potentials "
                                 "(bottom first, top second)")

    @property
    def resolved(self) -> bool:
        """True when every electrode has explicit indices (tags resolved)."""
        return all(e.indices is not None for e in self.electrodes)

    def resolve_tags(self, tags: Sequence[int]) -> None:
        """Turn ``tag`` selections into indices using per-atom tags (e.g. ``atoms.get_tags()``)."""
        tags = np.asarray(tags).reshape(-1)
        for e in self.electrodes:
            if e.tag is not None:
                e.indices = np.nonzero(tags == e.tag)[0].astype(np.int64)
                if len(e.indices) == 0:
                    raise ValueError(f"electrode {e.name!r}: no atom has tag {e.tag}")
        self.validate()


def parse_indices(value: object, name: str) -> np.ndarray:
    """Indices from a list of ints or a "start:stop[:step]" string (Python slice, stop exclusive)."""
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts if p.strip()):
            raise ValueError(f"electrode {name!r}: indices string must look like 'start:stop', got {value!r}")
        start, stop = int(parts[0]), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 and parts[2].strip() else 1
        return np.arange(start, stop, step, dtype=np.int64)
    if isinstance(value, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return np.asarray(value, dtype=np.int64)
    raise ValueError(f"electrode {name!r}: indices must be a list of integers or 'start:stop', got {value!r}")


def _element(symbol: str) -> int:
    from ase.data import atomic_numbers  # element symbols only

    if symbol not in atomic_numbers:
        raise ValueError(f"lennard_jones: unknown element {symbol!r}")
    return atomic_numbers[symbol]


def _lj_params(value: object, where: str) -> tuple[float, float]:
    if not isinstance(value, Mapping) or set(value) != {"epsilon", "sigma"}:
        raise ValueError(f"lennard_jones {where}: need {{epsilon = eV, sigma = Å}}, got {value!r}")
    eps, sig = _number(value["epsilon"], f"lennard_jones {where} epsilon"), _number(value["sigma"],
                                                                                    f"lennard_jones {where} sigma")
    if eps < 0 or sig < 0:
        raise ValueError(f"lennard_jones {where}: epsilon and sigma must be ≥ 0, got {eps}, {sig}")
    return eps, sig


def _lennard_jones(table: Mapping) -> LennardJones:
    if not isinstance(table, Mapping):
        raise ValueError(f"lennard_jones must be a table ([lennard_jones]), got {table!r}")
    lj = LennardJones(cutoff=_number(table.get("cutoff", 10.0), "lennard_jones cutoff"))
    if not lj.cutoff > 0:
        raise ValueError(f"lennard_jones: cutoff must be positive (Å), got {lj.cutoff}")
    for key, value in table.items():
        if key == "cutoff":
            continue
        if key == "pairs":
            for pair, params in value.items():
                names = pair.split("-")
                if len(names) != 2:
                    raise ValueError(f"lennard_jones.pairs: keys look like 'Au-O', got {pair!r}")
                lj.pairs[(_element(names[0]), _element(names[1]))] = _lj_params(params, pair)
            continue
        lj.elements[_element(key)] = _lj_params(value, key)
    return lj


_TOP_KEYS = {"boundary", "solver", "electrolyte_width", "epsilon_inf", "accuracy", "cg_tolerance",
             "cg_max_iterations", "min_distance", "slab_factor", "real_space_cutoff", "short_range",
             "electrode", "lennard_jones"}
_ELECTRODE_KEYS = {"name", "indices", "tag", "potential", "charge", "eta"}


#: top-level keys and their types: numbers (int or float, never bool or str), integers, strings
_NUMBER_KEYS = {"electrolyte_width", "epsilon_inf", "accuracy", "cg_tolerance", "min_distance", "slab_factor",
                "real_space_cutoff"}
_INTEGER_KEYS = {"cg_max_iterations": 1}
_STRING_KEYS = {"boundary", "solver", "short_range"}


def _number(value: object, where: str) -> float:
    """A TOML number as float; ValueError for strings, booleans (``true`` is not 1 V) and other types."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {value!r} ({type(value).__name__}); write e.g. 0.6, "
                         "not \"0.6\" or true")
    if not math.isfinite(float(value)):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return float(value)


def config_from_dict(data: Mapping) -> ElectrodeConfig:
    """Build an :class:`ElectrodeConfig` from the parsed TOML table (see :mod:`lesmd.electrode` for the keys)."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"electrode config: unknown keys {sorted(unknown)}; known: {sorted(_TOP_KEYS)}")
    tables = data.get("electrode", [])
    if isinstance(tables, Mapping):
        raise ValueError("electrode config: [electrode] is one table; write each electrode as [[electrode]] "
                         "(an array of tables, one per electrode)")
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise ValueError("electrode config: 'electrode' must be an array of tables ([[electrode]] sections)")
    for key in _NUMBER_KEYS & set(data):
        _number(data[key], f"electrode config: {key}")
    for key, low in _INTEGER_KEYS.items():
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < low):
            raise ValueError(f"electrode config: {key} must be an integer ≥ {low}, got {data[key]!r}")
    for key in _STRING_KEYS & set(data):
        if not isinstance(data[key], str):
            raise ValueError(f"electrode config: {key} must be a string, got {data[key]!r}")
    electrodes = []
    for k, table in enumerate(tables):
        bad = set(table) - _ELECTRODE_KEYS
        name = str(table.get("name", f"electrode{k}"))
        if bad:
            raise ValueError(f"electrode {name!r}: unknown keys {sorted(bad)}; known: {sorted(_ELECTRODE_KEYS)}")
        if "indices" in table and "tag" in table:
            raise ValueError(f"electrode {name!r}: give exactly one of 'indices' or 'tag'")
        indices = parse_indices(table["indices"], name) if "indices" in table else None
        tag = table.get("tag")
        if tag is not None and (isinstance(tag, bool) or not isinstance(tag, int)):
            raise ValueError(f"electrode {name!r}: tag must be an integer, got {tag!r}")
        electrodes.append(Electrode(
            name=name, indices=indices, tag=tag,
            potential=None if "potential" not in table
            else _number(table["potential"], f"electrode {name!r}: potential"),
            charge=None if "charge" not in table else _number(table["charge"], f"electrode {name!r}: charge"),
            eta=_number(table.get("eta", 1.979), f"electrode {name!r}: eta"),
        ))
    kwargs = {k: data[k] for k in _TOP_KEYS - {"electrode", "lennard_jones"} if k in data}
    lj = _lennard_jones(data["lennard_jones"]) if "lennard_jones" in data else None
    return ElectrodeConfig(electrodes=electrodes, lennard_jones=lj, **kwargs)


def load_config(path: str | Path) -> ElectrodeConfig:
    """Read an electrode configuration from a TOML file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"electrode config file not found: {path}")
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"electrode config {path}: invalid TOML ({err})") from None
    return config_from_dict(data)
