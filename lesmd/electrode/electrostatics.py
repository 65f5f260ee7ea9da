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
height, so each pair has one nearest image): W = r_c/(√2 x), x = erfc⁻¹(ε). For frozen electrodes the
electrode factors 2w(k)f_i(k)(cos, sin)(k·r_i) are computed once and cached; a step then costs O(N_elyt·N_k).

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

import torch

from lesmd.les.ewald import coulomb_energy, coulomb_matrix
from lesmd.les.kspace import half_space_kvectors, smooth_window
from lesmd.les.potentials import fourier_prefactor, real_space_kernel
from lesmd.les.tuning import WINDOW_RATIO, erfcinv
from lesmd.units import COULOMB, EPSILON0

_PERIODIC = (True, True, True)


class Electrostatics:
    """Coulomb sums for one electrode boundary.

    Args:
        boundary: "slab" or "finite_field".
        accuracy: relative accuracy ε of the Ewald sums.
        slab_factor: z extension of the slab cell (≥ 2; the vacuum gap is (slab_factor − 1)·L_z).
        real_space_cutoff: real-space cutoff of the coupling sum, Å (sets the Ewald split).
    """

    def __init__(self, boundary: str, accuracy: float, slab_factor: float = 3.0,
                 real_space_cutoff: float = 16.0) -> None:
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
        phase = pos_el @ k.T
        factor = 2.0 * weight * torch.exp(-0.5 * k2[None, :] * widths_el[:, None] ** 2)
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
            "cos": factor * torch.cos(phase),
            "sin": factor * torch.sin(phase),
        }
        if frozen:
            self._kcache = terms
        return terms

    def prepare(self, pos_el: torch.Tensor, cell: torch.Tensor, widths_el: torch.Tensor, width_ly: float) -> dict:
        """Per-geometry terms of the coupling sum (cached for frozen electrodes); pass to the methods below."""
        return self._electrode_terms(pos_el, cell, widths_el, width_ly)

    def coupling_potential(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, charges_ly: torch.Tensor,
                           cell: torch.Tensor, widths_el: torch.Tensor, width_ly: float,
                           terms: dict | None = None, pairs: tuple | None = None) -> torch.Tensor:
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
        s_re, s_im = _StructureFactor.apply(charges_ly, pos_ly, t["k"].detach())
        s_re, s_im = t["form_ly"] * s_re, t["form_ly"] * s_im  # one electrolyte width: f(k) factors out
        phi = t["cos"] @ s_re + t["sin"] @ s_im
        # real space (electrode–electrolyte pairs within r_c, all images) and the background cross term
        i, j, vectors = self.pairs(pos_el, pos_ly, t, t["r_cut"]) if pairs is None else pairs
        r = torch.linalg.norm(vectors, dim=-1)
        inside = r.detach() < t["r_cut"]
        kernel = real_space_kernel(r[inside], widths_el[i[inside]] ** 2 + width_ly**2, split2)
        phi = phi.index_add(0, i[inside], COULOMB * charges_ly[j[inside]] * kernel)
        phi = phi - split2 * charges_ly.sum() / (EPSILON0 * volume)
        if self.slab:
            phi = phi + self._dipole_prefactor(cell) * pos_el[:, 2] * torch.dot(charges_ly, pos_ly[:, 2])
        return phi

    def pairs(self, pos_el: torch.Tensor, pos_ly: torch.Tensor, terms: dict,
              cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Electrode–electrolyte pairs closer than ``cutoff`` over all periodic images of the Ewald cell.

        Returns i (P,) electrode index, j (P,) electrolyte index and the vectors r_j − r_i + n·box (P, 3) in Å,
        differentiable w.r.t. both positions. The search runs on wrapped, detached copies (electrode side cached
        for frozen electrodes): O(N_el · N_elyt · images) distance tests without gradient.
        """
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

    def check_slab_extent(self, positions: torch.Tensor, cell: torch.Tensor) -> None:
        """Slab: all atoms must lie within 0 ≤ z < L_z (the vacuum of the extended cell stays empty)."""
        if not self.slab or positions.shape[0] == 0:
            return
        z = positions.detach()[:, 2]
        lz = float(cell[2, 2])
        if float(z.min()) < -1e-9 or float(z.max()) >= lz:
            raise ValueError(f"slab boundary: atoms must lie within 0 ≤ z < L_z = {lz:.4f} Å "
                             f"(found z from {float(z.min()):.4f} to {float(z.max()):.4f} Å)")


class _StructureFactor(torch.autograd.Function):
    """(Σ_j q_j cos(k·r_j), Σ_j q_j sin(k·r_j)) for (M, 3) k-vectors, with a backward pass that reuses the
    forward cos/sin (autograd would recompute both) — the dominant cost of a frozen-electrode step."""

    @staticmethod
    def forward(ctx, charges: torch.Tensor, positions: torch.Tensor, k: torch.Tensor):
        phase = positions @ k.T
        cos, sin = torch.cos(phase), torch.sin(phase)
        ctx.save_for_backward(charges, cos, sin, k)
        return charges @ cos, charges @ sin

    @staticmethod
    def backward(ctx, grad_re: torch.Tensor, grad_im: torch.Tensor):
        charges, cos, sin, k = ctx.saved_tensors
        grad_charges = cos @ grad_re + sin @ grad_im
        grad_positions = (charges[:, None] * (cos * grad_im - sin * grad_re)) @ k
        return grad_charges, grad_positions, None


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
