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

Everything is vectorised over a padded (atom, neighbour slot) table (no loops over atoms), and differentiable with
respect to the edge vectors, hence positions and cell. The learned radial mixing is applied to basis moments per
atom rather than to every edge (see :meth:`MomentDescriptor.moments`).
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


def angular_products(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, l_max: int) -> list[torch.Tensor]:
    """Stored components of u^{⊗L}, L = 0..l_max, from the Cartesian components of unit vectors (any equal shapes).

    Order: L=0: 1; L=1: x, y, z; L=2: xx, yy, zz, √2xy, √2xz, √2yz;
    L=3: xxx, yyy, zzz, √3xxy, √3xxz, √3xyy, √3yyz, √3xzz, √3yzz, √6xyz.
    Written out one elementwise product at a time: the fastest form on CPU.
    """
    rows = [torch.ones_like(x)]
    if l_max >= 1:
        rows += [x, y, z]
    if l_max >= 2:
        xx, yy, zz, xy, xz, yz = x * x, y * y, z * z, x * y, x * z, y * z
        rows += [xx, yy, zz, SQRT2 * xy, SQRT2 * xz, SQRT2 * yz]
    if l_max >= 3:
        rows += [xx * x, yy * y, zz * z, SQRT3 * xx * y, SQRT3 * xx * z, SQRT3 * yy * x, SQRT3 * yy * z,
                 SQRT3 * zz * x, SQRT3 * zz * y, SQRT6 * xy * z]
    return rows


def angular_rows(u: torch.Tensor, l_max: int) -> torch.Tensor:
    """Stored components of u^{⊗L} (:func:`angular_products`) of unit vectors u (E, 3), component-major:
    shape (Σ_L N_COMPONENTS[L], E)."""
    return torch.stack(angular_products(*u.t().contiguous().unbind(0), l_max), dim=0)


def angular_components(u: torch.Tensor, l_max: int) -> torch.Tensor:
    """Stored components of u^{⊗L}, L = 0..l_max (see :func:`angular_rows`), shape (E, Σ_L N_COMPONENTS[L])."""
    return angular_rows(u, l_max).t()


