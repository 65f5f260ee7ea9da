"""Constant-potential electrodes around an LES electrolyte (Siepmann–Sprik / Reed et al. / Dufils et al.).

Physics. Electrode atoms carry Gaussian charges q_i (density ∝ exp(−η²|r − r_i|²), i.e. standard deviation
s = 1/(√2η)) that minimise, at every step, the energy

    U(q) = ½ qᵀA q + qᵀφ − Σ_k Ψ_k Q_k − E_z M_z,    Σ_i q_i = −Σ_j p_j  (overall neutrality, multiplier λ)

(Siepmann & Sprik, JCP 102, 511 (1995); Reed, Lanning & Madden, JCP 126, 084704 (2007)), where A is the Ewald
Coulomb matrix of the electrode Gaussians including their self-energy k_e/(√π s) on the diagonal, φ_i the potential
of the electrolyte charges p at electrode site i, Ψ_k the set potential of electrode k, Q_k its charge. Hence
A q = b + λ1 with b_i = Ψ_k(i) − φ_i + E_z z_i. An electrode may instead carry a fixed total charge (one more
constraint). Boundaries:

* ``slab``: x, y periodic, z open: Ewald in a cell ``slab_factor`` (3) times taller with the Yeh–Berkowitz dipole
  correction (EW3DC, as LAMMPS ``kspace_modify slab 3.0``; :mod:`lesmd.electrode.electrostatics`); all atoms
  must lie in 0 ≤ z < L_z;
* ``finite_field``: 3-D periodic (tin-foil) with the set potentials Ψ_bot, Ψ_top kept AND a uniform field
  E_z = −(Ψ_top − Ψ_bot)/L_z acting on every charge (Dufils, Jeanmairet, Rotenberg, Sprik, Salanne, PRL 123,
  195501 (2019)). Both are needed: for two charged sheets the periodic potential drop across the gap is
  −σd(L−d)/(Lε0) and the field adds ΔΨ d/L; their sum equals ΔΨ only for σ = ε0ΔΨ/d, the ideal capacitor.
  Electrode z must be continuous (bottom electrode below the top one, unwrapped).

Energy and forces. The dynamics conserve the Legendre-transformed energy Ω = U_total − Σ Ψ_k Q_k (the model's
electrolyte energy, the electrostatics, −E·M and the Lennard-Jones term included). Since q* minimises Ω on the
constraint set, the forces are −∂Ω/∂r at fixed q* (Hellmann–Feynman); autograd also carries the model's
charge-derivative terms through the latent charges p(r).

Electrolyte charges and ε∞. The electrolyte charges are the model's latent charges p. LES latent charges are the
physical charges screened by the electronic dielectric constant, p = q_phys/√ε∞, and the model's own Coulomb energy
is that of p in vacuum. We treat the electrodes in the same screened world: the whole electrostatic problem is
solved in latent units with Ψ̃ = √ε∞Ψ and Ẽ = √ε∞E, and every reported charge is multiplied by √ε∞. Energies
are unchanged by this rescaling (Ψ̃·Q̃ = Ψ·Q, Ẽ·M̃ = E·M), the field coupling matches
:func:`lesmd.evaluate.evaluate` (−E·M with the √ε∞-scaled dipole), and ε∞ = 1 (default for bare models) gives
plain vacuum electrostatics; a vacuum capacitor then holds ε∞ times the vacuum charge (uniform ε∞ background).
The electrolyte charges couple to the electrodes as Gaussians of the model's LES width σ/√2 (option
``electrolyte_width``; 0 = point charges).

Electrode–electrolyte short range (``short_range``): from the model when it knows every electrode element, else
Lennard-Jones with user parameters (:mod:`lesmd.electrode.lennard_jones`). With the model ("model", or "auto" and
a model such as :class:`~lesmd.models.les.LESModel` whose species include the electrode elements) the model's
short range runs on ALL atoms (pbc T,T,F for the slab, 3-D for finite_field), so the water–metal interaction and
the water's environment near the metal are the model's; the electrolyte charges p are the model's latent charges
of the electrolyte atoms in that combined environment, shifted over the electrolyte alone to Σp = Q_electrolyte;
the model's LES term runs on p and the electrolyte atoms only; the electrode atoms' latent charges are unused
(their charges come from the constant-potential solve). Ω = E_sr(model, all atoms) + E_LES(p) + electrode terms;
frozen electrodes still get zero forces, mobile ones the model's short-range forces too. Otherwise ("lennard_jones",
or "auto" with a model that does not know the electrode element or cannot evaluate it, e.g. analytic models) the
model runs on the electrolyte atoms alone and the ``[lennard_jones]`` table (if any) adds the repulsion.

Solvers. ``matrix`` (frozen electrodes): A⁻¹ is built once (O(N_el³)) and reused, the electrode k-space factors
are cached; each step costs the electrode–electrolyte Ewald coupling O((N_el + N_elyt)·N_k + pairs) plus
O(N_el²). Frozen electrode atoms get zero forces. ``cg`` (mobile electrodes): A is rebuilt from the current
positions every step (no O(N³) factorisation) and solved by projected Jacobi-preconditioned conjugate gradients,
warm-started from the previous step; electrode atoms get their full forces.

Outputs of ``compute``: "energy" Ω (eV), "forces", "charges" (all atoms, e), "dipole", "electrode_charges",
"electrode_total_charges" (e), "electrode_potentials" (V, up to a common constant), and on request
"capacitance" C_kl = ∂Q_k/∂Ψ_l (e/V). No stress (the i-PI virial is zero: no NPT).

Config file (TOML)::

    boundary = "slab"            # "slab" (pbc T,T,F) or "finite_field" (3-D periodic + E_z = −ΔΨ/L_z)
    solver = "matrix"            # "matrix" (frozen electrodes) or "cg" (mobile electrodes)
    accuracy = 1e-6              # relative accuracy of the Ewald sums
    # electrolyte_width = 0.0    # Å; default: the model's LES width σ/√2; 0 = point charges
    # epsilon_inf = 1.0          # default: the base potential's ε∞ (1 for a bare model)
    # real_space_cutoff = 12.0   # Å, real-space cutoff of the electrode–electrolyte Ewald sum
    # slab_factor = 3.0          # slab: Ewald cell height in units of L_z (EW3DC)
    # cg_tolerance = 1e-9        # V, largest residual potential error of the CG solver
    # cg_max_iterations = 1000
    # min_distance = 0.3         # Å, closer atoms raise an error
    # short_range = "auto"       # electrode–electrolyte short range: "auto" (the model if it knows every electrode
    #                            # element, else Lennard-Jones), "model" (error if it does not), "lennard_jones"
    #                            # (needs the [lennard_jones] table); "model" excludes a [lennard_jones] table

    [[electrode]]                # one table per electrode; finite_field: bottom first, then top
    name = "bottom"
    indices = "0:144"            # "start:stop" (stop exclusive), or a list [0, 1, 2], or: tag = 1 (ASE tags)
    potential = -0.6             # V; or: charge = 0.0 (e) for a fixed-charge electrode
    eta = 1.979                  # Å⁻¹ (Gaussian exp(−η²r²))

    [[electrode]]
    name = "top"
    indices = "144:288"
    potential = 0.6
    eta = 1.979

    [lennard_jones]              # electrode–electrolyte pairs only (used unless the model supplies the short
                                 # range); Lorentz–Berthelot mixing
    cutoff = 10.0                # Å (energy shifted to 0 there)
    Au = { epsilon = 0.2294, sigma = 2.629 }   # eV, Å
    O = { epsilon = 0.00674, sigma = 3.166 }
    H = { epsilon = 0.0, sigma = 0.0 }
    # pairs = { "Au-O" = { epsilon = 0.01, sigma = 3.0 } }   # explicit pairs override the mixing

API: :class:`ElectrodePotential` (``compute(numbers, positions, cell, pbc, properties)``),
:func:`potential_from_config` (``lesmd serve --electrode CONFIG``), :func:`load_config`,
:class:`ElectrodeCalculator` (ASE).
"""

from lesmd.electrode.config import Electrode, ElectrodeConfig, LennardJones, config_from_dict, load_config
from lesmd.electrode.potential import ElectrodePotential, potential_from_config

__all__ = [
    "Electrode",
    "ElectrodeConfig",
    "LennardJones",
    "ElectrodePotential",
    "ElectrodeCalculator",
    "config_from_dict",
    "load_config",
    "potential_from_config",
]


def __getattr__(name: str):
    if name == "ElectrodeCalculator":  # ASE adapter, imported lazily
        from lesmd.electrode.calculator import ElectrodeCalculator

        return ElectrodeCalculator
    raise AttributeError(name)
