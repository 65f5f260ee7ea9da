"""The C kernels of the descriptor (basis moments, channel contractions) against their torch references, finite
differences and the model. (The mesh-spreading kernel is tested with the mesh, in test_mesh.py.)

Also the plumbing of :mod:`lesmd.native`: compilation cache, ``LESMD_NATIVE=0``, and a clear fallback when no
compiler works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lesmd.models import basis_moments as bm
from lesmd.models.basis_moments import basis_moments, basis_moments_torch, native_available

pytestmark = pytest.mark.skipif(os.environ.get("LESMD_NATIVE") == "0", reason="native kernels switched off")


def _random_graph(n_atoms=9, n_species=3, cutoff=3.0, seed=0, dtype=torch.float64):
    """Edges sorted by centre, some beyond the cutoff, one atom without edges."""
    g = torch.Generator().manual_seed(seed)
    species = torch.randint(0, n_species, (n_atoms,), generator=g)
    counts = torch.randint(0, 7, (n_atoms,), generator=g)
    counts[3] = 0
    i = torch.repeat_interleave(torch.arange(n_atoms), counts)
    j = torch.randint(0, n_atoms, (i.shape[0],), generator=g)
    vectors = torch.randn(i.shape[0], 3, generator=g, dtype=dtype)
    vectors = (
        vectors / vectors.norm(dim=1, keepdim=True) * (0.5 + 3.0 * torch.rand(i.shape[0], 1, generator=g, dtype=dtype))
    )
    return species, i, j, vectors


@pytest.fixture(scope="module", autouse=True)
def _kernel():
    assert native_available(), "the C kernel did not build: is a C compiler (cc) installed?"


@pytest.mark.parametrize("l_max", [0, 1, 2, 3])
@pytest.mark.parametrize("blocked", [True, False])
def test_kernel_equals_torch_reference_values_and_gradients(l_max, blocked):
    species, i, j, vectors = _random_graph()
    n_species, n_basis, cutoff = 3, 6, 3.0
    centre = species if blocked else torch.zeros_like(species)
    args = (
        centre,
        species[j],
        None,
        i,
        species.shape[0],
        n_species if blocked else 1,
        n_species,
        n_basis,
        l_max,
        cutoff,
    )
    v_ref = vectors.clone().requires_grad_(True)
    v_nat = vectors.clone().requires_grad_(True)
    ref = basis_moments_torch(*args[:2], v_ref, *args[3:])
    nat = basis_moments(*args[:2], v_nat, *args[3:], native=True)
    assert nat.grad_fn.name().endswith("_NativeBasisMomentsBackward")
    assert (
        ref.shape
        == nat.shape
        == (sum((1, 3, 6, 10)[: l_max + 1]), 9, (n_species if blocked else 1) * n_species * n_basis)
    )
    assert torch.allclose(nat, ref, rtol=0, atol=1e-13) and float(ref.detach().abs().max()) > 0.1
    weights = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), v_ref)
    (g_nat,) = torch.autograd.grad((nat * weights).sum(), v_nat)
    assert torch.allclose(g_nat, g_ref, rtol=0, atol=1e-12) and float(g_ref.abs().max()) > 0.1
    beyond = vectors.norm(dim=1) >= cutoff
    assert beyond.any() and torch.equal(g_nat[beyond], torch.zeros_like(g_nat[beyond]))


def test_kernel_gradient_matches_finite_differences_and_double_backward_is_exact():
    """gradcheck of the C backward; gradgradcheck goes through the torch recomputation (graph requested)."""
    species, i, j, vectors = _random_graph(n_atoms=5, seed=3)
    vectors = vectors.clone().requires_grad_(True)

    projections = torch.randn(20, 5, 36, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def g(v):  # three random projections of G (20, 5, 36): every entry of G enters, few backward passes
        return torch.einsum("cnf,cnfk->k", basis_moments(species, species[j], v, i, 5, 3, 3, 4, 3, 3.0), projections)

    assert torch.autograd.gradcheck(g, (vectors,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(g, (vectors,), eps=1e-6, atol=1e-6)


def test_float32_kernel_agrees_with_float64_and_threads_agree():
    species, i, j, vectors = _random_graph(n_atoms=40, seed=4)
    args = (species, species[j])
    rest = (i, 40, 3, 3, 8, 3, 3.0)
    g64 = basis_moments(*args, vectors, *rest)
    g32 = basis_moments(*args, vectors.float(), *rest)
    assert g32.dtype == torch.float32 and torch.allclose(g32.double(), g64, rtol=0, atol=1e-5)
    threads = torch.get_num_threads()
    results = {}
    try:
        for n in (3, 1):
            torch.set_num_threads(n)
            assert bm._threads(vectors.shape[0]) == n  # tiny graph: threads only on torch's OpenMP pool
            v = vectors.clone().requires_grad_(True)
            g = basis_moments(*args, v, *rest)
            results[n] = (g, *torch.autograd.grad(g.sum(), v))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(results[3], results[1], strict=True))


def test_kernels_run_on_torchs_openmp_pool(monkeypatch):
    """Built with OpenMP, every kernel calls torch's OpenMP runtime (the file torch's wheel ships), so even small
    systems get torch.get_num_threads() threads; a second runtime that another package maps (mdtraj vendors its
    own libgomp) does not change that. Off torch's pool (POSIX threads), only sizes from the threshold on."""
    import mdtraj  # noqa: F401  (maps its own libgomp into the process)

    from lesmd import native
    from lesmd.les import uniform_mesh
    from lesmd.les.mesh import _native_library
    from lesmd.models.descriptors import _invariants_library

    if not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.fail("this test expects Linux and a torch built with OpenMP (the PyPI CPU wheel)")
    libraries = (bm._library(), _invariants_library(), _native_library())
    torch_runtime = native._torch_openmp_runtime()
    assert torch_runtime is not None and "torch" in torch_runtime
    assert [native._openmp_runtime(lib) for lib in libraries] == [torch_runtime] * 3
    assert all(native.shared_openmp_pool(lib) for lib in libraries)
    # the LES mesh node's kernel (spreading and FFT compiled in) too
    assert native._openmp_runtime(uniform_mesh._library()) == torch_runtime
    assert native.shared_openmp_pool(uniform_mesh._library())
    maps = open("/proc/self/maps").read()
    runtimes = {os.path.realpath(line.split()[-1]) for line in maps.splitlines() if "/libgomp" in line}
    assert torch_runtime in runtimes  # with mdtraj's wheel (1.11) also its own vendored copy: two runtimes
    threads = torch.get_num_threads()
    species, i, j, vectors = _random_graph(n_atoms=40, seed=4)
    v = vectors.clone().requires_grad_(True)
    try:
        torch.set_num_threads(2)
        assert [native.kernel_threads(lib, 10, 1000) for lib in libraries] == [2, 2, 2]
        on_pool = basis_moments(species, species[j], v, i, 40, 3, 3, 8, 3, 3.0)
        libraries[0].lesmd_set_openmp(0)  # what a runtime other than torch's gets: POSIX threads
        posix = basis_moments(species, species[j], v, i, 40, 3, 3, 8, 3, 3.0)
        assert torch.equal(on_pool, posix)
        assert all(torch.equal(a, b) for a, b in zip(torch.autograd.grad(on_pool.sum(), v),
                                                      torch.autograd.grad(posix.sum(), v), strict=True))  # fmt: skip
        monkeypatch.setattr(native, "shared_openmp_pool", lambda library: False)
        assert [native.kernel_threads(libraries[0], n, 1000) for n in (10, 1000)] == [1, 2]
    finally:
        libraries[0].lesmd_set_openmp(1)
        torch.set_num_threads(threads)


