"""Smooth PME mesh path against the direct k-sum: energies, forces, stress, mixed widths, method choice."""

import math

import pytest
import torch

from lesmd.les.ewald import coulomb_energy, les_energy
from lesmd.les.mesh import bspline_weights, fft_size, spread
from lesmd.les.tuning import MESH_MIN_ATOMS, choose_parameters
from lesmd.units import COULOMB

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_thread")


def _water_density_system(n_atoms: int, seed: int = 0, skew: bool = True):
    gen = torch.Generator().manual_seed(seed)
    length = (n_atoms / 0.1) ** (1.0 / 3.0)
    cell = torch.eye(3, dtype=F64) * length
    if skew:
        cell[1, 0], cell[2, 0], cell[2, 1] = 0.13 * length, -0.08 * length, 0.05 * length
    positions = torch.rand(n_atoms, 3, generator=gen, dtype=F64) @ cell
    charges = torch.randn(n_atoms, generator=gen, dtype=F64)
    return charges - charges.mean(), positions, cell


def _scale(charges, sigma=1.0):
    """The accuracy's energy scale k_e Σ q² / σ (the self-energy size)."""
    return COULOMB * float((charges**2).sum()) / sigma


@pytest.mark.parametrize("accuracy", [1e-4, 1e-6])
def test_mesh_energy_equals_direct_sum_to_accuracy_192_atoms(accuracy):
    charges, positions, cell = _water_density_system(192)
    direct = les_energy(charges, positions, cell, True, accuracy=accuracy, method="direct")
    mesh = les_energy(charges, positions, cell, True, accuracy=accuracy, method="mesh")
    assert abs(float(mesh - direct)) < accuracy * _scale(charges)


@pytest.mark.slow
def test_mesh_energy_equals_direct_sum_to_accuracy_3000_atoms():
    accuracy = 1e-6
    charges, positions, cell = _water_density_system(3000, seed=1)
    with torch.no_grad():
        direct = les_energy(charges, positions, cell, True, accuracy=accuracy, method="direct")
        mesh = les_energy(charges, positions, cell, True, accuracy=accuracy, method="mesh")
    assert abs(float(mesh - direct)) < accuracy * _scale(charges)


@pytest.mark.parametrize(("accuracy", "tolerance"), [(1e-6, 1e-4), (1e-4, 1e-3)])
def test_mesh_forces_and_stress_equal_direct_sum(accuracy, tolerance):
    """Order 8 (ε = 1e-6) and order 6 on the finer mesh (ε = 1e-4, the default model's accuracy)."""
    charges, positions, cell = _water_density_system(192, seed=2)
    results = []
    for method in ("direct", "mesh"):
        pos = positions.clone().requires_grad_(True)
        strain = torch.zeros(3, 3, dtype=F64, requires_grad=True)
        deform = torch.eye(3, dtype=F64) + strain
        energy = les_energy(charges, pos @ deform, cell @ deform, True, accuracy=accuracy, method=method)
        results.append(torch.autograd.grad(energy, (pos, strain)))
    (f_direct, s_direct), (f_mesh, s_mesh) = results
    force_scale = float(f_direct.abs().max())
    assert float((f_mesh - f_direct).abs().max()) < tolerance * force_scale
    assert float((s_mesh - s_direct).abs().max()) < tolerance * float(s_direct.abs().max())


def test_mesh_stress_equals_finite_difference_of_mesh_energy():
    charges, positions, cell = _water_density_system(64, seed=4)

    def energy(strain):
        deform = torch.eye(3, dtype=F64) + strain
        return les_energy(charges, positions @ deform, cell @ deform, True, method="mesh")

    strain = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(energy(strain), strain)
    h = 1e-6
    for a, b in [(0, 0), (2, 1), (1, 2)]:
        step = torch.zeros(3, 3, dtype=F64)
        step[a, b] = h
        fd = float(energy(step) - energy(-step)) / (2 * h)
        assert float(grad[a, b]) == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_mesh_with_point_charges_and_mixed_widths_equals_direct_sum():
    """Mesh reciprocal part + real-space part (point charges force a split) vs the direct sum, charged cell."""
    charges, positions, cell = _water_density_system(150, seed=5)
    charges = charges + 0.5 / 150
    widths = torch.zeros(150, dtype=F64)
    widths[50:100] = 0.36
    widths[100:] = 0.71
    direct = coulomb_energy(charges, positions, cell, True, widths, accuracy=1e-7, method="direct")
    mesh = coulomb_energy(charges, positions, cell, True, widths, accuracy=1e-7, method="mesh")
    assert abs(float(mesh - direct)) < 1e-6 * COULOMB * float((charges**2).sum())


