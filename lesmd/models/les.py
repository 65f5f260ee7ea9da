"""The LES model: short-range MLIP + latent charges + Latent Ewald Summation + per-element reference energies.

    E = Σ_i ε_ref(Z_i) + Σ_i ε_sr,i + E_lr(q, r),      q_i = head(features_i) − (Σ_j head_j − Q)/N

E_lr is the Coulomb energy of Gaussian-smeared latent charges (width σ), computed by
:func:`lesmd.les.ewald.les_energy` for open, slab or 3-D periodic boundaries (Cheng, npj Comput. Mater. 11, 80
(2025); Kim et al., arXiv:2412.15455). The latent charges are never trained on reference charges; they come out of
fitting energies and forces (optionally dipoles/BECs).

The short-range part is any module following the interface in :mod:`lesmd.models.shortrange` (the built-in
:class:`~lesmd.models.shortrange.MomentNetwork`, the :class:`~lesmd.models.shortrange.PairNetwork`, or your own
registered class). If it returns per-atom ``features`` the charge head reads them; otherwise LESModel builds a small
:class:`~lesmd.models.shortrange.MomentNetwork` whose features feed the charge head.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lesmd.les.lattice import reduce_cell
from lesmd.les.response import enforce_acoustic_sum_rule
from lesmd.models.base import AtomisticModel
from lesmd.models.repulsion import CoreRepulsion, DataWall
from lesmd.models.shortrange import MomentNetwork, mlp
from lesmd.neighbors import VerletList, edge_vectors, edges_within, neighbor_list


def _les_energy(charges, positions, cell, pbc, sigma, **kwargs):
    from lesmd.les.ewald import les_energy

    return les_energy(charges, positions, cell, pbc, sigma, **kwargs)


def _mean_displacement(positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_j d_ij for every atom i, (N, 3) Å, d_ij = r_j − r_i with the minimum image along periodic
    directions (exact along open ones); O(N²) in row blocks of bounded memory."""
    n = positions.shape[0]
    out = positions.new_zeros(n, 3)
    periodic = bool(pbc.any())
    if periodic:  # the minimum image by rounding needs a compact basis: the canonical one (basis-independent)
        cell = reduce_cell(cell, tuple(bool(p) for p in pbc.tolist()))
    inverse = torch.linalg.inv(cell) if periodic else None
    mask = pbc.to(positions.dtype)
    block = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n, block):
        d = positions.unsqueeze(0) - positions[start : start + block].unsqueeze(1)  # (B, N, 3): r_j − r_i
        if periodic:
            frac = d @ inverse
            frac = frac - torch.round(frac) * mask
            d = frac @ cell
        out[start : start + block] = d.mean(1)
    return out


def _apply_total_charge(charges: torch.Tensor, total_charge: float, checked: bool = False) -> torch.Tensor:
    """The total-charge shift; ``checked``: the raw charges are known to be finite (inside their bounds)."""
    from lesmd.les.charges import apply_total_charge, shift_to_total_charge

    total_charge = float(total_charge)
    if checked and math.isfinite(total_charge):
        return shift_to_total_charge(charges, total_charge)
    return apply_total_charge(charges, total_charge)


def bound_charges(q: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, width: float) -> torch.Tensor:
    """Smoothly bounded latent charges (e): q itself inside [lower, upper], saturating beyond.

    Above ``upper``: upper + w·tanh((q − upper)/w); below ``lower`` the mirror image. Continuous with a continuous
    first derivative, monotonic, and confined to (lower − w, upper + w). A guard against extrapolation: an
    environment far from the training data cannot produce runaway charges whose Coulomb attraction opens a
    bottomless hole in the energy (charges and energy collapse together in MD).

    Args:
        q: (N,) raw charges; lower, upper: (N,) per-atom bounds; width: saturation width w, e.
    """
    with torch.no_grad():
        inside = bool(((q <= upper) & (q >= lower)).all())
    if inside:  # the usual case in MD (ranges enclose the training data): exactly q, with the identity gradient
        return q
    above = upper + width * torch.tanh((q - upper).clamp(min=0.0) / width)
    below = lower - width * torch.tanh((lower - q).clamp(min=0.0) / width)
    return torch.where(q > upper, above, torch.where(q < lower, below, q))