def test_a_compiler_without_openmp_builds_kernels_on_posix_threads(tmp_path):
    """-fopenmp is optional: a compiler that rejects it still builds every kernel (POSIX threads), with the same
    results."""
    wrapper = tmp_path / "cc-no-openmp"
    wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && { echo "unsupported: -fopenmp" >&2; '
                       'exit 1; }; done\nexec cc "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    code = (
        "import torch\n"
        "from lesmd import native\n"
        "from lesmd.models import basis_moments as bm\n"
        "from tests.test_native_kernels import _random_graph\n"
        "species, i, j, vectors = _random_graph(n_atoms=40, seed=4)\n"
        "torch.set_num_threads(2)\n"
        "print(native._openmp_runtime(bm._library()) == '', bm._threads(10), bm._threads(10**6))\n"
        "bm.THREADS_MIN_EDGES = 1  # two POSIX threads on this small graph\n"
        "g = bm.basis_moments(species, species[j], vectors, i, 40, 3, 3, 8, 3, 3.0)\n"
        "ref = bm.basis_moments_torch(species, species[j], vectors, i, 40, 3, 3, 8, 3, 3.0)\n"
        "print(bm._threads(10), bool(torch.allclose(g, ref, rtol=0, atol=1e-12)))\n"
    )
    result = _run(code, CC=str(wrapper), LESMD_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.getcwd())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "1", "2", "2", "True"] and "warn" not in result.stderr.lower()