def _bilinear_symmetric(u: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """uᵀ M w per atom and channel for symmetric M given by its stored components (see :func:`angular_rows`).

    Args:
        u, w: (N, 3, K') vectors; m: (N, 6, K') stored xx, yy, zz, √2xy, √2xz, √2yz.
    Returns:
        (N, K').
    """
    ux, uy, uz = u.unbind(1)
    wx, wy, wz = w.unbind(1)
    diagonal = (m[:, :3] * u * w).sum(1)
    off = m[:, 3] * (ux * wy + uy * wx) + m[:, 4] * (ux * wz + uz * wx) + m[:, 5] * (uy * wz + uz * wy)
    return diagonal + off / SQRT2


def _trace_cubed_symmetric(m: torch.Tensor) -> torch.Tensor:
    """tr(M³) per atom and channel for symmetric M given by stored components (N, 6, K') → (N, K').

    With diagonal a, b, c and off-diagonal d, e, f (M_xy, M_xz, M_yz):
    tr(M³) = a³ + b³ + c³ + 3a(d² + e²) + 3b(d² + f²) + 3c(e² + f²) + 6def; the stored off-diagonal
    components are √2 d, √2 e, √2 f.
    """
    a, b, c, d2, e2, f2 = m.unbind(1)  # d2 = √2 d etc.
    dd, ee, ff = d2 * d2, e2 * e2, f2 * f2
    cubes = a * a * a + b * b * b + c * c * c
    mixed = a * (dd + ee) + b * (dd + ff) + c * (ee + ff)
    return cubes + 1.5 * mixed + (3.0 / SQRT2) * d2 * e2 * f2


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
    ) -> list[torch.Tensor]:
        """A_{i,c,k} for L = 0..l_max: a list of (N, N_COMPONENTS[L], K) tensors, for edge vectors (E, 3) from
        centre i to neighbour j.

        Edges must be sorted by ``i``. Because R^{(Z_i Z_j)}_{L,k} = Σ_n W^{(Z_i Z_j)}_{n,k} B_n, the moments
        factor as A_{i,c,k} = Σ_{z,n} G_{i,c,(z,n)} W^{(Z_i z)}_{n,k} with the basis moments
        G_{i,c,(z,n)} = Σ_{j: Z_j = z} Y_c(u_ij) B_n(r_ij). G is a batched matrix product of two padded (N, M)
        per-atom edge tables (angular components, and basis functions sorted into neighbour-element blocks), and
        the learned radial mixing then runs per atom rather than per edge.
        """
        n_atoms = species.shape[0]
        n_edges = vectors.shape[0]
        s, nb, k = self.n_species, self.n_basis, self.n_channels
        counts = torch.bincount(i, minlength=n_atoms)
        width = int(counts.max()) if n_edges > 0 else 1
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n_edges, device=i.device) - start.index_select(0, i)
        # (N, M) tables; empty slots hold a vector of length r_c, where every basis function vanishes
        table = vectors.new_zeros(n_atoms, width, 3)
        table[:, :, 0] = self.cutoff
        table = table.index_put((i, slot), vectors).view(n_atoms * width, 3)
        neighbor_species = species.new_zeros(n_atoms, width).index_put((i, slot), species.index_select(0, j)).view(-1)
        r = torch.linalg.norm(table, dim=-1)
        basis = bessel_basis(r, self.cutoff, nb)  # (N·M, nb)
        # basis functions in the block of the neighbour's element: (N·M, S, nb), zero in the other blocks
        slots = torch.arange(n_atoms * width, device=i.device)
        by_element = basis.new_zeros(n_atoms * width, s, nb).index_put((slots, neighbor_species), basis)
        # angular components in (N, C, M) layout: stacked along the middle dimension, so that neither the
        # product below nor its backward needs a transposed copy
        x, y, z = (table / r.unsqueeze(-1)).t().contiguous().view(3, n_atoms, width).unbind(0)
        angular = torch.stack(angular_products(x, y, z, self.l_max), dim=1)  # (N, C, M)
        g = torch.bmm(angular, by_element.view(n_atoms, width, s * nb))  # (N, C, S·nb)
        # W[(z_i, z, n), k] / n̄ → the centre's own (S·nb, K) block, one per atom
        w = self.radial_weights.to(basis.dtype).view(s, s * nb, k) / self.avg_neighbors.to(basis.dtype)
        w_atom = w[species]  # (N, S·nb, K)
        moments = [torch.bmm(g_l, w_atom) for g_l in g.split(list(N_COMPONENTS[: self.l_max + 1]), dim=1)]
        return moments

    def invariants(self, moments: list[torch.Tensor]) -> torch.Tensor:
        """Rotation invariants (N, n_features) from the moments of each order, [(N, N_COMPONENTS[L], K)].

        Channels are first mixed linearly per angular order (learned, K → 2K' or 4K'), then contracted channel
        by channel, so the cost is linear in the number of channels:
        I_{L,k} = ⟨(A_L W_L)_k, (A_L W'_L)_k⟩ (L ≥ 1), T_k = (A_1 U)_kᵀ (A_2 V)_k (A_1 U')_k,
        P_k = tr((A_2 V')_k³), plus A_{0,k}.
        """
        kp = self.n_products
        features = [moments[0][:, 0, :]]
        w = self.mixing.to(moments[0].dtype)
        mixed = []
        for L in range(1, self.l_max + 1):
            used = 4 if L <= 2 else 2  # L = 1, 2 also feed the order-4 invariants
            # one product per weight block (splitting one wide product costs a slow concatenation backward)
            parts = [moments[L] @ w[L - 1, :, p * kp : (p + 1) * kp] for p in range(used)]  # each (N, C_L, K')
            mixed.append(parts)
            features.append((parts[0] * parts[1]).sum(1))
        if self.l_max >= 2:
            (_, _, u, u2), (_, _, v, v2) = mixed[0], mixed[1]
            features.append(_bilinear_symmetric(u, v, u2))
            features.append(_trace_cubed_symmetric(v2))
        return torch.cat(features, dim=1)

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        """Invariant features (N, n_features) of every atom."""
        return self.invariants(self.moments(species, vectors, i, j))
