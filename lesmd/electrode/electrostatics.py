"""Electrode electrostatics: the electrode Coulomb matrix and the electrode–electrolyte coupling, by Ewald sums.

Charges are Gaussians with per-atom standard deviations s_i (electrode s = 1/(√2η), electrolyte s = σ/√2 of the
LES model, 0 = point charge); two charges interact through k_e erf(r/√(2(s_i² + s_j²)))/r
(:mod:`lesmd.les.potentials`). The total electrostatic energy splits as

    E_C(q ⊕ p) = ½ qᵀA q + qᵀφ + E_C(0 ⊕ p),

where ½qᵀAq is the electrode–electrode energy including each Gaussian's self-energy k_e q²/(2√π s) (core
:func:`lesmd.les.ewald.coulomb_matrix` / :func:`~lesmd.les.ewald.coulomb_energy`), φ_i the potential of the
electrolyte charges p at electrode site i, and E_C(0 ⊕ p) the electrolyte–electrolyte energy, which belongs to the
LES model. This module evaluates the coupling φ (N_el,) as an explicit, differentiable function of the positions
and of p, summing only electrode–electrolyte terms, O((N_el + N_elyt)·N_k + pairs):

    φ_i = Σ_{k≠0} (1/(Vε0)) e^(−k²a²)/k² w(k) f_i(k) · 2 Re[e^(−ik·r_i) S(k)],  S(k) = Σ_j p_j f_j(k) e^(ik·r_j)
          + Σ_{j, images, r<r_c} k_e p_j [erfc(r/√(2W²)) − erfc(r/√(2w²))]/r  −  a² Q_elyt/(ε0 V)   [+ slab term]

with f_i(k) = e^(−k²s_i²/2), w(k) the smooth window of :mod:`lesmd.les.kspace`, W² = s_i² + s_j² + 2a² and the
neutralising-background cross term; these are the cross terms of the core's Ewald energy (tested against it).
The split a is chosen so that the real-space cutoff is ``real_space_cutoff`` (at most half the smallest cell
height, so each pair has one nearest image): W = r_c/(√2 x), x = erfc⁻¹(ε).

Speed: k·r = 2π(h f₁ + k f₂) + 2π l f₃ (f = fractional coordinates), so S(k) needs only N_elyt·(P + L) cos/sin
for the P in-plane index pairs and L values of l, and one (2P, N)·(N, 2L') matrix product over l ≥ 0 (the ±l terms
come from the same four real sums). For frozen electrodes in a cell whose third vector is along z (both
boundaries), the electrode side is separable as well (few distinct layer heights): tables built once
(:mod:`lesmd.electrode.frozen`, which also holds the per-step sums with hand-written gradients), then φ costs
O(N_elyt·P·L' + P·L'·U + N_el·P) with U the number of distinct (z, width) of the electrode atoms, instead of
O(N_el·N_k). The real-space pairs come from a Verlet list (skin ``PAIR_SKIN``) whose electrode ends and kernel
factors are stored. The default r_c = 12 Å balances the two parts for the Au(100)/water benchmark
(see benchmarks/bench_electrode.py).

Boundaries:
* ``finite_field``: 3-D periodic, tin-foil.
* ``slab`` (x, y periodic, z open): EW3DC of Yeh & Berkowitz (JCP 111, 3155 (1999)), as in LAMMPS: the cell is
  extended along z by ``slab_factor`` (3; vacuum above the atoms) and the dipole correction
  E_corr = M_z²/(2ε0V_ext), M_z = Σ q_i z_i, removes the interaction between replicas along z; it adds
  z_i M_z^elyt/(ε0V_ext) to φ_i and z_i z_j/(ε0V_ext) to A. For a neutral whole it does not depend on the z origin.
  These are the settings of the LAMMPS ELECTRODE reference (Ahrens-Iwers et al., JCP 157, 084801 (2022)).
Units: e, Å, eV, V; float64 tensors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from lesmd.electrode.frozen import electrode_tables, frozen_reciprocal, screened_pair_sum, verlet_distances
from lesmd.les.ewald import coulomb_energy, coulomb_matrix
from lesmd.les.kspace import half_space_kvectors, smooth_window
from lesmd.les.potentials import fourier_prefactor, real_space_kernel
from lesmd.les.tuning import WINDOW_RATIO, erfcinv
from lesmd.units import COULOMB, EPSILON0

_PERIODIC = (True, True, True)
PAIR_SKIN = 1.0  # Å, Verlet skin of the cached electrode–electrolyte pair list (frozen electrodes)


class PairList(NamedTuple):
    """Electrode–electrolyte pairs: i (P,) electrode index, j (P,) electrolyte index and the distances (P,) Å
    from the electrode atom to the electrolyte atom's listed image (differentiable).

    A Verlet list (frozen electrodes) also holds pairs up to cutoff + skin: each consumer applies its own cutoff
    (exact, as each term is zero beyond it). ``scales``: cached (P,) factors 1/√(2W²), 1/√(2w²) (Å⁻¹) of the
    real-space kernel [erfc(r/√(2W²)) − erfc(r/√(2w²))]/r, w² = s_i² + s_elyt², W² = w² + 2a² (None: compute).
    """

    i: torch.Tensor
    j: torch.Tensor
    distances: torch.Tensor
    scales: tuple[torch.Tensor, torch.Tensor] | None = None


class Electrostatics:
    """Coulomb sums for one electrode boundary.

    Args:
        boundary: "slab" or "finite_field".
        accuracy: relative accuracy ε of the Ewald sums.
        slab_factor: z extension of the slab cell (≥ 2; the vacuum gap is (slab_factor − 1)·L_z).
        real_space_cutoff: real-space cutoff of the coupling sum, Å (sets the Ewald split).
    """

    def __init__(self, boundary: str, accuracy: float, slab_factor: float = 3.0,
                 real_space_cutoff: float = 12.0) -> None:
        if boundary not in ("slab", "finite_field"):
            raise ValueError(f"boundary must be 'slab' or 'finite_field', got {boundary!r}")
        if slab_factor < 2.0:
            raise ValueError(f"slab_factor must be ≥ 2, got {slab_factor}")
        self.slab = boundary == "slab"
        self.accuracy = accuracy
        self.slab_factor = slab_factor
        self.real_space_cutoff = real_space_cutoff
        self._x = erfcinv(accuracy)
        self._kcache: dict = {}
        self._pair_cache: dict | None = None

    def cell(self, cell: torch.Tensor) -> torch.Tensor:
        """The 3-D periodic Ewald cell: the input cell, z-extended by ``slab_factor`` for the slab boundary."""
        if not self.slab:
            return cell
        scale = torch.tensor([1.0, 1.0, self.slab_factor], dtype=cell.dtype, device=cell.device)
        return cell * scale[:, None]

    def _dipole_prefactor(self, cell: torch.Tensor) -> torch.Tensor:
        """1/(ε0 V_ext) in eV·Å⁻²/e² (slab dipole correction)."""
        return 1.0 / (EPSILON0 * torch.linalg.det(self.cell(cell)).abs())

    # ------------------------------------------------------------ electrode–electrode
    def matrix(self, positions: torch.Tensor, cell: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
        """Dense A (N_el, N_el) in eV/e² with E = ½ qᵀAq, Gaussian self-energies on the diagonal (detached)."""
        with torch.no_grad():
            a = coulomb_matrix(positions, self.cell(cell), _PERIODIC, widths, accuracy=self.accuracy,
                               self_energy=True)
            if self.slab:
                z = positions[:, 2]
                a = a + self._dipole_prefactor(cell) * z[:, None] * z[None, :]
        return a

    def electrode_energy(self, charges: torch.Tensor, positions: torch.Tensor, cell: torch.Tensor,
                         widths: torch.Tensor) -> torch.Tensor:
        """½ qᵀA q (eV) with self-energies, differentiable w.r.t. the electrode positions (mobile electrodes)."""
        energy = coulomb_energy(charges, positions, self.cell(cell), _PERIODIC, widths, accuracy=self.accuracy,
                                method="direct", self_energy=True)  # the same sums as :meth:`matrix`
        if self.slab:
            m_z = torch.dot(charges, positions[:, 2])
            energy = energy + 0.5 * self._dipole_prefactor(cell) * m_z * m_z
        return energy

    # ------------------------------------------------------------ electrode–electrolyte coupling
    def _split(self, widths_el: torch.Tensor, width_ly: float) -> tuple[float, float, float, float]:
        """(a², r_c, k_on, k_cut) for the coupling sum."""
        w2 = widths_el.detach() ** 2 + width_ly**2
        target = self.real_space_cutoff / (math.sqrt(2.0) * self._x)
        split2 = max(0.0, 0.5 * (target**2 - float(w2.min())))
        total_min = math.sqrt(float(w2.min()) + 2.0 * split2)
        total_max = math.sqrt(float(w2.max()) + 2.0 * split2)
        k_on = math.sqrt(2.0) * self._x / total_min
        return split2, math.sqrt(2.0) * self._x * total_max, k_on, WINDOW_RATIO * k_on

    def _electrode_terms(
        self, pos_el: torch.Tensor, cell: torch.Tensor, widths_el: torch.Tensor, width_ly: float
    ) -> dict:
        """k-vectors, electrolyte form factors and the electrode factors 2·w(k)·f_i(k)·(cos, sin)(k·r_i).

        Cached while the electrodes do not move (positions without gradient, same cell and widths).
        """
        frozen = not pos_el.requires_grad and not cell.requires_grad
        key = None
        if frozen:
            key = (
                pos_el.cpu().numpy().tobytes(),
                cell.cpu().numpy().tobytes(),
                widths_el.cpu().numpy().tobytes(),
                float(width_ly),
            )
            if self._kcache.get("key") == key:
                return self._kcache
        box = self.cell(cell)
        split2, r_cut, k_on, k_cut = self._split(widths_el, width_ly)
        volume = torch.linalg.det(box).abs()
        k = half_space_kvectors(box, k_cut)
        k2 = (k * k).sum(-1)
        weight = fourier_prefactor(k2, split2) * smooth_window(k2, k_on, k_cut) / (volume * EPSILON0)
        wrapped, offsets = _wrap(pos_el.detach(), box)
        terms = {
            "key": key,
            "wrapped": wrapped,
            "offsets": offsets,
            "k": k,
            "split2": split2,
            "r_cut": r_cut,
            "volume": volume,
            "box": box,
            "form_ly": torch.exp(-0.5 * k2 * width_ly**2),
            "widths2_el": widths_el.detach() ** 2,
            "width_ly": float(width_ly),
            "separable": _separable_indices(k.detach(), box.detach()),
        }
        if frozen and _z_separable(box):  # per step: O(N_elyt·(P + L) + P·L·U), no (N_el, M) table
            terms["electrode_tables"] = electrode_tables(terms["separable"], k, weight, pos_el.detach(), box.detach(),
                                                         widths_el, width_ly)
        else:
            phase = pos_el @ k.T
            factor = 2.0 * weight * torch.exp(-0.5 * k2[None, :] * widths_el[:, None] ** 2)
            terms["cos"], terms["sin"] = factor * torch.cos(phase), factor * torch.sin(phase)
        if frozen:
            self._kcache = terms
        return terms

    def prepare(self, pos_el: torch.Tensor, cell: torch.Tensor, widths_el: torch.Tensor, width_ly: float) -> dict:
        """Per-geometry terms of the coupling sum (cached for frozen electrodes); pass to the methods below."""
        return self._electrode_terms(pos_el, cell, widths_el, width_ly)

    def coupling_potential(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, charges_ly: torch.Tensor,
                           cell: torch.Tensor, widths_el: torch.Tensor, width_ly: float,
                           terms: dict | None = None, pairs: PairList | None = None) -> torch.Tensor:
        """φ_i (N_el,) in V: potential of the electrolyte charges at the electrode sites (differentiable).

        Args:
            pos_el: (N_el, 3) Å (without gradient: frozen electrodes, the electrode factors are cached).
            pos_ly: (N_elyt, 3) Å.  charges_ly: (N_elyt,) e.  cell: (3, 3) Å.
            widths_el: (N_el,) electrode Gaussian standard deviations, Å.  width_ly: electrolyte one, Å.
            terms, pairs: from :meth:`prepare` and :meth:`pairs` when the caller already has them.
        """
        t = self.prepare(pos_el, cell, widths_el, width_ly) if terms is None else terms
        split2, volume = t["split2"], t["volume"]
        # reciprocal space: S(k) of the electrolyte, then 2 w f_i Re[e^(−ik·r_i) S(k)]
        if "electrode_tables" in t:  # frozen electrodes: separable on both sides, no (N_el, M) table
            phi = frozen_reciprocal(charges_ly, pos_ly, t["electrode_tables"])
        else:
            s_re, s_im = _structure_factor(charges_ly, pos_ly, t["box"], t["separable"])
            s_re, s_im = t["form_ly"] * s_re, t["form_ly"] * s_im  # one electrolyte width: f(k) factors out
            phi = t["cos"] @ s_re + t["sin"] @ s_im
        # real space (electrode–electrolyte pairs within r_c, all images) and the background cross term
        pairs = self.pairs(pos_el, pos_ly, t, t["r_cut"]) if pairs is None else pairs
        r, pair_charges = pairs.distances, charges_ly.index_select(0, pairs.j)
        if pairs.scales is None:
            kernel = torch.where(r.detach() < t["r_cut"],
                                 real_space_kernel(r, widths_el[pairs.i] ** 2 + width_ly**2, split2), 0.0)
            phi = phi.index_add(0, pairs.i, COULOMB * pair_charges * kernel)
        else:  # the same sum with the kernel factors cached (a Verlet list also holds pairs beyond r_c)
            phi = phi + screened_pair_sum(r, pair_charges, pairs.i, pairs.scales, t["r_cut"], phi.shape[0])
        phi = phi - split2 * charges_ly.sum() / (EPSILON0 * volume)
        if self.slab:  # 1/(ε0 V_ext): the dipole-correction prefactor
            phi = phi + pos_el[:, 2] * torch.dot(charges_ly, pos_ly[:, 2]) / (EPSILON0 * volume)
        return phi

    def pairs(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, terms: dict, cutoff: float) -> PairList:
        """Electrode–electrolyte pairs closer than ``cutoff`` over all periodic images of the Ewald cell.

        Returns a :class:`PairList` (electrode index i, electrolyte index j and the lengths of r_j − r_i + n·box,
        differentiable w.r.t. both positions). The search runs on wrapped, detached copies (electrode
        side cached for frozen electrodes): O(N_el · N_elyt · images) distance tests without gradient.

        Frozen electrodes keep a Verlet list: every pair within cutoff + ``PAIR_SKIN`` at the last search (lattice
        images fixed), searched again only once an electrolyte atom has moved by ≥ ``PAIR_SKIN``/2 since. The
        list is returned whole (pairs beyond ``cutoff`` included), so each step costs three 1-D gathers and no
        selection; the consumers apply their own cutoffs (exact: a term beyond its cutoff is 0).
        """
        cached = self._pair_cache
        if terms["key"] is None:
            i, j, vectors = self._search(pos_el, pos_ly, terms, cutoff)
            return PairList(i, j, torch.linalg.vector_norm(vectors, dim=1))
        if cached is None or cached["key"] != terms["key"] or cached["cutoff"] != cutoff \
                or cached["reference"].shape != pos_ly.shape or not _within_skin(pos_ly, cached["reference"]):
            cached = self._new_verlet_list(pos_el, pos_ly, terms, cutoff)
        distances = verlet_distances(pos_ly.T.contiguous(), cached["j"], cached["base"])
        return PairList(cached["i"], cached["j"], distances, cached["scales"])

    def _new_verlet_list(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, terms: dict, cutoff: float) -> dict:
        """Search the pairs within cutoff + ``PAIR_SKIN`` and store their constant parts (frozen electrodes)."""
        box = terms["box"].detach()
        i, j, vectors = self._search(pos_el.detach(), pos_ly.detach(), terms, cutoff + PAIR_SKIN)
        lattice = torch.round((pos_ly.detach()[j] - pos_el.detach()[i] - vectors) @ torch.linalg.inv(box))
        # r_j − r_i − n·box = r_j − base: the electrode end of every pair is fixed
        base = (pos_el.detach()[i] + lattice @ box).T.contiguous()  # (3, P)
        width2 = terms["widths2_el"][i] + terms["width_ly"] ** 2
        scales = None
        if bool((width2 > 0).all()):
            scales = (1.0 / torch.sqrt(2.0 * (width2 + 2.0 * terms["split2"])), 1.0 / torch.sqrt(2.0 * width2))
        self._pair_cache = {"key": terms["key"], "cutoff": cutoff, "reference": pos_ly.detach().clone(), "i": i,
                            "j": j, "base": base, "scales": scales}
        return self._pair_cache

    def _search(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, terms: dict,
                cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Brute-force image search behind :meth:`pairs`."""
        box = terms["box"]
        wrapped_ly, offsets_ly = _wrap(pos_ly, box)
        inverse = torch.linalg.inv(box.detach())
        frac = torch.cat([terms["wrapped"], wrapped_ly]) @ inverse
        extent = frac.max(0).values - frac.min(0).values
        shifts = _image_shifts(box, cutoff, extent)
        with torch.no_grad():
            images = (terms["wrapped"][None, :, :] + (shifts @ box)[:, None, :]).reshape(-1, 3)  # (S·N_el, 3)
            d2 = (images * images).sum(1)[:, None] + (wrapped_ly * wrapped_ly).sum(1)[None, :] \
                - 2.0 * images @ wrapped_ly.T
            flat, j = torch.nonzero(d2 < cutoff * cutoff, as_tuple=True)
            s_idx, i = flat // terms["wrapped"].shape[0], flat % terms["wrapped"].shape[0]
        lattice = shifts[s_idx] + offsets_ly[j] - terms["offsets"][i]
        vectors = pos_ly[j] - pos_el[i] - lattice @ box
        return i, j, vectors

    def check_slab_extent(self, positions: np.ndarray, cell: np.ndarray) -> None:
        """Slab: all atoms must lie within 0 ≤ z < L_z (the vacuum of the extended cell stays empty)."""
        if not self.slab or positions.shape[0] == 0:
            return
        z = np.asarray(positions)[:, 2]
        lz = float(cell[2, 2])
        if float(z.min()) < -1e-9 or float(z.max()) >= lz:
            raise ValueError(f"slab boundary: atoms must lie within 0 ≤ z < L_z = {lz:.4f} Å "
                             f"(found z from {float(z.min()):.4f} to {float(z.max()):.4f} Å)")


