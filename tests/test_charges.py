"""Total-charge constraint on latent charges."""

import pytest
import torch

from lesmd.les.charges import apply_total_charge


@pytest.mark.parametrize("total", [0.0, 1.0, -2.5])
def test_shifted_charges_sum_to_total_charge_with_uniform_shift(total):
    raw = torch.tensor([0.3, -0.1, 0.7, 0.2], dtype=torch.float64)
    q = apply_total_charge(raw, total)
    assert float(q.sum()) == pytest.approx(total, abs=1e-14)
    shift = q - raw
    assert torch.allclose(shift, shift[0].expand(4))
    assert float(shift[0]) == pytest.approx((total - 1.1) / 4, abs=1e-14)


def test_total_charge_shift_is_differentiable():
    raw = torch.tensor([0.3, -0.1, 0.7], requires_grad=True)
    (apply_total_charge(raw, 0.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(raw.grad, torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("bad", [torch.zeros(2, 2), torch.zeros(0), torch.tensor([1.0, float("nan")])])
def test_bad_raw_charges_raise(bad):
    with pytest.raises(ValueError, match="raw_charges"):
        apply_total_charge(bad, 0.0)
