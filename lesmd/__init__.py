"""lesmd: molecular dynamics with Latent Ewald Summation (LES) machine-learned potentials.

The physics lives in pure torch (:mod:`lesmd.les`, :mod:`lesmd.models`); thin adapters connect it to ASE
(:class:`lesmd.calculator.LESCalculator`), i-PI (:mod:`lesmd.ipi`) and the command line (:mod:`lesmd.cli`).
"""

__version__ = "0.1.0"

__all__ = ["LESCalculator", "__version__"]


def __getattr__(name: str):
    # Lazy import: keep `import lesmd.les` free of ASE.
    if name == "LESCalculator":
        from lesmd.calculator import LESCalculator

        return LESCalculator
    raise AttributeError(f"module 'lesmd' has no attribute {name!r}")