def _parse_charge_bound(bound: dict | None, species: list[int]) -> tuple[torch.Tensor, float] | None:
    """{"width": w, "ranges": {"Z": [lower, upper]}} → ((S, 2) table, w); every species needs a range."""
    if bound is None:
        return None
    width = float(bound.get("width", 0.0))
    ranges = {int(z): [float(x) for x in r] for z, r in dict(bound.get("ranges", {})).items()}
    if not width > 0:
        raise ValueError(f"charge_bound width must be positive, got {width}")
    table = torch.zeros(len(species), 2, dtype=torch.float64)
    for k, z in enumerate(species):
        if z not in ranges or len(ranges[z]) != 2 or not ranges[z][0] < ranges[z][1]:
            raise ValueError(f"charge_bound needs a range [lower, upper] with lower < upper for element {z}")
        table[k] = torch.tensor(ranges[z])
    return table, width


#: Å, skin of the Verlet neighbour list that :meth:`LESModel.forward` reuses across MD steps
VERLET_SKIN = 0.5


class LESModel(AtomisticModel):
    """Short-range model + LES long-range term (implements :class:`~lesmd.models.base.AtomisticModel`).

    Args:
        short_range: a short-range module (interface in :mod:`lesmd.models.shortrange`).
        sigma: Gaussian width σ of the latent charges, Å.
        reference_energies: {Z: eV} per-element reference energies (default 0).
        charge_hidden: hidden widths of the latent-charge MLP head.
        use_les: include the long-range term (False gives a pure short-range model with zero charges).
        charge_descriptor: hyper-parameters of the MomentNetwork used for charges when ``short_range`` exposes no
            features (ignored otherwise).
        les_options: keyword arguments passed to ``les_energy`` (e.g. accuracy).
        core_repulsion: {"Z1-Z2": r_c Å} switched ZBL repulsion below the training data
            (:mod:`lesmd.models.repulsion`); None for none.
        charge_bound: {"width": w, "ranges": {"Z": [lower, upper]}} in e: raw latent charges (before the
            total-charge shift) pass unchanged inside each element's range and saturate smoothly within w beyond
            it (:func:`bound_charges`); None for no bound. Ranges enclosing the training data leave the model
            unchanged on its data.
        data_walls: {"cutoffs": {"Z1-Z2": r_c Å}, "strength": eV, "length": Å}: soft pair walls below the
            shortest distances of the training data (:class:`lesmd.models.repulsion.DataWall`); None for none.
        near_field_cutoff: r_n (Å, ≤ the short-range cutoff): the short-range energy is the network's minus the
            switched near-field Coulomb energy of the latent charges within r_n
            (:mod:`lesmd.les.near_field`), so that charges and network do not compete in training; None: off
            (models trained before this option).
    """

    def __init__(
        self, short_range: torch.nn.Module, *, sigma: float = 1.0,
        reference_energies: dict[int, float] | None = None, charge_hidden: tuple[int, ...] | list[int] = (16,),
        use_les: bool = True, charge_descriptor: dict | None = None, les_options: dict | None = None,
        core_repulsion: dict[str, float] | None = None, charge_bound: dict | None = None,
        data_walls: dict | None = None, near_field_cutoff: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.short_range = short_range
        self.species = [int(z) for z in short_range.species]
        self.sigma = float(sigma)
        self.use_les = bool(use_les)
        self.charge_hidden = [int(h) for h in charge_hidden]
        self.les_options = dict(les_options or {})
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.register_buffer("species_index", lookup, persistent=False)
        ref = torch.zeros(len(self.species))
        for z, e in (reference_energies or {}).items():
            if int(z) in self.species:
                ref[self.species.index(int(z))] = float(e)
        self.register_buffer("reference_energies", ref)
        self.charge_descriptor_hparams = None
        self.charge_features = None
        n_features = getattr(short_range, "n_features", None)
        if n_features is None:
            hp = {"cutoff": 4.0, "n_channels": 8, "l_max": 2, "hidden": []}
            hp.update(charge_descriptor or {})
            hp["species"] = self.species
            self.charge_descriptor_hparams = hp
            self.charge_features = MomentNetwork(**hp)
            n_features = self.charge_features.n_features
        self.charge_head = mlp([n_features, *self.charge_hidden, 1])  # evaluated by _head
        self.core_repulsion = CoreRepulsion(self.species, core_repulsion) if core_repulsion else None
        self.data_walls = DataWall(self.species, **data_walls) if data_walls else None
        self.charge_bound = None if charge_bound is None else {
            "width": float(charge_bound["width"]),
            "ranges": {str(z): [float(x) for x in r] for z, r in dict(charge_bound["ranges"]).items()},
        }  # fmt: skip
        parsed = _parse_charge_bound(self.charge_bound, self.species)
        self.register_buffer("charge_range", parsed[0] if parsed else torch.zeros(0, 2), persistent=False)
        self.charge_width = parsed[1] if parsed else 0.0
        self.near_field_cutoff = None if near_field_cutoff is None else float(near_field_cutoff)
        if self.near_field_cutoff is not None and not 0.0 < self.near_field_cutoff <= float(short_range.cutoff):
            raise ValueError(f"near_field_cutoff must be in (0, {short_range.cutoff}] Å (the short-range cutoff), "
                             f"got {near_field_cutoff}")
        cutoffs = [float(short_range.cutoff)]
        if self.charge_features is not None:
            cutoffs.append(self.charge_features.cutoff)
        self.cutoff = max(cutoffs)
        self.verlet_list = VerletList(self.cutoff, skin=VERLET_SKIN)

    def reference_energy_dict(self) -> dict[int, float]:
        """{Z: eV} per-element reference energies."""
        return {z: float(e) for z, e in zip(self.species, self.reference_energies.tolist(), strict=True)}

    def species_indices(self, numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers (N,) to species indices, ValueError for unknown elements.

        The last mapping is kept: MD passes the same numbers every step, and comparing their bytes is far
        cheaper than checking and mapping them again."""
        key = (numbers.device, numbers.dtype, numbers.detach().cpu().numpy().tobytes())
        cached = getattr(self, "_species_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        self.check_species(numbers)
        species = self.species_index.to(numbers.device)[numbers]
        self._species_cache = (key, species)
        return species

    def forward(
        self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
        total_charge: float = 0.0,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Energies (eV) and latent charges (e) of one structure; see :class:`AtomisticModel`."""
        pbc = torch.as_tensor(pbc, dtype=torch.bool)
        species = self.species_indices(numbers)
        # candidate pairs reused across MD steps while atoms move < skin/2; the graph holds the pairs within r_c
        edges = self._graph_edges(positions, cell, pbc)
        vectors = edge_vectors(positions, cell, edges)
        # one structure: the same terms as forward_graph without its batch bookkeeping (slices, stacks, index_add)
        atomic, sr = self._atomic_short_range(species, vectors, edges.i, edges.j)
        energy_sr = atomic.sum()
        if not self.use_les:
            return {"energy": energy_sr, "energy_sr": energy_sr, "energy_lr": torch.zeros_like(energy_sr),
                    "charges": vectors.new_zeros(species.shape[0])}  # fmt: skip
        raw, inside = self._bounded_charges(self._charge_features(sr, species, vectors, edges.i, edges.j), species)
        charges = _apply_total_charge(raw, float(total_charge), checked=inside)
        if self.near_field_cutoff is not None:
            energy_sr = energy_sr - self._near_field(charges, vectors, edges.i, edges.j).sum()
        energy_lr = _les_energy(charges, positions, cell, pbc, self.sigma, **self.les_options).to(energy_sr.dtype)
        return {"energy": energy_sr + energy_lr, "energy_sr": energy_sr, "energy_lr": energy_lr, "charges": charges}

    def _near_field(self, charges, vectors, i, j) -> torch.Tensor:
        from lesmd.les.near_field import near_field_energies

        return near_field_energies(charges, vectors, i, j, self.sigma, self.near_field_cutoff)

    def near_field_energy(
        self, charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor
    ) -> torch.Tensor:
        """E_near (eV, scalar) of ``charges`` (N,) e at ``positions`` (N, 3) Å: the term this model's short-range
        energy subtracts (:mod:`lesmd.les.near_field`); zero when ``near_field_cutoff`` is None. For drivers that
        assemble the long-range part themselves (electrodes: the electrolyte charges only)."""
        if self.near_field_cutoff is None:
            return charges.new_zeros(())
        pbc = torch.as_tensor(pbc, dtype=torch.bool)
        edges = neighbor_list(positions, cell, pbc, self.near_field_cutoff)
        return self._near_field(charges, edge_vectors(positions, cell, edges), edges.i, edges.j).sum()

    def _graph_edges(self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor):
        """Edges of the graph: the Verlet candidates (within cutoff + skin, reused across MD steps), cut to the
        cutoff unless every consumer ignores longer edges exactly (a short-range model declaring
        ``accepts_longer_edges``, whose terms vanish beyond its cutoff, and no separate charge descriptor); the
        pair guards select their own short edges either way."""
        candidates = self.verlet_list(positions, cell, pbc)
        if getattr(self.short_range, "accepts_longer_edges", False) and self.charge_features is None:
            return candidates
        return edges_within(positions, cell, candidates, self.cutoff)

    def _within(self, vectors, i, j, cutoff):
        if cutoff >= self.cutoff:
            return vectors, i, j
        keep = (vectors.detach() ** 2).sum(-1) < cutoff**2
        return vectors[keep], i[keep], j[keep]

    def forward_graph(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
        positions: torch.Tensor, cells: torch.Tensor, pbcs: torch.Tensor, counts: torch.Tensor,
        total_charges: list[float],
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Energies of a batch of B structures concatenated into one graph (used by forward and training).

        Args:
            species: (N,) species indices of all atoms of all structures.
            vectors: (E, 3) edge vectors (Å), edges i → j with global atom indices.
            positions: (N, 3) Å; cells: (B, 3, 3); pbcs: (B, 3) bool; counts: (B,) atoms per structure.
            total_charges: B total charges, e.

        Returns:
            "energy", "energy_sr", "energy_lr": (B,) eV; "charges": (N,) e.
        """
        n_frames = counts.shape[0]
        frame = torch.repeat_interleave(torch.arange(n_frames, device=species.device), counts.to(species.device))
        atomic, sr = self._atomic_short_range(species, vectors, i, j)
        energy_sr = vectors.new_zeros(n_frames).index_add(0, frame, atomic)
        if not self.use_les:
            zeros = vectors.new_zeros(n_frames)
            return {"energy": energy_sr, "energy_sr": energy_sr, "energy_lr": zeros,
                    "charges": vectors.new_zeros(species.shape[0])}  # fmt: skip
        raw = self._latent_charges(self._charge_features(sr, species, vectors, i, j), species)
        charges, energy_lr = [], []
        start = 0
        for b in range(n_frames):
            n = int(counts[b])
            q = _apply_total_charge(raw[start : start + n], total_charges[b])
            energy_lr.append(
                _les_energy(q, positions[start : start + n], cells[b], pbcs[b], self.sigma, **self.les_options)
            )
            charges.append(q)
            start += n
        energy_lr_t = torch.stack(energy_lr).to(energy_sr.dtype)
        charges_t = torch.cat(charges)
        if self.near_field_cutoff is not None:
            near = self._near_field(charges_t, vectors, i, j)
            energy_sr = energy_sr - vectors.new_zeros(n_frames).index_add(0, frame, near)
        return {
            "energy": energy_sr + energy_lr_t, "energy_sr": energy_sr, "energy_lr": energy_lr_t,
            "charges": charges_t,
        }  # fmt: skip

    def raw_charges_graph(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """Latent charges before the total-charge shift, (N,) e, as a function of the edge vectors."""
        sr = self.short_range(species, *self._within(vectors, i, j, float(self.short_range.cutoff)))
        return self._latent_charges(self._charge_features(sr, species, vectors, i, j), species)

    def short_range_and_raw_charges(
        self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom short-range energies and raw latent charges of one structure, without the LES term.

        For drivers that assemble the long-range part themselves: the electrode driver runs the short range on
        electrode + electrolyte atoms but the LES energy on the (shifted) electrolyte charges only.

        Args:
            numbers: (N,) atomic numbers; positions: (N, 3) Å; cell: (3, 3) Å; pbc: (3,) bool.

        Returns:
            atomic: (N,) eV, ε_ref + ε_sr + core repulsion + data walls (their sum is ``forward``'s "energy_sr");
            raw: (N,) e, latent charges before the total-charge shift (zeros when ``use_les`` is False).
        """
        pbc = torch.as_tensor(pbc, dtype=torch.bool)
        species = self.species_indices(numbers)
        edges = self._graph_edges(positions, cell, pbc)
        vectors, i, j = edge_vectors(positions, cell, edges), edges.i, edges.j
        atomic, sr = self._atomic_short_range(species, vectors, i, j)
        if not self.use_les:
            return atomic, positions.new_zeros(species.shape[0])
        return atomic, self._latent_charges(self._charge_features(sr, species, vectors, i, j), species)

    def _atomic_short_range(self, species, vectors, i, j) -> tuple[torch.Tensor, dict]:
        """(N,) eV: reference energies + short-range model + core repulsion + data walls; and the model's output."""
        sr = self.short_range(species, *self._within(vectors, i, j, float(self.short_range.cutoff)))
        atomic = sr["atomic_energies"] + self.reference_energies.to(vectors.dtype)[species]
        if self.core_repulsion is not None or self.data_walls is not None:
            near = self._pair_term_candidates(species, vectors, i, j)
            if near.numel() > 0:  # in equilibrium MD usually none: then neither term is evaluated
                vectors, i, j = vectors.index_select(0, near), i.index_select(0, near), j.index_select(0, near)
                if self.core_repulsion is not None:
                    atomic = atomic + self.core_repulsion(species, vectors, i, j)
                if self.data_walls is not None:
                    atomic = atomic + self.data_walls(species, vectors, i, j)
        return atomic, sr

    def _pair_term_candidates(self, species, vectors, i, j) -> torch.Tensor:
        """Indices of the edges shorter than their element pair's core-repulsion or data-wall cutoff, chosen on
        detached values in one pass for both terms: the pair terms only ever see these few edges, and none at all
        when no pair is that close."""
        cached = getattr(self, "_pair_cutoff_cache", None)  # per-edge r_c², kept while the graph is the same
        if cached is None or cached[0] is not i or cached[1] is not j or cached[2] is not species:
            cached = (i, j, species, self._pair_term_cutoffs(species, i, j).square().to(vectors.dtype))
            self._pair_cutoff_cache = cached
        with torch.no_grad():
            return ((vectors.detach() ** 2).sum(-1) < cached[3]).nonzero().squeeze(1)

    def _pair_term_cutoffs(self, species: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """(E,) float64 Å: the larger of the core-repulsion and data-wall cutoffs of each edge's element pair."""
        tables = [term.table for term in (self.core_repulsion, self.data_walls) if term is not None]
        limit = torch.stack(tables).amax(0).double()  # (S, S) Å
        with torch.no_grad():
            pair = species.index_select(0, i) * limit.shape[0] + species.index_select(0, j)
            return limit.view(-1).index_select(0, pair)

    def _charge_features(self, sr: dict, species, vectors, i, j) -> torch.Tensor:
        """Features of the latent-charge head: the short-range model's, else the own charge descriptor's."""
        features = sr.get("features")
        if features is None:
            cf = self.charge_features
            features = cf(species, *self._within(vectors, i, j, cf.cutoff))["features"]
        return features

    def _latent_charges(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return self._bounded_charges(features, species)[0]

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        """The charge head (Linear, SiLU, …, Linear to one output; :func:`~lesmd.models.shortrange.mlp`) as
        functional calls, the last layer a matrix-vector product: (N,) e, the values of ``charge_head(x)[:, 0]``
        with fewer operations per MD step."""
        layers = self.charge_head
        x = features
        for k in range(0, len(layers) - 1, 2):
            x = torch.nn.functional.silu(torch.nn.functional.linear(x, layers[k].weight, layers[k].bias))
        last = layers[len(layers) - 1]
        return torch.addmv(last.bias, x, last.weight[0])

    def _bounded_charges(self, features: torch.Tensor, species: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Raw latent charges (N,) e, and whether all were inside their element's range (hence finite)."""
        raw = self._head(features)
        if self.charge_bound is None:
            return raw, False
        if self._charges_inside(raw, species):
            return raw, True  # the usual case in MD: the bound is the identity
        bounds = self.charge_range.to(raw.dtype)[species]
        return bound_charges(raw, bounds[:, 0], bounds[:, 1], self.charge_width), False

    def _charges_inside(self, raw: torch.Tensor, species: torch.Tensor) -> bool:
        """Whether every raw charge lies inside its element's range (then :func:`bound_charges` is the identity;
        NaN is never inside), checked in numpy on the CPU with per-atom bounds in the charges' dtype kept for the
        last species tensor (:meth:`species_indices` hands MD the same tensor every step)."""
        if raw.device.type != "cpu" or raw.dtype not in (torch.float32, torch.float64):
            return False
        cached = getattr(self, "_bounds_cache", None)
        if cached is None or cached[0] is not species or cached[1] != raw.dtype:
            table = self.charge_range.to(raw.dtype).numpy()[species.numpy()]
            cached = (species, raw.dtype, np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1]))
            self._bounds_cache = cached
        q = raw.detach().numpy()
        return bool(((q >= cached[2]) & (q <= cached[3])).all())

    def born_effective_charges(
        self, numbers: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor,
        total_charge: float = 0.0, epsilon_inf: float = 1.0,
    ) -> torch.Tensor:  # fmt: skip
        """Born effective charges from relative (minimum-image) vectors, valid for wrapped periodic snapshots.

        Z*_{i,αβ} = √ε∞ [q_i δ_αβ + Σ_j d_ij,α ∂q_j/∂r_iβ],  d_ij = r_j − r_i (the image within the cutoff),

        which equals ∂(Σ_j q_j r_j)/∂r_iβ because Σ_j ∂q_j/∂r_i = 0 (fixed total charge) but, unlike the
        Jacobian of Σ q_j r_j with absolute positions, does not depend on how atoms are wrapped into the cell.
        The raw charges of atom j depend only on the edges centred on j, so one backward pass gives every
        ∂raw_j/∂r_i. The uniform total-charge shift −(1/N) Σ_k ∂raw_k/∂r_i acts on all atoms: for open
        boundaries its term −(r̄ − r_i) ⊗ ∂(Σ_k raw_k)/∂r_i is exact (the result equals the dipole Jacobian); in
        periodic cells r̄ − r_i is replaced by the minimum-image mean displacement (1/N) Σ_j (r_j − r_i)_MIC (so
        an isolated cluster in a large box gets exactly its open-boundary BECs, however it is wrapped), and the
        small remaining violation of the acoustic sum rule Σ_i Z*_i = Q·I is removed
        (:func:`lesmd.les.response.enforce_acoustic_sum_rule`). Cost O(N²) for the mean displacement.

        Returns:
            (N, 3, 3) e, indexed [atom i, dipole component α, displacement component β].
        """
        pbc = torch.as_tensor(pbc, dtype=torch.bool)
        species = self.species_indices(numbers)
        positions = positions.detach()
        edges = neighbor_list(positions, cell, pbc, self.cutoff)
        vectors = edge_vectors(positions, cell.detach(), edges).requires_grad_(True)
        raw = self.raw_charges_graph(species, vectors, edges.i, edges.j)
        (g,) = torch.autograd.grad(raw.sum(), vectors)  # g_e = ∂raw_{i(e)}/∂v_e, v_e = r_{j(e)} − r_{i(e)} + S·h
        n = positions.shape[0]
        charges = _apply_total_charge(raw.detach(), total_charge)
        # atom moved = neighbour j(e) of centre c = i(e): ∂raw_c/∂r_j = g_e, and d_{j c} = −v_e
        outer = -vectors.detach().unsqueeze(2) * g.unsqueeze(1)
        outer = outer * (edges.i != edges.j).to(outer.dtype).view(-1, 1, 1)  # self-images: r_i cancels
        z = positions.new_zeros(n, 3, 3).index_add(0, edges.j, outer)
        z = z + charges.view(n, 1, 1) * torch.eye(3, dtype=z.dtype)
        # the uniform total-charge shift: −(1/N) Σ_k ∂raw_k/∂r_i on every atom j, dipole weight d_ij = r_j − r_i
        d_raw = positions.new_zeros(n, 3).index_add(0, edges.j, g).index_add(0, edges.i, -g)  # ∂Σraw/∂r_i
        z = z - torch.einsum("ia,ib->iab", _mean_displacement(positions, cell.detach(), pbc), d_raw)
        if bool(pbc.any()):
            z = enforce_acoustic_sum_rule(z, total_charge)
        return math.sqrt(epsilon_inf) * z

    def architecture(self) -> dict:
        """Plain-Python description from which :func:`lesmd.models.io.build_model` rebuilds this model."""
        return {
            "short_range_type": self.short_range.registry_name,
            "short_range": self.short_range.hyperparameters(),
            "sigma": self.sigma, "charge_hidden": list(self.charge_hidden), "use_les": self.use_les,
            "charge_descriptor": self.charge_descriptor_hparams, "les_options": dict(self.les_options),
            "core_repulsion": dict(self.core_repulsion.cutoffs) if self.core_repulsion is not None else None,
            "charge_bound": self.charge_bound,
            "data_walls": self.data_walls.config() if self.data_walls is not None else None,
            "near_field_cutoff": self.near_field_cutoff,
        }  # fmt: skip
