"""Cartesian moment descriptors: rotation-invariant local features up to body order 4.

A moment-tensor / atomic-cluster-expansion construction (Shapeev, Multiscale Model. Simul. 14, 1153 (2016);
Drautz, PRB 99, 014104 (2019)), written with Cartesian tensors:

    radial basis   B_n(r) = sqrt(2/r_c) sin(nπ r/r_c)/r · f_c(r),   n = 1..n_basis
    envelope       f_c(r) = 1 − 28x⁶ + 48x⁷ − 21x⁸,  x = r/r_c   (C² at r_c; Gasteiger et al., ICLR 2020)
    radial channels R_{L,k}(r_ij) = Σ_n W^{(Z_i,Z_j)}_{L,n,k} B_n(r_ij)   (learned, per element pair and per L)
    moments        A_{i,L,k} = (1/n̄) Σ_j R_{L,k}(r_ij) u_ij^{⊗L},   u = r_ij/|r_ij|,  L = 0..3

(n̄ is the mean number of neighbours, a fixed normaliser.) The symmetric tensors u^{⊗L} are stored as their
independent components weighted by √(multiplicity), so an ordinary dot product of two stored moments is the full
tensor contraction. Invariants (body order in brackets):

    A_{0,k} [2],  A_{1,k}·A_{1,l} [3],  A_{2,k}:A_{2,l} [3],  A_{3,k}⋮A_{3,l} [3],
    A_{1,k}ᵀ A_{2,l} A_{1,k} [4],  tr(A_{2,k} A_{2,k} A_{2,l}) [4].

Everything is vectorised over edges with ``index_add`` (no loops over atoms), and differentiable with respect to
the edge vectors, hence positions and cell.
"""

from __future__ import annotations

import math

import torch

SQRT2 = math.sqrt(2.0)
SQRT3 = math.sqrt(3.0)
SQRT6 = math.sqrt(6.0)
#: number of stored components of u^{⊗L}, L = 0..3
N_COMPONENTS = (1, 3, 6, 10)