def test_bspline_weights_partition_unity_and_match_cardinal_spline():
    u = torch.tensor([0.0, 0.3, 2.75, -1.2], dtype=F64)
    _, w = bspline_weights(u, 4)
    assert torch.allclose(w.sum(-1), torch.ones(4, dtype=F64))
    # cubic cardinal B-spline M_4(x) on [0, 4]: M_4(1) = 1/6, M_4(2) = 2/3, M_4(3) = 1/6
    assert torch.allclose(w[0], torch.tensor([0.0, 1 / 6, 2 / 3, 1 / 6], dtype=F64))
    t = 0.3
    m4 = [t**3 / 6, (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (1 - t) ** 3 / 6]
    assert torch.allclose(w[1], torch.tensor(m4, dtype=F64))


def test_fft_sizes_have_only_small_prime_factors():
    assert [fft_size(n) for n in (1, 7, 11, 13, 97, 121)] == [1, 8, 12, 15, 100, 125]


def test_auto_method_takes_the_mesh_for_large_systems():
    small = choose_parameters(0.5, 0.5, 1920.0, MESH_MIN_ATOMS - 1, 1e-6)
    large = choose_parameters(0.5, 0.5, 1920.0 * 50, MESH_MIN_ATOMS * 10, 1e-6)
    assert (small.method, large.method) == ("direct", "mesh")
    assert large.mesh_spacing == pytest.approx(math.pi / large.k_cut)


@pytest.mark.parametrize("native", [True, False])
def test_spread_backward_matches_autograd_to_second_order(native):
    """The hand-written spreading backward (C kernel, or torch) is exact, and differentiable again (forces in a
    training loss; the C kernel's backward then differentiates the torch version)."""
    from lesmd.les.mesh import native_spread_available, spread

    gen = torch.Generator().manual_seed(7)
    shape, order = (6, 7, 8), 4
    charges = torch.randn(5, generator=gen, dtype=F64, requires_grad=True)
    positions = (torch.rand(5, 3, generator=gen, dtype=F64) * 3.0 - 1.0).requires_grad_(True)
    inverse = torch.eye(3, dtype=F64)
    expected = "_NativeSpreadBackward" if native and native_spread_available() else "_SpreadBackward"
    assert spread(charges, positions, inverse, shape, order, native=native).grad_fn.name() == expected

    def mesh(q, r):
        return spread(q, r, inverse, shape, order, native=native)

    assert torch.autograd.gradcheck(mesh, (charges, positions))
    assert torch.autograd.gradgradcheck(mesh, (charges, positions))


@pytest.mark.parametrize("native", [True, False])
def test_spread_conserves_charge_and_matches_loop_reference(native):
    from lesmd.les.mesh import spread

    gen = torch.Generator().manual_seed(8)
    shape, order = (5, 6, 7), 3
    charges = torch.randn(4, generator=gen, dtype=F64)
    u = torch.rand(4, 3, generator=gen, dtype=F64) * torch.tensor(shape, dtype=F64) * 2 - 3
    sizes = torch.tensor(shape, dtype=F64)
    mesh = spread(charges, u / sizes, torch.eye(3, dtype=F64), shape, order, native=native)
    assert float(mesh.sum()) == pytest.approx(float(charges.sum()), abs=1e-13)
    expected = torch.zeros(shape, dtype=F64)
    base, w = bspline_weights(u, order)
    for i in range(4):
        for a in range(order):
            for b in range(order):
                for c in range(order):
                    idx = tuple(int(base[i, d] - j) % shape[d] for d, j in enumerate((a, b, c)))
                    expected[idx] += charges[i] * w[i, 0, a] * w[i, 1, b] * w[i, 2, c]
    assert torch.allclose(mesh, expected, atol=1e-14)


@pytest.mark.parametrize(("value", "message"), [(math.nan, "NaN or inf"), (math.inf, "NaN or inf"),
                                              (1e17, "too far outside the cell")])  # fmt: skip
def test_spreading_kernels_refuse_coordinates_off_the_mesh(value, message):
    """Both C kernels (spreading and gather) refuse a scaled coordinate whose floor does not fit an int64 with the
    named error instead of indexing the mesh with it."""
    from lesmd.les import mesh

    if not mesh.native_spread_available():
        pytest.skip("needs the C spreading kernel (a C compiler)")
    charges = torch.ones(6, dtype=F64)
    u = torch.rand(6, 3, dtype=F64) * 5.0
    u[5, 1] = value
    with pytest.raises(ValueError, match=message):
        mesh.native_spread_forward(charges, u, (5, 5, 5), 4)
    with pytest.raises(ValueError, match=message):
        mesh.native_spread_backward(torch.ones(5, 5, 5, dtype=F64), charges, u, (5, 5, 5), 4)


def test_mesh_energy_jump_at_a_mesh_size_change_is_below_accuracy_and_smooth_change():
    """The mesh shape changes in integer steps with the cell; the energy step there is the (sub-ε) mesh error."""
    from lesmd.les.mesh import mesh_shape

    accuracy = 1e-6
    charges, positions, cell = _water_density_system(192, seed=3)

    def shape_at(scale):
        params = choose_parameters(0.5, 0.5, float(torch.linalg.det(cell * scale)), 192, accuracy, "mesh")
        return mesh_shape(cell * scale, params.mesh_spacing, params.order)

    low, high = 1.0, 1.05  # bisect for the first mesh change
    assert shape_at(low) != shape_at(high)
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if shape_at(mid) == shape_at(low) else (low, mid)
    scales = low + 1e-5 * torch.arange(-10, 11, dtype=F64)
    with torch.no_grad():
        energies = torch.stack(
            [les_energy(charges, positions * s, cell * s, True, accuracy=accuracy, method="mesh") for s in scales]
        )
    steps = energies[1:] - energies[:-1]
    smooth = steps[:5].abs().min()
    jump = (steps - steps[:5].mean()).abs().max()
    assert float(jump) < float(smooth)
    assert float(jump) < accuracy * _scale(charges)


@pytest.mark.parametrize("method", ["direct", "mesh"])
def test_force_loss_is_differentiable_for_training(method):
    """Double backward (a loss on forces differentiated w.r.t. charges and positions) is exact."""
    charges, positions, cell = _water_density_system(3, seed=9)
    charges = charges.clone().requires_grad_(True)
    positions = positions.clone().requires_grad_(True)

    def energy(q, r):
        return les_energy(q, r, cell, True, accuracy=1e-3, method=method)

    assert torch.autograd.gradgradcheck(energy, (charges, positions), atol=1e-6)


def test_mesh_cell_gradient_is_exact_to_second_order():
    """The analytic cell gradient of the mesh weights (and, with create_graph, its autograd recomputation) is the
    derivative of the mesh energy itself: gradcheck and gradgradcheck w.r.t. charges, positions and cell."""
    charges, positions, cell = _water_density_system(6, seed=11)
    inputs = tuple(x.clone().requires_grad_(True) for x in (charges, positions, cell))

    def energy(q, r, h):
        return les_energy(q, r, h, True, accuracy=1e-3, method="mesh")

    assert torch.autograd.gradcheck(energy, inputs, atol=1e-7)
    assert torch.autograd.gradgradcheck(energy, inputs, atol=1e-6)


def test_mesh_cell_gradient_of_cached_setup_follows_the_cell():
    """Alternating between two cells (cache hits) gives the same stress as fresh evaluations of each cell."""
    charges, positions, cell = _water_density_system(120, seed=12)
    cells = [cell, cell * 1.01 + 0.02 * torch.eye(3, dtype=F64)]

    def grads(h):
        r = positions.clone().requires_grad_(True)
        h = h.clone().requires_grad_(True)
        energy = les_energy(charges, r, h, True, accuracy=1e-4, method="mesh")
        return torch.autograd.grad(energy, (r, h))

    first = [grads(h) for h in cells]
    again = [grads(h) for h in cells + cells][2:]
    for (f1, s1), (f2, s2) in zip(first, again, strict=True):
        assert torch.equal(f1, f2) and torch.equal(s1, s2)
    assert float((first[0][1] - first[1][1]).abs().max()) > 1e-3 * float(first[0][1].abs().max())


def test_spread_rejects_a_mesh_narrower_than_the_spline():
    positions = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="at least order"):
        spread(torch.ones(2, dtype=F64), positions, torch.eye(3, dtype=F64), (4, 8, 8), 6)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_spread_equals_torch_spread_in_values_and_gradients(dtype, threads):
    """The C spreading kernel against the torch version on a triclinic cell, orders 4, 6 and 8 (float32: to
    round-off of float32), on one thread and on three (atoms split over threads: private meshes added in the
    forward, a split gather in the backward)."""
    from lesmd.les.mesh import native_spread_available, spread

    assert native_spread_available(), "the C spreading kernel did not build: is a C compiler (cc) installed?"
    gen = torch.Generator().manual_seed(11)
    cell = torch.tensor([[8.0, 0.5, 0.0], [0.3, 9.0, 0.2], [0.0, 0.1, 7.5]], dtype=dtype)
    charges = torch.randn(60, generator=gen, dtype=dtype, requires_grad=True)
    positions = (torch.rand(60, 3, generator=gen, dtype=dtype) * 12.0 - 2.0).requires_grad_(True)
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    for order in (4, 6, 8):
        torch.set_num_threads(threads)  # the single_thread fixture restores the count
        native = spread(charges, positions, torch.linalg.inv(cell), (12, 15, 10), order, native=True)
        weights = torch.randn(native.shape, generator=gen, dtype=dtype)
        native_grads = torch.autograd.grad((native * weights).sum(), (charges, positions))
        torch.set_num_threads(1)
        reference = spread(charges, positions, torch.linalg.inv(cell), (12, 15, 10), order, native=False)
        torch_grads = torch.autograd.grad((reference * weights).sum(), (charges, positions))
        assert torch.allclose(native, reference, rtol=0, atol=tolerance)
        for native_grad, torch_grad in zip(native_grads, torch_grads, strict=True):
            assert torch.allclose(native_grad, torch_grad, rtol=0, atol=10 * tolerance)
            assert float(torch_grad.abs().max()) > 0.1


