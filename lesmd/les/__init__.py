"""Pure-torch LES physics: smeared-Coulomb (Ewald) energies, latent charges and electrical response.

No ASE in here. Units: eV, Å, e (see :mod:`lesmd.units`).
"""
