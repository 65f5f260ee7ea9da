"""Atomistic models: short-range MLIPs, the LES model (short range + latent Ewald), analytic test models."""
