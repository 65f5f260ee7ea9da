"""Short-range models and the interface that lets :class:`lesmd.models.les.LESModel` wrap any of them.

Short-range interface (what ``LESModel`` needs from a short-range torch module):

- attributes ``species: list[int]`` (atomic numbers, in the order of the species indices) and ``cutoff: float`` (Å);
- ``forward(species, vectors, i, j) -> dict`` where ``species`` (N,) are species *indices* (0..S−1), ``vectors``
  (E, 3) are the differentiable edge vectors r_j − r_i + shift·cell (Å) of the full neighbour list within
  ``cutoff`` (centre ``i``, neighbour ``j``, both (E,) int64). It returns
    * ``"atomic_energies"``: (N,) eV (the model's part; per-element reference energies are added by LESModel);
    * optionally ``"features"``: (N, F) invariant features; when present, the latent-charge head reads them,
      otherwise LESModel gives the charge head its own :class:`MomentDescriptor`;
- optionally a class attribute ``accepts_longer_edges = True`` when edges longer than ``cutoff`` contribute exactly
  zero (energy and gradients): LESModel may then pass the candidate pairs of its Verlet list (up to cutoff + skin)
  without cutting them to the cutoff first;
- ``hyperparameters() -> dict`` of plain Python values such that ``cls(**hyperparameters())`` rebuilds it, and
  registration with :func:`register_short_range` so that model files can name it (loading never runs code from
  the file: it looks the name up in this registry).

Example (a new short-range model, saved and loaded like the built-in one)::

    @register_short_range("my_model")
    class MyModel(torch.nn.Module):
        def __init__(self, species, cutoff=4.0, width=16): ...
        def hyperparameters(self): return {"species": self.species, "cutoff": self.cutoff, "width": self.width}
        def forward(self, species, vectors, i, j): return {"atomic_energies": ...}

    model = LESModel(MyModel([1, 8]), sigma=1.0, reference_energies={1: -13.6, 8: -2040.0})

Because the neighbour list is built once by LESModel and edge vectors carry the autograd graph of positions and
cell, every registered model gets forces and stress for free.

The built-in model, :class:`MomentNetwork`: a :class:`~lesmd.models.descriptors.MomentDescriptor` (body order ≤ 4,
L ≤ 3), features standardised with training-set statistics, and an MLP with the centre element one-hot appended;
atomic energy = energy_scale · MLP + energy_shift[Z].
"""

from __future__ import annotations

import math

import torch

from lesmd.models.descriptors import MomentDescriptor, bessel_basis, cutoff_envelope

_REGISTRY: dict[str, type[torch.nn.Module]] = {}