def _separable_indices(k: torch.Tensor, box: torch.Tensor) -> dict:
    """Integer decomposition of the k-vectors for :func:`_structure_factor`.

    k = 2π(h b₁ + k b₂ + l b₃) (b = rows of box⁻ᵀ), so k·r = 2π(h f₁ + k f₂) + 2π l f₃ with f = r·box⁻¹ the
    fractional coordinates. Returns the distinct in-plane pairs (h, k) (P, 2), the distinct l (L,) and, per
    k-vector, the index of its pair and of its l.
    """
    n = torch.round(k @ box.T / (2.0 * math.pi)).to(torch.long)
    pairs, pair_index = torch.unique(n[:, :2], dim=0, return_inverse=True)
    ls, l_index = torch.unique(n[:, 2], return_inverse=True)
    abs_ls = torch.arange(int(ls.abs().max()) + 1, device=k.device)
    return {"pairs": pairs.to(k.dtype), "ls": ls.to(k.dtype), "pair_index": pair_index, "l_index": l_index,
            "abs_ls": abs_ls.to(k.dtype), "abs_index": ls.abs(), "l_sign": torch.sign(ls).to(k.dtype),
            "inverse": torch.linalg.inv(box)}


def _four_sums(charges: torch.Tensor, positions: torch.Tensor, box: torch.Tensor, sep: dict) -> torch.Tensor:
    """The (2P, 2L') table [[Σ q c∥ c_z, Σ q c∥ s_z], [Σ q s∥ c_z, Σ q s∥ s_z]] over in-plane pairs × |l|.

    c∥, s∥ = cos, sin 2π(h f₁ + k f₂) and c_z, s_z = cos, sin 2π|l| f₃ (f = r·box⁻¹, |l| = 0 … max|l|): N·(P + L')
    cos/sin and one (2P, N)·(N, 2L') matrix product. Differentiable w.r.t. charges, positions and box.
    """
    inverse = sep["inverse"] if not box.requires_grad else torch.linalg.inv(box)
    frac = positions @ inverse
    phase_par = (2.0 * math.pi) * (frac[:, :2] @ sep["pairs"].T)  # (N, P)
    phase_z = (2.0 * math.pi) * frac[:, 2:3] * sep["abs_ls"][None, :]  # (N, L')
    left = charges[:, None] * torch.cat([torch.cos(phase_par), torch.sin(phase_par)], dim=1)  # (N, 2P)
    right = torch.cat([torch.cos(phase_z), torch.sin(phase_z)], dim=1)  # (N, 2L')
    return left.T @ right


