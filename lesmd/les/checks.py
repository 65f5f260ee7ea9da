"""Cheap input checks shared by the LES physics (run on every MD step, so each must cost microseconds)."""

from __future__ import annotations

import numpy as np
import torch


def all_finite(values: torch.Tensor) -> bool:
    """No NaN or inf in ``values``: through numpy for CPU float32/float64 (a few µs instead of three tensor
    operations and a synchronisation), else by torch."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(values.detach().numpy()).all())
    return bool(torch.isfinite(values).all())
