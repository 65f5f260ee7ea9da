"""The single-node mesh energy of equal-width charges (lesmd.les.uniform_mesh) against the composable mesh path,
the direct k-sum, finite differences and autograd; and that les_energy takes it."""

import math

import pytest
import torch

from lesmd.les import mesh, uniform_mesh
from lesmd.les.ewald import les_energy
from lesmd.les.mesh import mesh_shape, native_spread_available
from lesmd.les.tuning import choose_parameters

F64 = torch.float64

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(not native_spread_available(), reason="needs the C spreading kernel (a C compiler)"),
]


def _system(n_atoms: int, seed: int = 0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    length = (n_atoms / 0.1) ** (1.0 / 3.0)
    cell = torch.eye(3, dtype=F64) * length
    cell[1, 0], cell[2, 0], cell[2, 1], cell[0, 2] = 0.13 * length, -0.08 * length, 0.05 * length, 0.03 * length
    positions = torch.rand(n_atoms, 3, generator=gen, dtype=F64) @ cell
    positions = positions + 0.3 * length * torch.randn(n_atoms, 3, generator=gen, dtype=F64)  # outside the cell too
    charges = torch.randn(n_atoms, generator=gen, dtype=F64)
    return (charges - charges.mean()).to(dtype), positions.to(dtype), cell.to(dtype)


def _params(cell, n_atoms, accuracy, width2=0.5):
    p = choose_parameters(width2, width2, float(torch.linalg.det(cell.double()).abs()), n_atoms, accuracy, "mesh")
    return (mesh_shape(cell, p.mesh_spacing, p.order), p.order, (p.split2, p.k_on, p.k_cut), width2, p.mesh_spacing)


def _energy_and_grads(function, charges, positions, cell):
    inputs = tuple(x.clone().requires_grad_(True) for x in (charges, positions, cell))
    energy = function(*inputs)
    return (energy.detach(), *torch.autograd.grad(energy, inputs))


def _node_equals_composable(charges, positions, cell, params):
    """Energy and gradients (q, r, h) of the single node, asserted equal to the composable version's to rounding
    (float64); returned."""
    fused = _energy_and_grads(lambda q, r, h: uniform_mesh._UniformMeshEnergy.apply(
        q, r, h, params, h.detach().double().numpy().tobytes()), charges, positions, cell)  # fmt: skip
    reference = _energy_and_grads(lambda q, r, h: uniform_mesh.reference_energy(q, r, h, params),
                                  charges, positions, cell)  # fmt: skip
    for a, b in zip(fused, reference, strict=True):
        assert float((a - b).abs().max()) <= 1e-12 * max(float(b.abs().max()), 1.0)
    return fused


@pytest.mark.parametrize("fft", ["C", "torch"])
@pytest.mark.parametrize("accuracy", [1e-4, 1e-6, 1e-9])
def test_single_node_equals_composable_mesh_in_energy_and_all_gradients(accuracy, fft, monkeypatch):
    """Orders 6, 8 and 10; a triclinic cell; atoms outside the cell; the node's own FFT (small meshes) and
    torch.fft (large ones). Float64: equal to rounding."""
    charges, positions, cell = _system(150, seed=1)
    params = _params(cell, 150, accuracy)
    assert math.prod(params[0]) <= uniform_mesh.NATIVE_FFT_MAX_POINTS
    monkeypatch.setattr(uniform_mesh, "NATIVE_FFT_MAX_POINTS", uniform_mesh.NATIVE_FFT_MAX_POINTS if fft == "C" else 0)
    _node_equals_composable(charges, positions, cell, params)


def _c_fft(real: torch.Tensor, threads: int) -> torch.Tensor:
    """The node kernel's forward FFT (fft3d.h through mesh_forward_fft without a filter) of a real mesh."""
    import ctypes

    import numpy as np

    lib, shape = uniform_mesh._library(), np.asarray(real.shape, dtype=np.int64)
    n_modes = real.shape[0] * real.shape[1] * (real.shape[2] // 2 + 1)
    planes, work, sums = np.empty((2, n_modes)), np.empty(lib.mesh_fft_work_size(shape.ctypes.data)), np.empty(8)
    frequencies = [np.zeros(n) for n in shape]
    weights, charges = np.zeros(n_modes), torch.zeros(1, dtype=real.dtype)
    status = lib.mesh_forward_fft(
        real.data_ptr(), shape.ctypes.data, planes[0].ctypes.data, planes[1].ctypes.data, work.ctypes.data,
        weights.ctypes.data, None, None, *(f.ctypes.data for f in frequencies), charges.data_ptr(), 1,
        sums.ctypes.data, int(real.dtype == F64), ctypes.c_int64(threads),
    )  # fmt: skip
    assert status == 0
    spectrum = torch.complex(torch.from_numpy(planes[0]), torch.from_numpy(planes[1]))
    return spectrum.reshape(real.shape[0], real.shape[1], real.shape[2] // 2 + 1)


def _c_inverse_fft(spectrum: torch.Tensor, shape: tuple[int, int, int], dtype, threads: int) -> torch.Tensor:
    import numpy as np

    lib, sizes = uniform_mesh._library(), np.asarray(shape, dtype=np.int64)
    planes = np.ascontiguousarray(np.stack([spectrum.real.reshape(-1).numpy(), spectrum.imag.reshape(-1).numpy()]))
    before = planes.copy()
    work, out = np.empty(lib.mesh_fft_work_size(sizes.ctypes.data)), torch.empty(shape, dtype=dtype)
    status = lib.mesh_inverse_fft(planes[0].ctypes.data, planes[1].ctypes.data, sizes.ctypes.data, work.ctypes.data,
                                  out.data_ptr(), int(dtype == F64), threads)  # fmt: skip
    assert status == 0 and np.array_equal(planes, before)  # the filtered spectrum stays (a second backward)
    return out


@pytest.mark.parametrize("shape", [(24, 24, 24), (2, 3, 5), (20, 27, 30), (25, 32, 9), (5, 4, 7), (3, 3, 2)])
@pytest.mark.parametrize("threads", [1, 3])
def test_node_fft_equals_torch_fft(shape, threads):
    """fft3d.h (radices 8, 4, 2, 3, 5 and a plain DFT for 7; odd and even last axes; an odd number of lines) against
    torch.fft.rfftn / irfftn, float64 to rounding and float32 input, on one and three threads."""
    gen = torch.Generator().manual_seed(sum(shape))
    real = torch.randn(shape, generator=gen, dtype=F64)
    reference = torch.fft.rfftn(real)
    scale = float(reference.abs().max())
    assert float((_c_fft(real, threads) - reference).abs().max()) < 1e-14 * scale
    single = real.float()
    assert float((_c_fft(single, threads) - torch.fft.rfftn(single.double())).abs().max()) < 1e-14 * scale
    # not Hermitian where the half spectrum stores redundant values (the planes m3 = 0 and K3/2): both transforms
    # take the real part there, after the first two axes
    spectrum = torch.fft.rfftn(torch.randn(shape, generator=gen, dtype=F64))
    spectrum = spectrum + 1j * torch.randn(spectrum.shape, generator=gen, dtype=F64)
    inverse = torch.fft.irfftn(spectrum, s=shape)
    assert float((_c_inverse_fft(spectrum, shape, F64, threads) - inverse).abs().max()) < 1e-14 * float(
        inverse.abs().max() + 1.0
    )
    assert float((_c_inverse_fft(spectrum, shape, torch.float32, threads) - inverse).abs().max()) < 1e-6 * float(
        inverse.abs().max() + 1.0
    )


def test_node_fft_refuses_a_size_with_a_large_prime_factor():
    import numpy as np

    lib, sizes = uniform_mesh._library(), np.asarray((67, 4, 4), dtype=np.int64)
    work, planes = np.empty(lib.mesh_fft_work_size(sizes.ctypes.data)), np.zeros((2, 67 * 4 * 3))
    out = torch.empty(67, 4, 4, dtype=F64)
    status = lib.mesh_inverse_fft(planes[0].ctypes.data, planes[1].ctypes.data, sizes.ctypes.data, work.ctypes.data,
                                  out.data_ptr(), 1, 1)  # fmt: skip
    assert status == 1
    with pytest.raises(RuntimeError, match="prime factor beyond 64"):
        uniform_mesh._check_fft(status)


def test_les_energy_takes_the_single_node_and_matches_the_direct_sum():
    """The LES call (periodic, one width, ≥ MESH_MIN_ATOMS charges, CPU) is one autograd node, and its energy,
    forces and stress agree with the independent direct k-sum to the accuracy's bound."""
    charges, positions, cell = _system(192, seed=2)
    pos = positions.clone().requires_grad_(True)
    strain = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    deform = torch.eye(3, dtype=F64) + strain
    mesh = les_energy(charges, pos @ deform, cell @ deform, True)
    assert "UniformMeshEnergy" in mesh.grad_fn.name()
    f_mesh, s_mesh = torch.autograd.grad(mesh, (pos, strain))
    direct = les_energy(charges, pos @ deform, cell @ deform, True, method="direct")
    f_direct, s_direct = torch.autograd.grad(direct, (pos, strain))
    scale = 14.4 * float((charges**2).sum())
    assert abs(float(mesh - direct)) < 1e-6 * scale
    assert float((f_mesh - f_direct).abs().max()) < 1e-4 * float(f_direct.abs().max())
    assert float((s_mesh - s_direct).abs().max()) < 1e-4 * float(s_direct.abs().max())


def test_cell_gradient_equals_finite_difference_of_the_energy():
    charges, positions, cell = _system(120, seed=3)

    def energy(h):
        return les_energy(charges, positions, h, True, method="mesh")

    h0 = cell.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(h0), h0)
    step = 1e-6
    for a, b in [(0, 0), (1, 0), (2, 1), (0, 2)]:
        dh = torch.zeros(3, 3, dtype=F64)
        dh[a, b] = step
        fd = float(energy(cell + dh) - energy(cell - dh)) / (2 * step)
        assert float(grad[a, b]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_gradcheck_and_double_backward():
    """First derivatives by the hand-written backward, second by the composable recomputation: both exact."""
    charges, positions, cell = _system(7, seed=4)
    inputs = tuple(x.clone().requires_grad_(True) for x in (charges, positions, cell))

    def energy(q, r, h):
        return les_energy(q, r, h, True, accuracy=1e-3, method="mesh")

    assert "UniformMeshEnergy" in energy(*inputs).grad_fn.name()
    assert torch.autograd.gradcheck(energy, inputs, atol=1e-7)
    assert torch.autograd.gradgradcheck(energy, inputs, atol=1e-6)


def test_only_the_inputs_that_need_a_gradient_get_one():
    charges, positions, cell = _system(120, seed=5)
    r = positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(les_energy(charges, r, cell, True), r)
    assert grad.shape == positions.shape and bool(torch.isfinite(grad).all())
    q = charges.clone().requires_grad_(True)
    (phi,) = torch.autograd.grad(les_energy(q, positions, cell, True), q)
    direct_q = charges.clone().requires_grad_(True)
    (phi_direct,) = torch.autograd.grad(les_energy(direct_q, positions, cell, True, method="direct"), direct_q)
    assert float((phi - phi_direct).abs().max()) < 1e-4 * float(phi_direct.abs().max())


def test_float32_agrees_with_float64():
    charges, positions, cell = _system(192, seed=6)
    results = [
        _energy_and_grads(lambda q, r, h: les_energy(q, r, h, True), *(x.to(d) for x in (charges, positions, cell)))
        for d in (torch.float32, F64)
    ]
    for a, b in zip(*results, strict=True):
        assert float((a.double() - b).abs().max()) < 1e-4 * max(float(b.abs().max()), 1.0)


def test_a_changed_cell_is_not_served_from_the_cache():
    charges, positions, cell = _system(120, seed=7)
    first = les_energy(charges, positions, cell, True)
    stretched = cell * 1.02
    fresh = uniform_mesh.reference_energy(charges, positions, stretched, _params(stretched, 120, 1e-6))
    assert float(les_energy(charges, positions, stretched, True)) == pytest.approx(float(fresh), rel=1e-12)
    assert float(les_energy(charges, positions, cell, True)) == float(first)


@pytest.mark.parametrize("fft", ["C", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("what", "message"),
    [("positions", "positions contain NaN or inf"), ("positions_inf", "positions contain NaN or inf"),
     ("far", "too far outside the cell"), ("charges", "charges contain NaN or inf"),
     ("cell", "cell contains NaN or inf"), ("singular", "singular or degenerate")],
)  # fmt: skip
def test_bad_input_is_named(what, message, dtype, fft, monkeypatch):
    """The node's kernels check positions (the spreading refuses u whose floor overflows an int64) and charges
    (Σq²), in the last of two threads' atom ranges too, with the node's FFT and with torch.fft; the messages are
    those of the other paths."""
    for module in (mesh, uniform_mesh):  # the spreading of the torch.fft branch and the node's own kernels
        monkeypatch.setattr(module, "kernel_threads", lambda lib, size, min_size: 2)
    monkeypatch.setattr(uniform_mesh, "NATIVE_FFT_MAX_POINTS", uniform_mesh.NATIVE_FFT_MAX_POINTS if fft == "C" else 0)
    charges, positions, cell = (t.to(dtype) for t in _system(120, seed=8))
    if what == "positions":
        positions[3, 1] = math.nan
    elif what == "positions_inf":
        positions[110, 2] = -math.inf
    elif what == "far":
        positions[100, 0] = 1e18
    elif what == "charges":
        charges[5] = math.inf
    elif what == "cell":
        cell[1, 1] = math.nan
    else:
        cell[2] = cell[0] + cell[1]
    assert uniform_mesh.available(positions)
    with pytest.raises(ValueError, match=message):
        les_energy(charges, positions, cell, True)


def test_anisotropic_cell_with_three_mesh_sizes():
    """A box whose three mesh sizes differ (K scales the columns of X): gradients against the composable version
    and the cell gradient against finite differences."""
    charges, positions, cell = _system(150, seed=9)
    cell = cell * torch.tensor([[0.8], [1.0], [1.3]], dtype=F64)
    positions = positions * 1.05
    params = _params(cell, 150, 1e-6)
    assert len(set(params[0])) == 3, params[0]
    fused = _node_equals_composable(charges, positions, cell, params)
    step = 1e-6
    for a, b in [(0, 1), (2, 2)]:
        dh = torch.zeros(3, 3, dtype=F64)
        dh[a, b] = step
        plus, minus = (float(les_energy(charges, positions, cell + s * dh, True, method="mesh")) for s in (1, -1))
        assert float(fused[3][a, b]) == pytest.approx((plus - minus) / (2 * step), rel=1e-6, abs=1e-8)


def test_fused_false_keeps_the_composable_operations_with_the_same_energy():
    charges, positions, cell = _system(150, seed=10)
    r = positions.clone().requires_grad_(True)
    fused = les_energy(charges, r, cell, True)
    plain = les_energy(charges, r, cell, True, fused=False)
    assert "UniformMeshEnergy" in fused.grad_fn.name() and "UniformMeshEnergy" not in plain.grad_fn.name()
    assert float(fused) == pytest.approx(float(plain), rel=1e-12)
    (f_fused,), (f_plain,) = torch.autograd.grad(fused, r), torch.autograd.grad(plain, r)
    assert torch.allclose(f_fused, f_plain, rtol=0, atol=1e-12 * float(f_plain.abs().max()))


@pytest.mark.parametrize("fft", ["C", "torch"])
def test_energy_without_gradients_on_both_fft_paths(fft, monkeypatch):
    """Under torch.no_grad (no filtered spectrum is kept) the node gives the energy of the differentiable call."""
    monkeypatch.setattr(uniform_mesh, "NATIVE_FFT_MAX_POINTS", uniform_mesh.NATIVE_FFT_MAX_POINTS if fft == "C" else 0)
    charges, positions, cell = _system(140, seed=11)
    with torch.no_grad():
        plain = les_energy(charges, positions, cell, True)
    pos = positions.clone().requires_grad_(True)
    energy = les_energy(charges, pos, cell, True)
    assert "UniformMeshEnergy" in energy.grad_fn.name()
    assert float(plain) == pytest.approx(float(energy), rel=1e-14)


def test_node_on_three_threads_equals_one(monkeypatch):
    """The fused kernels (spreading, FFT, gather) split over threads give the one-thread energy and gradients."""
    charges, positions, cell = _system(150, seed=12)
    params = _params(cell, 150, 1e-6)

    def node(q, r, h):
        return uniform_mesh._UniformMeshEnergy.apply(q, r, h, params, h.detach().double().numpy().tobytes())

    results = []
    for threads in (1, 3):
        monkeypatch.setattr(uniform_mesh, "kernel_threads", lambda lib, size, min_size, t=threads: t)
        results.append(_energy_and_grads(node, charges, positions, cell))
    for a, b in zip(*results, strict=True):
        assert float((a - b).abs().max()) <= 1e-12 * max(float(b.abs().max()), 1.0)