def _structure_table(charges: torch.Tensor, positions: torch.Tensor, box: torch.Tensor,
                     sep: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Re and Im of S(h, k, l) = Σ_j q_j e^(2πi(h f₁ + k f₂ + l f₃)) on the (P, L) grid of in-plane pairs × l.

    e^(ik·r_j) = e^(2πi(h f₁ + k f₂)) · e^(2πi l f₃) (f = r·box⁻¹), so only N·(P + L) cos/sin are needed and the
    sum over atoms is one matrix product (:func:`_four_sums`). Its four real sums at |l| give S at both +l and −l
    (cos even, sin odd): Re S = Σ q c∥ c_z ∓ Σ q s∥ s_z, Im S = Σ q s∥ c_z ± Σ q c∥ s_z for l ≷ 0, so only the
    l ≥ 0 half enters the product. Differentiable w.r.t. charges, positions and box.
    """
    table = _four_sums(charges, positions, box, sep)
    n_par, n_abs = sep["pairs"].shape[0], sep["abs_ls"].shape[0]
    column, sign = sep["abs_index"], sep["l_sign"]  # (L,) position of |l| among abs_ls, sign of l
    cc, cs = table[:n_par, :n_abs][:, column], table[:n_par, n_abs:][:, column]
    sc, ss = table[n_par:, :n_abs][:, column], table[n_par:, n_abs:][:, column]
    return cc - sign * ss, sc + sign * cs


def _structure_factor(charges: torch.Tensor, positions: torch.Tensor, box: torch.Tensor,
                      sep: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ_j q_j cos(k·r_j), Σ_j q_j sin(k·r_j)) for the M k-vectors described by ``sep``, each (M,)."""
    s_re, s_im = _structure_table(charges, positions, box, sep)
    return s_re[sep["pair_index"], sep["l_index"]], s_im[sep["pair_index"], sep["l_index"]]


def _within_skin(positions: torch.Tensor, reference: torch.Tensor) -> bool:
    """Verlet criterion: every atom is closer than ``PAIR_SKIN``/2 to where it was at the last search."""
    if positions.shape[0] == 0:
        return True
    step = positions.detach() - reference
    return float((step * step).sum(1).max()) < 0.25 * PAIR_SKIN * PAIR_SKIN


def _z_separable(box: torch.Tensor) -> bool:
    """True when the third lattice vector is along z and the first two lie in the xy plane."""
    b = box.detach().abs()
    scale = float(b.max())
    return max(float(b[0, 2]), float(b[1, 2]), float(b[2, 0]), float(b[2, 1])) <= 1e-12 * scale


def _wrap(positions: torch.Tensor, box: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions wrapped into the cell (detached) and the integer lattice offsets removed, (N, 3) each."""
    frac = positions.detach() @ torch.linalg.inv(box.detach())
    offsets = torch.floor(frac)
    return (frac - offsets) @ box.detach(), offsets


def _image_shifts(box: torch.Tensor, cutoff: float, extent: torch.Tensor) -> torch.Tensor:
    """Integer lattice shifts (S, 3) that can bring two wrapped atoms within ``cutoff``.

    ``extent``: (3,) occupied fraction of the cell along each lattice vector; a direction needs no shift when
    the empty part of the cell is wider than the cutoff (e.g. the vacuum of the slab cell).
    """
    heights = 1.0 / torch.linalg.norm(torch.linalg.inv(box.detach()), dim=0)
    counts = []
    for d in range(3):
        empty = float(heights[d]) * (1.0 - float(extent[d]))
        counts.append(0 if empty > cutoff else int(math.ceil(cutoff / float(heights[d]))))
    ranges = [torch.arange(-n, n + 1, dtype=box.dtype, device=box.device) for n in counts]
    return torch.cartesian_prod(*ranges).reshape(-1, 3)