def cutoff_envelope(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Polynomial envelope f_c(r) = 1 − 28x⁶ + 48x⁷ − 21x⁸ (x = r/r_c), zero with two zero derivatives at r_c."""
    x = (r / cutoff).clamp(max=1.0)
    x6 = x**6
    return 1.0 - 28.0 * x6 + 48.0 * x6 * x - 21.0 * x6 * x * x


def bessel_basis(r: torch.Tensor, cutoff: float, n_basis: int) -> torch.Tensor:
    """Radial basis B_n(r) = sqrt(2/r_c) sin(nπr/r_c)/r · f_c(r), shape (E, n_basis), r in Å."""
    n = torch.arange(1, n_basis + 1, dtype=r.dtype, device=r.device)
    r_col = r.unsqueeze(-1)
    values = math.sqrt(2.0 / cutoff) * torch.sin(n * (math.pi / cutoff) * r_col) / r_col
    return values * cutoff_envelope(r_col, cutoff)


# L=3 component = (stored L=2 component) × u_c; weights make the stored product carry √multiplicity
# full 3×3 matrix from the 6 stored rank-2 components
_M9_FROM = [0, 3, 4, 3, 1, 5, 4, 5, 2]
_M9_W = [1.0, 1 / SQRT2, 1 / SQRT2, 1 / SQRT2, 1.0, 1 / SQRT2, 1 / SQRT2, 1 / SQRT2, 1.0]


def angular_components(u: torch.Tensor, l_max: int) -> torch.Tensor:
    """Stored components of u^{⊗L}, L = 0..l_max, concatenated: shape (E, Σ N_COMPONENTS[:l_max+1]).

    Order: L=0: 1; L=1: x, y, z; L=2: xx, yy, zz, √2xy, √2xz, √2yz;
    L=3: xxx, yyy, zzz, √3xxy, √3xxz, √3xyy, √3yyz, √3xzz, √3yzz, √6xyz.
    Written out column by column: elementwise products of (E,) columns are the fastest form on CPU.
    """
    x, y, z = u.unbind(1)
    columns = [torch.ones_like(x)]
    if l_max >= 1:
        columns += [x, y, z]
    if l_max >= 2:
        xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
        columns += [xx, yy, zz, SQRT2 * xy, SQRT2 * xz, SQRT2 * yz]
    if l_max >= 3:
        columns += [xx * x, yy * y, zz * z, SQRT3 * xx * y, SQRT3 * xx * z, SQRT3 * yy * x, SQRT3 * yy * z,
                    SQRT3 * zz * x, SQRT3 * zz * y, SQRT6 * xy * z]
    return torch.stack(columns, dim=1)


def _pair_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_c a_{n,c,k} b_{n,c,l} for all channel pairs (k, l), flattened: (N, C, K) × (N, C, K) → (N, K·K)."""
    return (a.unsqueeze(3) * b.unsqueeze(2)).sum(1).flatten(1)


class MomentDescriptor(torch.nn.Module):
    """Invariant per-atom features from Cartesian moments of learned radial channels.

    Args:
        n_species: number of elements (species indices 0..n_species-1).
        cutoff: Å.
        n_basis: radial Bessel functions.
        n_channels: radial channels K.
        l_max: highest tensor order (0..3).
        n_products: K', invariants per contraction type.
        avg_neighbors: normaliser n̄ of the moments.
    """

    def __init__(
        self, n_species: int, cutoff: float, n_basis: int = 8, n_channels: int = 32, l_max: int = 3,
        avg_neighbors: float = 30.0, n_products: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if not 0 <= l_max <= 3:
            raise ValueError(f"l_max must be 0..3, got {l_max}")
        self.n_species = n_species
        self.cutoff = float(cutoff)
        self.n_basis = n_basis
        self.n_channels = n_channels
        self.l_max = l_max
        self.register_buffer("avg_neighbors", torch.tensor(float(avg_neighbors)))
        n_pairs = n_species * n_species
        self.n_products = int(n_products or n_channels)
        kp = self.n_products
        self.mixing = torch.nn.Parameter(torch.randn(max(l_max, 1), n_channels, 4 * kp) / math.sqrt(n_channels))
        self.radial_weights = torch.nn.Parameter(torch.randn(n_pairs * n_basis, n_channels) / math.sqrt(n_basis))

    @property
    def n_features(self) -> int:
        """Number of invariants per atom."""
        extra = {0: 0, 1: 1, 2: 4, 3: 5}[self.l_max]
        return self.n_channels + extra * self.n_products

    def moments(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """A_{i,c,k}: shape (N, n_components, K) for edge vectors (E, 3) from centre i to neighbour j.

        Edges must be sorted by ``i``. The per-edge products are never materialised as an (E, C, K) tensor: edges
        are laid out in a padded (N, M) per-atom table and A_L = Y_Lᵀ R_L is one batched matrix product per L.
        """
        n_atoms = species.shape[0]
        n_edges = vectors.shape[0]
        s = self.n_species
        r = torch.linalg.norm(vectors, dim=-1)
        u = vectors / r.unsqueeze(-1)
        basis = bessel_basis(r, self.cutoff, self.n_basis)  # (E, nb)
        pair = torch.nn.functional.one_hot(species[i] * s + species[j], s * s).to(basis.dtype)
        expanded = (pair.unsqueeze(-1) * basis.unsqueeze(1)).view(n_edges, s * s * self.n_basis)
        radial = expanded @ self.radial_weights.to(basis.dtype)  # (E, K)
        angular = angular_components(u, self.l_max)  # (E, C)
        counts = torch.bincount(i, minlength=n_atoms)
        width = int(counts.max()) if n_edges > 0 else 1
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n_edges, device=i.device) - start[i]
        radial_table = radial.new_zeros(n_atoms, width, radial.shape[1]).index_put((i, slot), radial)
        angular_table = angular.new_zeros(n_atoms, width, angular.shape[1]).index_put((i, slot), angular)
        moments = torch.bmm(angular_table.transpose(1, 2), radial_table)  # (N, C, K)
        return moments / self.avg_neighbors.to(vectors.dtype)

    def invariants(self, moments: torch.Tensor) -> torch.Tensor:
        """Rotation invariants (N, n_features) from moments (N, C, K).

        Channels are first mixed linearly per angular order (learned, K → 2K'), then contracted channel by
        channel, so the cost is linear in the number of channels:
        I_{L,k} = ⟨(A_L W_L)_k, (A_L W'_L)_k⟩ (L ≥ 1), T_k = (A_1 U)_kᵀ (A_2 V)_k (A_1 U')_k,
        P_k = tr((A_2 V')_k³), plus A_{0,k}.
        """
        n, _, k = moments.shape
        kp = self.n_products
        features = [moments[:, 0, :]]
        w = self.mixing.to(moments.dtype)
        c0 = 1
        mixed = []
        for L in range(1, self.l_max + 1):
            c1 = c0 + N_COMPONENTS[L]
            m = moments[:, c0:c1, :] @ w[L - 1]  # (N, C_L, 4K')
            mixed.append(m)
            features.append((m[:, :, :kp] * m[:, :, kp : 2 * kp]).sum(1))
            c0 = c1
        if self.l_max >= 2:
            m1, m2 = mixed[0], mixed[1]
            u, u2 = m1[:, :, 2 * kp : 3 * kp], m1[:, :, 3 * kp :]
            mat = (m2[:, _M9_FROM, 2 * kp : 3 * kp] * moments.new_tensor(_M9_W).view(1, 9, 1)).view(n, 3, 3, kp)
            mu = (mat * u2.unsqueeze(1)).sum(2)  # (N, 3, K')
            features.append((u * mu).sum(1))
            mat2 = (m2[:, _M9_FROM, 3 * kp :] * moments.new_tensor(_M9_W).view(1, 9, 1)).view(n, 3, 3, kp)
            sq = (mat2.unsqueeze(3) * mat2.unsqueeze(1)).sum(2)  # (N, 3, 3, K')
            features.append((sq * mat2).sum((1, 2)))  # tr(M³) (M symmetric)
        return torch.cat(features, dim=1)

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """Invariant features (N, n_features) of every atom."""
        return self.invariants(self.moments(species, vectors, i, j))
