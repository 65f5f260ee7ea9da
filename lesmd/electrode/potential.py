"""`ElectrodePotential`: constant-potential electrodes around an LES electrolyte, behind the ``compute`` protocol.

Per call (one MD step):
1. the model gives E_model and the electrolyte latent charges p (graph kept for forces). Lennard-Jones short range:
   the LES model on the electrolyte atoms alone. Model short range (the model knows the electrode elements,
   ``short_range`` = "model"/"auto"): E_model = Σ_all ε_sr,i (the model's short range on electrode + electrolyte
   atoms, reference energies included) + E_LES(p on the electrolyte), with p the model's raw latent charges of the
   electrolyte atoms in the combined environment, shifted over the electrolyte atoms to Σp = Q_electrolyte; the
   electrode atoms' latent charges are not used (their charges q come from step 3);
2. φ_i, the potential of the electrolyte charges at electrode site i, as a differentiable function of positions
   and p (:meth:`lesmd.electrode.electrostatics.Electrostatics.coupling_potential`, O((N_el + N_elyt)·N_k));
3. the electrode charges solve A q = b + Cᵀλ with b_i = Ψ_k(i) − φ_i + E_z z_i (matrix or CG solver);
4. the conserved (Legendre-transformed) energy at fixed q*

       Ω = E_model + ½ q*ᵀA q* + q*ᵀφ − Σ_k Ψ_k Q_k − E_z Σ_all x_i z_i + E_LJ

   is differentiated by autograd: because q* minimises Ω on the constraint set, these are the exact
   (Hellmann–Feynman) forces, including the model's charge-derivative terms through p(r). E_LJ is absent when
   the model supplies the short range.
The electrolyte–electrolyte Coulomb energy is the model's own. Frozen electrodes (``solver = "matrix"``) get zero
forces (they do not move; A is a constant); mobile ones (``"cg"``) get the full force, with A rebuilt each step.
All electrostatics are done in latent units with Ψ̃ = √ε∞Ψ, Ẽ = √ε∞E (see :mod:`lesmd.electrode`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lesmd.allocator import tune_allocator
from lesmd.electrode.config import ElectrodeConfig, load_config
from lesmd.electrode.electrostatics import Electrostatics
from lesmd.electrode.lennard_jones import lennard_jones_energy, pair_tables
from lesmd.electrode.overlaps import OverlapGuard
from lesmd.electrode.solver import MatrixSolver, projected_cg
from lesmd.les.charges import apply_total_charge
from lesmd.les.ewald import les_energy

_PROPERTIES = ("energy", "free_energy", "forces", "charges", "dipole", "stress", "capacitance")


class ElectrodePotential:
    """An electrolyte model between constant-potential electrodes.

    Args:
        base: an :class:`~lesmd.potential.LESPotential` (its model, dtype, device and ε∞ are used), an
            :class:`~lesmd.models.base.AtomisticModel`, a model file path, or None (embedded default model).
        config: an :class:`ElectrodeConfig` (or a path to its TOML file).
        total_charge: total charge of the electrolyte, e (the electrodes carry −total_charge overall).

    ``compute(numbers, positions, cell, pbc, properties)`` returns float64 numpy arrays:
    "energy"/"free_energy" Ω (eV, conserved), "forces" (N,3) eV/Å, "charges" (N,) e (electrode charges and
    √ε∞-scaled electrolyte charges), "dipole" (3,) e·Å, "electrode_charges" (N_el,) e in the order of
    :attr:`electrode_indices`, "electrode_total_charges" (K,) e, "electrode_potentials" (K,) V (set potential plus
    the common shift fixed by neutrality; solved potential for fixed-charge electrodes), "energy_model" (eV; with
    the model's short range it includes the electrode atoms' short-range energies),
    "cg_iterations" (CG solver), and on request "capacitance" (K,K) e/V, C_kl = ∂Q_k/∂Ψ_l.
    ``pbc`` is ignored: the boundary comes from the config (slab: x,y periodic; finite_field: 3-D periodic).
    """

    def __init__(self, base=None, config: ElectrodeConfig | str | Path = None, *, total_charge: float = 0.0) -> None:
        if config is None:
            raise ValueError("ElectrodePotential needs an electrode config")
        tune_allocator()
        self.config = load_config(config) if isinstance(config, (str, Path)) else config
        if getattr(base, "efield", None) is not None:
            raise ValueError("an external field on top of electrodes is not supported: the electrodes set the field "
                             "(use boundary = 'finite_field' for a fully periodic cell)")
        self.model, self.model_dtype, self.device, eps = _unpack_base(base)
        self.epsilon_inf = float(eps if self.config.epsilon_inf is None else self.config.epsilon_inf)
        self.scale = math.sqrt(self.epsilon_inf)
        self.total_charge = float(total_charge)
        self.dtype = torch.float64
        self._frozen: dict | None = None
        self._guards: tuple[OverlapGuard, OverlapGuard] | None = None
        self.electrostatics = Electrostatics(self.config.boundary, self.config.accuracy, self.config.slab_factor,
                                             self.config.real_space_cutoff)
        self._previous_q: torch.Tensor | None = None
        self._warned_stress = False
        self._warned_lj_ignored = False
        self.short_range_source: str | None = None  # "model" or "lennard_jones", set by compute
        self.last_results: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- set-up
    @property
    def electrolyte_width(self) -> float:
        """Gaussian standard deviation (Å) of the electrolyte charges: the config's, else the model's σ/√2."""
        if self.config.electrolyte_width is not None:
            return float(self.config.electrolyte_width)
        sigma = getattr(self.model, "sigma", None)
        return float(sigma) / math.sqrt(2.0) if sigma is not None else 0.0

    @property
    def electrode_indices(self) -> np.ndarray:
        """Indices of all electrode atoms, electrode by electrode (the order of "electrode_charges")."""
        return np.concatenate([e.indices for e in self.config.electrodes])

    def _pbc(self) -> torch.Tensor:
        if getattr(self, "_pbc_tensor", None) is None:
            periodic_z = self.config.boundary == "finite_field"
            self._pbc_tensor = torch.tensor([True, True, periodic_z], device=self.device)
        return self._pbc_tensor

    def _layout(self, n_atoms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.config.resolved:
            raise ValueError("electrodes selected by tag: resolve them first (ElectrodeCalculator does this from "
                             "atoms.get_tags(), or give indices in the config)")
        electrode = self.electrode_indices
        key = (n_atoms, electrode.tobytes(), tuple(len(e.indices) for e in self.config.electrodes))
        cached = getattr(self, "_layout_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        for e in self.config.electrodes:
            if int(e.indices.max()) >= n_atoms:
                raise ValueError(f"electrode {e.name!r}: atom index {int(e.indices.max())} but the structure has "
                                 f"{n_atoms} atoms (indices are 0-based, 0..{n_atoms - 1}; 'start:stop' excludes stop)")
        group = np.concatenate([np.full(len(e.indices), k) for k, e in enumerate(self.config.electrodes)])
        electrolyte = np.setdiff1d(np.arange(n_atoms), electrode)
        self._layout_cache = (key, (electrode, electrolyte, group))
        self._index_tensors = tuple(torch.as_tensor(a, dtype=torch.long, device=self.device)
                                    for a in (electrode, electrolyte, group))
        return electrode, electrolyte, group

    def _constraints(self, group: np.ndarray, electrolyte_charge: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """C (m, n_el) and d (m,): overall neutrality (if any electrode is potential-controlled) and fixed charges.

        C and the fixed-charge targets are built once per layout; the neutrality target −Q_elyt changes per step.
        """
        key = (group.tobytes(), self.scale, tuple((e.potential is None, e.charge) for e in self.config.electrodes))
        cached = getattr(self, "_constraint_cache", None)
        if cached is not None and cached[0] == key and cached[1]:
            c, d = cached[2], cached[3].clone()
            d[0] = -electrolyte_charge
            return c, d
        c, d = self._build_constraints(group, electrolyte_charge)
        neutrality = any(e.potential is not None for e in self.config.electrodes)
        self._constraint_cache = (key, neutrality, c, d)
        return c, d

    def _build_constraints(self, group: np.ndarray, electrolyte_charge: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, targets = [], []
        electrodes = self.config.electrodes
        if any(e.potential is not None for e in electrodes):
            rows.append(np.ones(len(group)))
            targets.append(-electrolyte_charge)
        else:
            total = sum(e.charge for e in electrodes) / self.scale + float(electrolyte_charge)
            if abs(total) > 1e-8:
                raise ValueError(f"fixed electrode charges plus electrolyte charge must be neutral, got {total:.3g} e")
        for k, e in enumerate(electrodes):
            if e.charge is not None:
                rows.append((group == k).astype(np.float64))
                targets.append(torch.as_tensor(e.charge / self.scale, dtype=torch.float64))
        if not rows:
            return torch.zeros(0, len(group), dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
        c = torch.as_tensor(np.stack(rows), dtype=torch.float64, device=self.device)
        d = torch.stack([torch.as_tensor(t, dtype=torch.float64).reshape(()) for t in targets]).to(self.device)
        return c, d

    def _widths(self, n_electrode: int) -> torch.Tensor:
        """(N_el,) Gaussian standard deviations (Å) of the electrode atoms, electrode by electrode (cached)."""
        key = (n_electrode, tuple((e.width, len(e.indices)) for e in self.config.electrodes))
        cached = getattr(self, "_widths_cache", None)
        if cached is None or cached[0] != key:
            widths = np.concatenate([[e.width] * len(e.indices) for e in self.config.electrodes])
            cached = self._widths_cache = (key, torch.as_tensor(widths, dtype=torch.float64, device=self.device))
        return cached[1]

    def _set_potentials(self) -> torch.Tensor:
        """(K,) latent set potentials Ψ̃_k = √ε∞ Ψ_k in V (0 for fixed-charge electrodes); the config may change."""
        values = tuple(self.scale * (e.potential or 0.0) for e in self.config.electrodes)
        cached = getattr(self, "_set_potential_cache", None)
        if cached is None or cached[0] != values:
            cached = self._set_potential_cache = (values, torch.as_tensor(values, dtype=torch.float64,
                                                                          device=self.device))
        return cached[1]

    def _field(self, cell: torch.Tensor) -> float:
        """Latent field Ẽ_z = −√ε∞ (Ψ_top − Ψ_bot)/L_z (V/Å) of the finite-field boundary, else 0."""
        if self.config.boundary != "finite_field":
            return 0.0
        bottom, top = self.config.electrodes
        return -self.scale * (top.potential - bottom.potential) / float(cell[2, 2])

    # ---------------------------------------------------------------- electrostatics
    def _matrix_solver(self, pos_el: torch.Tensor, cell: torch.Tensor, widths: torch.Tensor,
                       constraints: torch.Tensor) -> MatrixSolver:
        """The frozen-electrode solver, rebuilt only when electrode positions, cell or constraints change."""
        key = (pos_el.detach().clone(), cell.detach().clone(), constraints.clone())
        if self._frozen is not None:
            old = self._frozen["key"]
            same = all(a.shape == b.shape and (torch.equal(a, b) or torch.allclose(a, b, rtol=0.0, atol=1e-10))
                       for a, b in zip(old, key, strict=True))
            if same:
                return self._frozen["solver"]
            if not self._frozen["warned"]:
                warnings.warn("electrode atoms or cell moved: rebuilding the electrode matrix (O(N³)); use "
                              "solver = 'cg' for mobile electrodes", stacklevel=3)
        matrix = self.electrostatics.matrix(pos_el.detach(), cell.detach(), widths)
        solver = MatrixSolver(matrix, constraints)
        self._frozen = {"key": key, "solver": solver, "matrix": matrix, "warned": self._frozen is not None}
        return solver

    def _solve(self, system, rhs, constraints, targets, guess=None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Charges, multipliers and CG iterations for A q = rhs + Cᵀλ, C q = targets.

        ``system`` is a :class:`MatrixSolver` (frozen electrodes) or the dense matrix A (CG, mobile electrodes).
        """
        if isinstance(system, MatrixSolver):
            q, lam = system.solve(rhs, targets)
            return q, lam, 0
        return projected_cg(lambda v: system @ v, rhs, constraints, targets, torch.diagonal(system), guess,
                            self.config.cg_tolerance, self.config.cg_max_iterations)

    # ---------------------------------------------------------------- main entry
    def compute(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        pbc: np.ndarray | None = None,
        properties: Sequence[str] = ("energy", "forces"),
    ) -> dict[str, np.ndarray]:
        """Solve the electrode charges and return Ω, forces and the electrode outputs (see the class docstring)."""
        props = set(properties)
        unknown = props - set(_PROPERTIES)
        if unknown:
            raise ValueError(f"unknown properties {sorted(unknown)}; known: {', '.join(_PROPERTIES)}")
        if "stress" in props and not self._warned_stress:
            warnings.warn("stress is not computed for electrode systems (i-PI gets a zero virial): run NVE/NVT, "
                          "not NPT", stacklevel=2)
            self._warned_stress = True
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        n_atoms = len(numbers)
        positions = np.asarray(positions, dtype=np.float64).reshape(n_atoms, 3) if n_atoms else np.zeros((0, 3))
        cell_np = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        _check_cell(cell_np, self.config.boundary)
        if not np.all(np.isfinite(positions)):
            raise ValueError("positions contain NaN or inf")
        self.electrostatics.check_slab_extent(positions, cell_np)
        electrode, electrolyte, group = self._layout(n_atoms)
        self._check_distances(positions, cell_np, electrode, electrolyte)

        f64 = dict(dtype=torch.float64, device=self.device)
        mobile = self.config.solver == "cg"
        pos = torch.as_tensor(positions, **f64).requires_grad_("forces" in props)
        box = torch.as_tensor(cell_np, **f64)
        pbc_t = self._pbc()
        electrode_t, electrolyte_t, group_t = self._index_tensors
        pos_el = pos.index_select(0, electrode_t)
        pos_el = pos_el if mobile else pos_el.detach()  # frozen electrodes: zero force
        pos_ly = pos.index_select(0, electrolyte_t)
        widths_el = self._widths(len(electrode))

        # 1. model energy and electrolyte latent charges (graph kept)
        source = self._short_range_source(numbers[electrode], len(electrolyte))
        self.short_range_source = source
        if source == "model":
            pos_all = pos if mobile else torch.where(self._electrode_mask(n_atoms, electrode), pos.detach(), pos)
            energy_model, p = self._model_all_atoms(numbers, pos_all, electrolyte, box, pbc_t)
        else:
            energy_model, p = self._model(numbers[electrolyte], pos_ly, box, pbc_t)

        # 2. potential of the electrolyte charges at the electrode sites (latent units, differentiable)
        es = self.electrostatics
        if len(electrolyte):
            terms = es.prepare(pos_el, box, widths_el, self.electrolyte_width)
            lj = self.config.lennard_jones if source == "lennard_jones" else None
            cutoff = max(terms["r_cut"], lj.cutoff if lj is not None else 0.0, self.config.min_distance)
            pairs = es.pairs(pos_el, pos_ly, terms, cutoff)
            close = pairs.distances.detach()
            if self.config.min_distance > 0 and len(close) and float(close.min()) < self.config.min_distance:
                k = int(torch.argmin(close))
                raise ValueError(f"electrode atom {int(electrode[int(pairs.i[k])])} and electrolyte atom "
                                 f"{int(electrolyte[int(pairs.j[k])])} are {float(close[k]):.3f} Å apart "
                                 f"(< {self.config.min_distance} Å): overlapping atoms")
            phi = es.coupling_potential(pos_el, pos_ly, p, box, widths_el, self.electrolyte_width, terms, pairs)
        else:
            phi = torch.zeros(len(electrode), **f64)

        # 3. solve A q = Ψ̃ − φ + Ẽ z + Cᵀλ
        field = self._field(box)
        set_potential = self._set_potentials().index_select(0, group_t)  # per electrode atom
        rhs = set_potential - phi.detach() + field * pos_el.detach()[:, 2]
        electrolyte_charge = p.detach().sum() if len(electrolyte) else torch.zeros((), **f64)
        constraints, targets = self._constraints(group, electrolyte_charge)
        if mobile:
            system = self.electrostatics.matrix(pos_el.detach(), box, widths_el)
        else:
            system = self._matrix_solver(pos_el, box, widths_el, constraints)
        guess = self._previous_q if self._previous_q is not None and len(self._previous_q) == len(rhs) else None
        q, lam, iterations = self._solve(system, rhs, constraints, targets, guess)
        self._previous_q = q

        # 4. conserved energy at fixed q* (Hellmann–Feynman) and its gradient
        if mobile:
            energy_el = self.electrostatics.electrode_energy(q, pos_el, box, widths_el)
        else:
            energy_el = 0.5 * torch.dot(q, self._frozen["matrix"] @ q)
        energy = energy_model + energy_el + torch.dot(q, phi) - torch.dot(set_potential, q)
        if field != 0.0:
            energy = energy - field * (torch.dot(q, pos_el[:, 2]) + torch.dot(p, pos_ly[:, 2]))
        if len(electrolyte) and source == "lennard_jones" and self.config.lennard_jones is not None:
            energy = energy + self._lennard_jones(numbers, electrode, electrolyte, pairs)

        out = self._outputs(energy, energy_model, pos, q, p, lam, group, electrode, electrolyte, props, iterations)
        if "capacitance" in props:
            out["capacitance"] = self.capacitance(system, pos_el, box, constraints, group)
        self.last_results = out
        return out

    def _load_default_model(self) -> None:
        if self.model is None:  # the embedded default model, loaded on first use
            self.model, self.model_dtype, _, _ = _unpack_base(str(_default_model_path()))

    def _short_range_source(self, electrode_numbers: np.ndarray, n_electrolyte: int) -> str:
        """"model" or "lennard_jones": who supplies the electrode–electrolyte short range (``config.short_range``).

        Vacuum electrodes (no electrolyte) with the lazily loaded default model use no model at all. The answer is
        kept while the electrode elements, the presence of electrolyte, the mode and the model stay the same.
        """
        key = (electrode_numbers.tobytes(), n_electrolyte > 0, self.config.short_range, id(self.model))
        cached = getattr(self, "_source_cache", None)
        if cached is not None and cached[0] == key and self.model is not None:
            return cached[1]
        source = self._choose_short_range_source(electrode_numbers, n_electrolyte)
        self._source_cache = (key, source)
        return source

    def _choose_short_range_source(self, electrode_numbers: np.ndarray, n_electrolyte: int) -> str:
        mode = self.config.short_range
        if mode == "lennard_jones":
            return mode
        if n_electrolyte or mode == "model":
            self._load_default_model()
        if self.model is None:
            return "lennard_jones"
        capable = callable(getattr(self.model, "short_range_and_raw_charges", None))
        known = {int(z) for z in getattr(self.model, "species", [])}
        missing = sorted({int(z) for z in np.unique(electrode_numbers)} - known)
        if mode == "model":
            if not capable:
                raise ValueError(f"short_range = 'model': {type(self.model).__name__} cannot evaluate the electrode "
                                 f"atoms (no short_range_and_raw_charges); use short_range = 'lennard_jones'")
            if missing:
                raise ValueError(f"short_range = 'model': the model does not know the electrode element "
                                 f"{_symbols(missing)} (it knows {_symbols(sorted(known))}); use "
                                 f"short_range = 'lennard_jones'")
            return "model"
        if not capable or missing:
            return "lennard_jones"
        if self.config.lennard_jones is not None and not self._warned_lj_ignored:
            warnings.warn(f"the model knows the electrode elements {_symbols(sorted(set(electrode_numbers)))}: it "
                          f"supplies the electrode–electrolyte short range and the [lennard_jones] table is ignored "
                          f"(set short_range = 'lennard_jones' to use it)", stacklevel=3)
            self._warned_lj_ignored = True
        return "model"

    def _electrode_mask(self, n_atoms: int, electrode: np.ndarray) -> torch.Tensor:
        mask = torch.zeros(n_atoms, 1, dtype=torch.bool, device=self.device)
        mask[torch.as_tensor(electrode, device=self.device)] = True
        return mask

    def _model_all_atoms(self, numbers: np.ndarray, pos_all: torch.Tensor, electrolyte: np.ndarray,
                         box: torch.Tensor, pbc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E_model (eV) and p (N_elyt,) e with the model's short range on ALL atoms (electrode + electrolyte).

        E_model = Σ_i ε_sr,i (all atoms) + E_LES(p, electrolyte); p = the raw latent charges of the electrolyte
        atoms (their descriptors see the metal) shifted over the electrolyte alone to Σp = Q_electrolyte/√ε∞.
        """
        dtype = self.model_dtype
        numbers_t = torch.as_tensor(numbers, dtype=torch.long, device=self.device)
        cell = box.to(dtype)
        atomic, raw = self.model.short_range_and_raw_charges(numbers_t, pos_all.to(dtype), cell, pbc)
        energy = atomic.sum().to(torch.float64)
        if len(electrolyte) == 0 or not getattr(self.model, "use_les", True):
            return energy, pos_all.new_zeros(len(electrolyte))
        index = torch.as_tensor(electrolyte, dtype=torch.long, device=self.device)
        p = apply_total_charge(raw[index], self.total_charge / self.scale)
        energy_lr = les_energy(p, pos_all.to(dtype)[index], cell, pbc, float(self.model.sigma),
                               **dict(getattr(self.model, "les_options", {})))
        if getattr(self.model, "near_field_cutoff", None) is not None:  # part of the model's short range
            energy_lr = energy_lr - self.model.near_field_energy(p, pos_all.to(dtype)[index], cell, pbc)
        return energy + energy_lr.to(torch.float64), p.to(torch.float64)

    def _model(self, numbers: np.ndarray, pos_ly: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor):
        if len(numbers) == 0:
            return pos_ly.new_zeros(()), pos_ly.new_zeros(0)
        self._load_default_model()
        key = (numbers.tobytes(), id(self.model))
        cached = getattr(self, "_numbers_cache", None)
        if cached is None or cached[0] != key:  # checked once per set of electrolyte elements
            numbers_t = torch.as_tensor(numbers, dtype=torch.long, device=self.device)
            if hasattr(self.model, "check_species"):
                self.model.check_species(numbers_t)
            cached = self._numbers_cache = (key, numbers_t)
        numbers_t = cached[1]
        dtype = self.model_dtype
        out = self.model(numbers_t, pos_ly.to(dtype), box.to(dtype), pbc, self.total_charge / self.scale)
        return out["energy"].to(torch.float64), out["charges"].to(torch.float64)

    def _lennard_jones(self, numbers, electrode, electrolyte, pairs) -> torch.Tensor:
        lj = self.config.lennard_jones
        key = (numbers[electrode].tobytes(), numbers[electrolyte].tobytes())
        if getattr(self, "_lj_key", None) != key:
            eps, sig = pair_tables(lj, numbers[electrode], numbers[electrolyte])
            self._lj_tables = (torch.as_tensor(eps, dtype=torch.float64, device=self.device),
                               torch.as_tensor(sig, dtype=torch.float64, device=self.device))
            self._lj_key, self._lj_pairs = key, None
        if self._lj_pairs is None or self._lj_pairs[0] is not pairs.i:  # per-pair ε, σ: once per Verlet list
            eps, sig = self._lj_tables
            self._lj_pairs = (pairs.i, eps[pairs.i, pairs.j], sig[pairs.i, pairs.j])
        return lennard_jones_energy(pairs.distances, self._lj_pairs[1], self._lj_pairs[2], lj.cutoff)

    def _check_distances(self, positions: np.ndarray, cell: np.ndarray, electrode: np.ndarray,
                         electrolyte: np.ndarray) -> None:
        """Overlap checks: electrolyte–electrolyte here, electrode–electrode when A is built (electrode–electrolyte
        pairs are checked on the shared pair list). Verlet lists (:mod:`lesmd.electrode.overlaps`) keep them cheap."""
        if self.config.min_distance <= 0:
            return
        periodic_z = self.config.boundary == "finite_field"
        if self._guards is None or self._guards[0].min_distance != self.config.min_distance \
                or self._guards[0].periodic_z != periodic_z:
            self._guards = (OverlapGuard(self.config.min_distance, periodic_z),
                            OverlapGuard(self.config.min_distance, periodic_z))
        if len(electrolyte) > 1:
            self._guards[0].check(positions[electrolyte], cell)
        if self.config.solver == "cg" or self._frozen is None:
            self._guards[1].check(positions[electrode], cell)

    def _outputs(self, energy, energy_model, pos, q, p, lam, group, electrode, electrolyte, props, iterations):
        n_atoms = pos.shape[0]
        out: dict[str, np.ndarray] = {}
        if "forces" in props:
            grad = torch.autograd.grad(energy, pos, allow_unused=True)[0] if energy.requires_grad else None
            out["forces"] = np.zeros((n_atoms, 3)) if grad is None else (-grad).detach().cpu().numpy()
        out["energy"] = out["free_energy"] = np.asarray(float(energy.detach()))
        out["energy_model"] = np.asarray(float(energy_model.detach()))
        charges = np.zeros(n_atoms)
        charges[electrode] = self.scale * q.detach().cpu().numpy()
        charges[electrolyte] = self.scale * p.detach().cpu().numpy()
        out["charges"] = charges
        out["dipole"] = charges @ pos.detach().cpu().numpy()
        k = len(self.config.electrodes)
        out["electrode_charges"] = charges[electrode]
        out["electrode_total_charges"] = np.bincount(group, weights=charges[electrode], minlength=k)
        shift = float(lam[0]) if len(lam) and any(e.potential is not None for e in self.config.electrodes) else 0.0
        potentials = []
        row = 1 if any(e.potential is not None for e in self.config.electrodes) else 0
        for e in self.config.electrodes:
            if e.potential is not None:
                potentials.append(e.potential + shift / self.scale)
            else:
                potentials.append((shift + float(lam[row])) / self.scale)
                row += 1
        out["electrode_potentials"] = np.asarray(potentials)
        if self.config.solver == "cg":
            out["cg_iterations"] = np.asarray(iterations)
        return out

    def capacitance(self, system, pos_el: torch.Tensor, box: torch.Tensor, constraints: torch.Tensor,
                    group: np.ndarray) -> np.ndarray:
        """Capacitance matrix C_kl = ∂Q_k/∂Ψ_l (K, K) in e/V at fixed electrolyte charges (ε∞ included).

        Finite field: the field E_z = −(Ψ_top − Ψ_bot)/L_z changes with Ψ_l as well and is included.
        """
        k = len(self.config.electrodes)
        indicator = torch.as_tensor((group[:, None] == np.arange(k)[None, :]).astype(np.float64), device=self.device)
        targets = torch.zeros(constraints.shape[0], dtype=torch.float64, device=self.device)
        columns = []
        for l_ in range(k):
            rhs = indicator[:, l_].clone()
            if self.config.electrodes[l_].potential is None:
                columns.append(torch.zeros_like(rhs))
                continue
            if self.config.boundary == "finite_field":  # E_z = −(Ψ_top − Ψ_bot)/L_z moves with Ψ_l too
                rhs = rhs + (1.0 if l_ == 0 else -1.0) * pos_el.detach()[:, 2] / float(box[2, 2])
            columns.append(self._solve(system, rhs, constraints, targets)[0])
        return (self.epsilon_inf * indicator.T @ torch.stack(columns, dim=1)).cpu().numpy()


def _symbols(numbers: Sequence[int]) -> str:
    from ase.data import chemical_symbols  # only for messages

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


def _default_model_path():
    from lesmd.models.io import default_model_path

    return default_model_path()


def _check_cell(cell: np.ndarray, boundary: str) -> None:
    if not np.all(np.isfinite(cell)):
        raise ValueError("cell contains NaN or inf")
    if abs(cell[2, 0]) > 1e-10 or abs(cell[2, 1]) > 1e-10 or abs(cell[0, 2]) > 1e-10 or abs(cell[1, 2]) > 1e-10:
        raise ValueError(f"electrode cells need the third lattice vector along z and the first two in the xy plane "
                         f"({boundary}); got {cell.tolist()}")
    if cell[2, 2] <= 0 or abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError(f"electrode cell is singular or has L_z ≤ 0: {cell.tolist()}")


def _unpack_base(base) -> tuple[torch.nn.Module | None, torch.dtype, str, float]:
    """(model, model dtype, device, ε∞) from an LESPotential, a model, a path or None.

    None (the embedded default model) is loaded lazily, on the first structure with electrolyte atoms, so that
    vacuum electrodes run without any model file.
    """
    if base is None:
        return None, torch.float32, "cpu", 1.0
    if hasattr(base, "model") and hasattr(base, "compute"):
        return base.model, base.dtype, base.device, getattr(base, "epsilon_inf", 1.0)
    if isinstance(base, torch.nn.Module):
        ref = next(iter(base.parameters()), None)
        if ref is None:
            ref = next(iter(base.buffers()), None)
        return base.eval(), (ref.dtype if ref is not None else torch.float64), "cpu", 1.0
    from lesmd.potential import LESPotential

    pot = LESPotential(base)
    return pot.model, pot.dtype, pot.device, pot.epsilon_inf


def potential_from_config(path: str | Path, base_potential=None, *, total_charge: float | None = None
                          ) -> ElectrodePotential:
    """The :class:`ElectrodePotential` described by the TOML file ``path`` around ``base_potential``.

    ``base_potential``: an LESPotential (as built by ``lesmd serve``), a model, a model path, or None (default
    model, loaded on first use). ``total_charge`` (e): electrolyte charge, default the base potential's (or 0).
    Used by ``lesmd serve --electrode CONFIG`` and ``drivers/electrode.py``.
    """
    if total_charge is None:
        total_charge = getattr(base_potential, "total_charge", 0.0)
    return ElectrodePotential(base_potential, load_config(path), total_charge=total_charge)
