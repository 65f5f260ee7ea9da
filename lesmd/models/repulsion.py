"""Core repulsion: the ZBL screened nuclear repulsion, switched off smoothly below the training data.

An ML potential knows nothing about distances it never saw; two atoms pushed closer than anything in the training
set can fall into a spurious hole (e.g. two H of a water molecule collapsing). A fixed physical pair repulsion
that vanishes, with two continuous derivatives, at a per-pair cutoff *below the shortest distance in the data*
closes that hole without changing the model anywhere it was trained.

E = Σ_{i<j} k_e Z_i Z_j / r · φ(r/a) · s(r/r_c),  a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23),
φ(x) = 0.18175 e^{−3.19980x} + 0.50986 e^{−0.94229x} + 0.28022 e^{−0.40290x} + 0.02817 e^{−0.20162x},
s(x) = (1 − x²)³ for x < 1, else 0.
Ziegler, Biersack & Littmark, *The Stopping and Range of Ions in Solids* (Pergamon, 1985).
"""

from __future__ import annotations

import torch

from lesmd.units import COULOMB

_PHI_C = (0.18175, 0.50986, 0.28022, 0.02817)
_PHI_D = (3.19980, 0.94229, 0.40290, 0.20162)


def zbl_pair_energy(r: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Unswitched ZBL energy (eV) of pairs at distances ``r`` (Å) with nuclear charges ``z1``, ``z2``."""
    a = 0.46850 / (z1.to(r.dtype) ** 0.23 + z2.to(r.dtype) ** 0.23)
    x = r / a
    phi = sum(c * torch.exp(-d * x) for c, d in zip(_PHI_C, _PHI_D, strict=True))
    return COULOMB * z1.to(r.dtype) * z2.to(r.dtype) / r * phi


def parse_pair_cutoffs(cutoffs: dict[str, float], species: list[int]) -> torch.Tensor:
    """(S, S) table of cutoffs (Å, 0 = no repulsion) from {"1-8": 0.75, ...} (atomic numbers)."""
    table = torch.zeros(len(species), len(species), dtype=torch.float64)
    for key, value in cutoffs.items():
        try:
            z1, z2 = (int(s) for s in str(key).split("-"))
        except ValueError as err:
            raise ValueError(f"core repulsion pair {key!r} must look like '1-8' (atomic numbers)") from err
        if z1 not in species or z2 not in species:
            raise ValueError(f"core repulsion pair {key!r} names an element the model does not know")
        if not value > 0:
            raise ValueError(f"core repulsion cutoff for {key!r} must be positive, got {value}")
        a, b = species.index(z1), species.index(z2)
        table[a, b] = table[b, a] = float(value)
    return table


def _close_pairs(table: torch.Tensor, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor,
                 j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(edge indices, r, r_c) of the edges shorter than their element pair's cutoff in ``table`` (0 = none).

    The selection runs on detached values (first against the largest cutoff, then per element pair); only the
    selected (rare) edges enter the autograd graph."""
    with torch.no_grad():
        r2 = (vectors * vectors).sum(-1)
        limit = float(table.max())
        near = (r2 < limit * limit).nonzero().squeeze(1)
        rc = table.to(vectors.dtype)[species[i.index_select(0, near)], species[j.index_select(0, near)]]
        keep = ((rc > 0) & (r2.index_select(0, near) < rc * rc)).nonzero().squeeze(1)
        close, rc = near.index_select(0, keep), rc.index_select(0, keep)
    return close, torch.linalg.norm(vectors.index_select(0, close), dim=-1), rc


class CoreRepulsion(torch.nn.Module):
    """Switched ZBL repulsion per atom over a full neighbour list (each pair seen twice, so ½ per edge).

    Args:
        species: atomic numbers, in the model's species order.
        cutoffs: {"Z1-Z2": r_c in Å}; pairs not listed get no repulsion.
    """

    def __init__(self, species: list[int], cutoffs: dict[str, float]) -> None:
        super().__init__()
        self.cutoffs = {str(k): float(v) for k, v in cutoffs.items()}
        self.register_buffer("table", parse_pair_cutoffs(self.cutoffs, list(species)), persistent=False)
        self.register_buffer("numbers", torch.tensor(list(species)), persistent=False)

    def forward(self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """(N,) atomic repulsion energies, eV, for species indices (N,) and edges i → j with vectors (E, 3) Å."""
        out = vectors.new_zeros(species.shape[0])
        close, r, rc = _close_pairs(self.table, species, vectors, i, j)
        if r.numel() == 0:
            return out
        x2 = (r / rc) ** 2
        pair = zbl_pair_energy(r, self.numbers[species[i[close]]], self.numbers[species[j[close]]]) * (1 - x2) ** 3
        return out.index_add(0, i[close], 0.5 * pair)


class DataWall(torch.nn.Module):
    """Soft pair walls at the edge of the training data: E = Σ_{i<j} ε ((r_c − r)/λ)³ for r < r_c, else 0.

    r_c is the shortest distance of that element pair in the training data, so the model is unchanged on every
    training frame; below it the wall rises gently at first (1.25 meV at 0.05 Å inside for ε = 0.05 eV, λ = 0.1 Å)
    and then steeply, outweighing the spurious attraction an ML potential may extrapolate to in regions it never
    saw (e.g. two water molecules interpenetrating to an O–O distance of 1.7 Å). Continuous with two continuous
    derivatives at r_c.

    Args:
        species: atomic numbers, in the model's species order.
        cutoffs: {"Z1-Z2": r_c in Å}; pairs not listed get no wall.
        strength: ε, eV.
        length: λ, Å.
    """

    def __init__(self, species: list[int], cutoffs: dict[str, float], strength: float = 0.05,
                 length: float = 0.1) -> None:
        super().__init__()
        if not (strength > 0 and length > 0):
            raise ValueError(f"wall strength and length must be positive, got {strength}, {length}")
        self.cutoffs = {str(k): float(v) for k, v in cutoffs.items()}
        self.strength, self.length = float(strength), float(length)
        self.register_buffer("table", parse_pair_cutoffs(self.cutoffs, list(species)), persistent=False)

    def config(self) -> dict:
        """Plain-Python description ({"cutoffs", "strength", "length"}) stored in model files."""
        return {"cutoffs": dict(self.cutoffs), "strength": self.strength, "length": self.length}

    def forward(self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """(N,) atomic wall energies, eV, for species indices (N,) and edges i → j with vectors (E, 3) Å."""
        out = vectors.new_zeros(species.shape[0])
        close, r, rc = _close_pairs(self.table, species, vectors, i, j)
        if r.numel() == 0:
            return out
        pair = self.strength * ((rc - r) / self.length) ** 3
        return out.index_add(0, i[close], 0.5 * pair)