def register_short_range(name: str):
    """Class decorator: make a short-range model class loadable from model files under ``name``."""

    def decorate(cls: type[torch.nn.Module]) -> type[torch.nn.Module]:
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def short_range_class(name: str) -> type[torch.nn.Module]:
    """The registered class for ``name`` (ValueError naming the known ones otherwise)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown short-range model type {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def mlp(sizes: list[int]) -> torch.nn.Sequential:
    """Multilayer perceptron with SiLU activations between layers (none after the last)."""
    layers: list[torch.nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.SiLU()]
    return torch.nn.Sequential(*layers[:-1])


@register_short_range("moment_network")
class MomentNetwork(torch.nn.Module):
    """Built-in short-range MLIP: Cartesian moment invariants → element-aware MLP → atomic energies.

    Args:
        species: atomic numbers, defines species indices.
        cutoff: Å.
        n_basis, n_channels, l_max, avg_neighbors, n_products: see :class:`MomentDescriptor`.
        hidden: hidden layer widths of the readout MLP.
    """

    #: edges beyond the cutoff contribute exactly nothing (every radial basis function carries the envelope, zero
    #: with its derivatives from r_c on), so LESModel may pass its Verlet candidates without cutting them
    accepts_longer_edges = True

    def __init__(
        self, species: list[int], cutoff: float = 5.0, n_basis: int = 8, n_channels: int = 32, l_max: int = 3,
        hidden: tuple[int, ...] | list[int] = (64, 64), avg_neighbors: float = 30.0, n_products: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.hidden = [int(h) for h in hidden]
        self.descriptor = MomentDescriptor(
            len(self.species), cutoff, n_basis, n_channels, l_max, avg_neighbors, n_products
        )
        n_features = self.descriptor.n_features
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.register_buffer("energy_scale", torch.tensor(1.0))
        self.register_buffer("energy_shift", torch.zeros(len(self.species)))
        self.readout = mlp([n_features + len(self.species), *self.hidden, 1])

    @property
    def n_features(self) -> int:
        """Width of the standardised feature vector handed to the charge head."""
        return self.descriptor.n_features + len(self.species)

    def hyperparameters(self) -> dict:
        """Constructor arguments (plain Python values)."""
        d = self.descriptor
        return {
            "species": list(self.species), "cutoff": self.cutoff, "n_basis": d.n_basis,
            "n_channels": d.n_channels, "l_max": d.l_max, "hidden": list(self.hidden),
            "avg_neighbors": float(d.avg_neighbors), "n_products": d.n_products,
        }  # fmt: skip

    def raw_features(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """Unstandardised invariants (N, n_descriptor_features), for fitting the standardisation statistics."""
        return self.descriptor(species, vectors, i, j)

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Atomic energies (N,) eV and standardised features (N, n_features)."""
        raw = self.descriptor(species, vectors, i, j)
        x = (raw - self.feature_mean) / self.feature_std
        onehot = torch.nn.functional.one_hot(species, len(self.species)).to(x.dtype)
        features = torch.cat([x, onehot], dim=1)
        energies = self.readout(features).squeeze(-1) * self.energy_scale + self.energy_shift[species]
        return {"atomic_energies": energies, "features": features}


@register_short_range("pair_network")
class PairNetwork(torch.nn.Module):
    """A second, deliberately different short-range model: a neural pair potential.

    E = ½ Σ_{i≠j} φ_{Z_i Z_j}(r_ij), φ(r) = f_c(r) · MLP_{Z_i Z_j}(B_1(r), …, B_n(r)) (f_c: the smooth cutoff
    envelope). Body order 2, no angular information, no ``features`` output (the
    LES charge head then uses its own descriptor). Used to test the wrapping interface.
    """

    def __init__(self, species: list[int], cutoff: float = 4.0, n_basis: int = 6, hidden: int = 16) -> None:
        super().__init__()
        self.species = [int(z) for z in species]
        self.cutoff = float(cutoff)
        self.n_basis = int(n_basis)
        self.width = int(hidden)
        n_pairs = len(self.species) ** 2
        self.pair_mlp = mlp([n_basis, hidden, n_pairs])
        torch.nn.init.normal_(self.pair_mlp[-1].weight, std=0.1 / math.sqrt(hidden))

    def hyperparameters(self) -> dict:
        """Constructor arguments (plain Python values)."""
        return {"species": list(self.species), "cutoff": self.cutoff, "n_basis": self.n_basis, "hidden": self.width}

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Atomic energies (N,) eV: half the pair energies of each atom's edges."""
        r = torch.linalg.norm(vectors, dim=-1)
        basis = bessel_basis(r, self.cutoff, self.n_basis)
        pair = species[i] * len(self.species) + species[j]
        phi = self.pair_mlp(basis).gather(1, pair.unsqueeze(1)).squeeze(1) * cutoff_envelope(r, self.cutoff)
        # the full list holds (i, j) and (j, i): the pair energy is ½(φ_ab + φ_ba), symmetric by construction
        energies = vectors.new_zeros(species.shape[0]).index_add(0, i, 0.5 * phi)
        return {"atomic_energies": energies}