def test_mesh_power_backward_is_the_pme_convolution():
    """The hand-written backward of Σ W |FFT Q|² (one inverse FFT) equals autograd of the plain expression for
    weights with the symmetry of every PME kernel, W(m) = W(−m), on even and odd meshes; and second derivatives
    (training) go through the plain expression."""
    from lesmd.les.mesh import _half_mesh_multiplicity, _MeshPower, _weighted_power

    gen = torch.Generator().manual_seed(12)
    for shape in [(6, 7, 8), (5, 6, 7)]:
        mesh = torch.randn(*shape, generator=gen, dtype=F64, requires_grad=True)
        g = torch.rand(shape[0], shape[1], shape[2] // 2 + 1, generator=gen, dtype=F64)
        minus = [(-torch.arange(k)) % k for k in shape[:2]]
        g = 0.5 * (g + g[minus[0]][:, minus[1]])  # W(m) = W(−m) within every rfft plane
        weights = (g * _half_mesh_multiplicity(shape, F64, torch.device("cpu"))).requires_grad_(True)
        value = _MeshPower.apply(mesh, weights)
        plain = _weighted_power(mesh, weights)
        assert float(value) == pytest.approx(float(plain), rel=1e-13)
        grads = torch.autograd.grad(value, (mesh, weights))
        expected = torch.autograd.grad(plain, (mesh, weights))
        for a, b in zip(grads, expected, strict=True):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12) and float(b.abs().max()) > 1.0
        assert torch.autograd.gradgradcheck(lambda q, w: _MeshPower.apply(q, w), (mesh, weights))
