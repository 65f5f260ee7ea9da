"""The one-node latent charges (lesmd.models.charge_head) against the composable charge head, bound and
total-charge shift: values, first and second derivatives, errors."""

import math

import numpy as np
import pytest
import torch

from lesmd.models.charge_head import _LatentCharges, fused_head_applies, latent_charges, reference_charges
from lesmd.models.shortrange import mlp

F64 = torch.float64


def _head_and_features(n_atoms=12, n_features=7, hidden=5, seed=0, dtype=F64):
    torch.manual_seed(seed)
    head = mlp([n_features, hidden, 1]).to(dtype)
    features = torch.randn(n_atoms, n_features, dtype=dtype)
    return head, features


def _bounds_cutting(head, features, fraction=0.3):
    """Per-atom bounds that put some raw charges above, some below their range (float64 numpy) and a width."""
    with torch.no_grad():
        raw = head(features).squeeze(-1).double().numpy()
    spread = float(raw.max() - raw.min())
    lower = np.full_like(raw, raw.min() + fraction * spread)
    upper = np.full_like(raw, raw.max() - fraction * spread)
    return lower, upper, 0.2 * spread


@pytest.mark.parametrize("bounded", ["none", "inside", "cutting"])
def test_one_node_equals_composable_modules_in_values_and_all_gradients(bounded):
    head, features = _head_and_features()
    bounds = {"none": None, "inside": (np.full(12, -1e3), np.full(12, 1e3), 0.1),
              "cutting": _bounds_cutting(head, features)}[bounded]  # fmt: skip
    if bounded == "cutting":
        with torch.no_grad():
            raw = head(features).squeeze(-1).numpy()
        assert (raw > bounds[1]).any() and (raw < bounds[0]).any()
    weights = torch.randn(12, dtype=F64)
    results = []
    for function in (latent_charges, reference_charges):
        x = features.clone().requires_grad_(True)
        q = function(head, x, bounds, 0.3)
        grads = torch.autograd.grad((q * weights).sum(), (x, *head.parameters()))
        results.append((q.detach(), *grads))
    assert abs(float(results[0][0].sum()) - 0.3) < 1e-12
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=0, atol=1e-13), (a - b).abs().max()


def test_gradcheck_and_double_backward():
    head, features = _head_and_features(n_atoms=6, n_features=4, hidden=3, seed=1)
    bounds = _bounds_cutting(head, features, fraction=0.2)
    w1, b1, w2, b2 = (p.detach().clone().requires_grad_(True) for p in head.parameters())
    x = features.clone().requires_grad_(True)

    def charges(x, w1, b1, w2, b2):
        return _LatentCharges.apply(x, w1, b1, w2, b2, bounds, -0.4)

    assert torch.autograd.gradcheck(charges, (x, w1, b1, w2, b2))
    assert torch.autograd.gradgradcheck(charges, (x, w1, b1, w2, b2))


def test_float32_follows_float64():
    head, features = _head_and_features(seed=2)
    bounds = _bounds_cutting(head, features)
    q64 = latent_charges(head, features, bounds, 0.0)
    q32 = latent_charges(head.float(), features.float(), bounds, 0.0)
    assert q32.dtype == torch.float32
    assert float((q32.double() - q64).abs().max()) < 1e-5 * float(q64.abs().max())


def test_applies_only_to_a_one_hidden_layer_head_on_the_cpu():
    head, features = _head_and_features()
    assert fused_head_applies(head, features)
    assert not fused_head_applies(mlp([7, 5, 5, 1]).double(), features)
    assert not fused_head_applies(head, features.float())


def test_bad_input_is_named():
    head, features = _head_and_features()
    features[3, 2] = math.nan
    with pytest.raises(ValueError, match="raw_charges contains NaN or inf"):
        latent_charges(head, features, None, 0.0)
    with pytest.raises(ValueError, match="total_charge must be finite"):
        latent_charges(head, torch.zeros(4, 7, dtype=F64), None, math.inf)