def test_default_model_is_the_same_with_and_without_the_kernel(shared_data):
    """Energy, forces, stress and BECs of the shipped model agree to round-off (float64) between the C kernel
    (eval mode) and the torch version; training mode uses the torch version."""
    from ase.io import read

    from lesmd.evaluate import evaluate
    from lesmd.models.io import load_model

    atoms = read(shared_data / "water_rpbe_d3_bec_100.xyz", 0)
    inputs = (torch.tensor(atoms.numbers), torch.tensor(atoms.positions), torch.tensor(atoms.cell.array),
              torch.tensor(atoms.pbc))  # fmt: skip
    model = load_model().double()
    props = ("energy", "forces", "stress", "born_effective_charges")
    native = evaluate(model, *inputs, properties=props)
    model.short_range.descriptor.native = False
    plain = evaluate(model, *inputs, properties=props)
    for key in props:
        assert torch.allclose(native[key], plain[key], rtol=0, atol=1e-10), key
    assert float(native["forces"].abs().max()) > 1.0


def _mixed_moments(n_atoms=7, k=5, kp=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a0 = torch.randn(n_atoms, k, generator=g, dtype=dtype)
    shapes = [(3, n_atoms, 4, kp), (6, n_atoms, 4, kp), (10, n_atoms, 2, kp)]
    return [a0] + [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]


def test_invariants_kernel_equals_torch_contractions_values_and_gradients():
    from lesmd.models.descriptors import contract_invariants, native_invariants

    inputs = [t.requires_grad_(True) for t in _mixed_moments()]
    native = native_invariants(*inputs)
    reference = contract_invariants(inputs[0], inputs[1:])
    assert native.grad_fn.name().endswith("_NativeInvariantsBackward") and native.shape == (7, 5 + 5 * 4)
    assert torch.allclose(native, reference, rtol=0, atol=1e-13) and float(reference.detach().abs().max()) > 1.0
    weights = torch.randn(native.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g_native = torch.autograd.grad((native * weights).sum(), inputs)
    g_reference = torch.autograd.grad((reference * weights).sum(), inputs)
    for a, b in zip(g_native, g_reference, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12) and float(b.abs().max()) > 0.1
    f32 = native_invariants(*(t.detach().float() for t in inputs))
    assert f32.dtype == torch.float32 and torch.allclose(f32.double(), reference.detach(), rtol=1e-5, atol=1e-5)


def test_invariants_kernel_gradient_matches_finite_differences_to_second_order():
    from lesmd.models.descriptors import native_invariants

    inputs = tuple(t.requires_grad_(True) for t in _mixed_moments(n_atoms=2, k=2, kp=2, seed=4))
    projections = torch.randn(2, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))

    def features(*args):  # three random projections: every output enters, few backward passes
        return torch.einsum("nf,nfk->k", native_invariants(*args), projections)

    assert torch.autograd.gradcheck(features, inputs, eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(features, inputs, eps=1e-6, atol=1e-6)


def test_invariants_are_rotation_invariant_through_the_kernel():
    """Rotating every edge vector leaves the descriptor's features (native path, eval mode) unchanged."""
    from lesmd.models.descriptors import MomentDescriptor

    torch.manual_seed(2)
    descriptor = MomentDescriptor(2, 4.0, n_basis=6, n_channels=6, l_max=3, n_products=5).double().eval()
    species, i, j, vectors = _random_graph(n_atoms=6, n_species=2, seed=6)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9)))
    features = descriptor(species, vectors, i, j)
    rotated = descriptor(species, vectors @ q.T, i, j)
    assert torch.allclose(features, rotated, rtol=0, atol=1e-12) and float(features.abs().max()) > 1e-3


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})  # fmt: skip


