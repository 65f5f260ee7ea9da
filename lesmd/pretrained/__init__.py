"""Embedded model files: ``water_les.pt`` (default water model) with its card ``water_les.json`` / README.md.

Load with :func:`lesmd.models.io.load_model` (``load_model()`` gives the default water model).
"""