def test_switch_off_and_fallback_without_a_compiler(tmp_path):
    code = "from lesmd.models.basis_moments import native_available; print(native_available())"
    off = _run(code, LESMD_NATIVE="0")
    assert off.returncode == 0 and off.stdout.strip() == "False" and "warn" not in off.stderr.lower()
    missing = _run(code, CC="/nonexistent/cc", LESMD_CACHE_DIR=str(tmp_path / "a"))
    assert missing.returncode == 0 and missing.stdout.strip() == "False"
    assert "no C compiler ('/nonexistent/cc') found; using the slower torch kernels" in missing.stderr
    broken = tmp_path / "broken-cc"
    broken.write_text("#!/bin/sh\necho 'cc: fatal error: out of cheese' >&2\nexit 1\n")
    broken.chmod(0o755)
    failing = _run(code, CC=str(broken), LESMD_CACHE_DIR=str(tmp_path / "b"))
    assert failing.returncode == 0 and failing.stdout.strip() == "False"
    assert "native kernel basis_moments.c unavailable" in failing.stderr and "out of cheese" in failing.stderr


def test_compiled_library_is_cached_and_reused(tmp_path):
    code = "from lesmd.models.basis_moments import native_available; print(native_available())"
    first = _run(code, LESMD_CACHE_DIR=str(tmp_path))
    assert first.returncode == 0 and first.stdout.strip() == "True", first.stderr
    built = sorted(tmp_path.iterdir())
    assert len(built) == 1 and built[0].name.startswith("basis_moments-") and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    again = _run(code, LESMD_CACHE_DIR=str(tmp_path))
    assert again.stdout.strip() == "True" and sorted(tmp_path.iterdir()) == built
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_an_unwritable_cache_falls_back_to_the_temporary_directory(tmp_path):
    """A cache path that cannot be a directory (here: a regular file) does not cost the kernels: they are built
    under the system temporary directory instead."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    (tmp_path / "tmp").mkdir()
    code = "from lesmd.models.basis_moments import native_available; print(native_available())"
    result = _run(code, LESMD_CACHE_DIR=str(blocked / "lesmd"), TMPDIR=str(tmp_path / "tmp"))
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
    built = list((tmp_path / "tmp").glob("lesmd-*/basis_moments-*.so"))
    assert len(built) == 1 and "warn" not in result.stderr.lower()


def test_kernel_reports_sizes_beyond_its_limits_instead_of_writing_nothing():
    """The C entry points return a status (1: sizes beyond the compiled limits), which the wrapper turns into a
    named error; no silent zeros."""
    from lesmd.models.basis_moments import _failure, _library, _pointer

    species, i, j, vectors = _random_graph(n_atoms=5, n_species=2, seed=8)
    vectors = vectors.contiguous()
    offsets = torch.zeros(6, dtype=torch.int64)
    torch.cumsum(torch.bincount(i, minlength=5), 0, out=offsets[1:])
    out = torch.zeros(20, 5, 17 * 4, dtype=torch.float64)
    neighbors, centres = species[j].contiguous(), torch.zeros(5, dtype=torch.int64)
    status = _library().basis_moments_forward(
        _pointer(vectors), _pointer(offsets), _pointer(neighbors), _pointer(centres), 5, 17, 1, 4, 3, 3.0,
        _pointer(out), 1, 1,
    )  # fmt: skip
    assert status == 1 and float(out.abs().sum()) == 0.0
    assert _failure(2) == "basis_moments kernel failed: out of memory for its work buffers (status 2)"


def test_every_kernel_source_and_local_header_ships_in_the_package():
    """A wheel (non-editable install) must carry each kernel's .c file and the headers it includes."""
    import fnmatch
    import re

    import tomllib

    root = Path(__file__).resolve().parents[1]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    sources = sorted((root / "lesmd").rglob("*.c"))
    files = set(sources)
    for source in sources:
        files |= {(source.parent / h).resolve() for h in re.findall(r'^#include "([^"]+)"', source.read_text(), re.M)}
    assert any(f.name == "fft3d.h" for f in files)
    for path in files:
        package = ".".join(path.parent.relative_to(root).parts)
        assert any(fnmatch.fnmatch(path.name, p) for p in package_data.get(package, [])), (path, package)
