"""Native (C) kernels: compiled once per machine from sources shipped in the package, loaded with ctypes.

Some hot loops (per-edge basis functions of the descriptor) run as hundreds of small tensor operations in eager
PyTorch, where per-operation overhead dominates at MD sizes. Their C versions are compiled on first use with the
system C compiler (``$CC``, else ``cc``; ``-O3 -march=native -fopenmp``, each of the last two dropped if the
compiler rejects it) into a cache directory and shared by all later processes. Threads: :func:`kernel_threads`.
Each kernel has a torch reference implementation, which the tests compare against and which lesmd
uses when no compiler is available (one warning) or when ``LESMD_NATIVE=0`` is set.

Cache: ``$LESMD_CACHE_DIR``, else ``$XDG_CACHE_HOME/lesmd``, else ``~/.cache/lesmd`` (and, if that cannot be
written, ``lesmd-<uid>`` in the system temporary directory); the library name carries a hash of the source (with
its local headers), the compiler command and the CPU model, so a cache shared by different machines or versions
never loads a stale or foreign build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

#: compiler flags (see OPTIONAL_FLAGS)
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fPIC", "-shared", "-pthread")
#: flags dropped when the compiler rejects them (without -fopenmp the kernels start POSIX threads)
OPTIONAL_FLAGS = ("-fopenmp", "-march=native")
COMPILE_TIMEOUT_S = 120


def native_enabled() -> bool:
    """False when the environment sets ``LESMD_NATIVE`` to 0/false/no/off."""
    return os.environ.get("LESMD_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Directory of compiled kernels (see module docstring)."""
    if os.environ.get("LESMD_CACHE_DIR"):
        return Path(os.environ["LESMD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lesmd"


def _cache_dirs() -> list[Path]:
    """:func:`cache_dir`, then a per-user directory under the system temporary directory (used when the first
    cannot be created or written, e.g. a read-only home)."""
    dirs = []
    try:
        dirs.append(cache_dir())
    except RuntimeError:  # no home directory
        pass
    user = getattr(os, "getuid", lambda: "user")()
    return dirs + [Path(tempfile.gettempdir()) / f"lesmd-{user}"]


def _cpu_model() -> str:
    """The CPU's model name and instruction-set flags (what -march=native compiles for): virtual machines often
    report a generic model name over different instruction sets, so the flags must enter the cache key too."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    model = next((line for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith("flags")), "")
    return f"{model}\n{flags}" if (model or flags) else platform.processor()


def _compile(source: Path, target: Path, compiler: str) -> None:
    """Compile ``source`` into the shared library ``target`` (atomically: concurrent processes may race)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        errors = ""
        for flags in _flag_sets():
            cmd = [compiler, *flags, "-o", str(out), str(source), "-lm", "-ldl"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
            if result.returncode == 0:
                os.replace(out, target)
                return
            lines = result.stderr.strip().splitlines()
            named = [line for line in lines if "error" in line.lower()]  # gcc/clang: "file:line: error: …"
            errors = named[:1] or lines[-1:] or [f"exit status {result.returncode}"]
        raise RuntimeError(f"{compiler} failed on {source.name}: {errors[0]}")


def _flag_sets() -> list[tuple[str, ...]]:
    """FLAGS, then without one optional flag (each in turn), then without both."""
    dropped = [(), *((flag,) for flag in OPTIONAL_FLAGS), OPTIONAL_FLAGS]
    return [tuple(f for f in FLAGS if f not in drop) for drop in dropped]


def _source_identity(source: Path) -> str:
    """The text of a kernel's source and of the local headers it includes (``#include "…"``): a changed header
    must rebuild the kernel too."""
    text = source.read_text()
    headers = re.findall(r'^#include "([^"]+)"', text, flags=re.MULTILINE)
    return "\0".join([text, *((source.parent / h).read_text() for h in headers)])


@cache
def load_library(source_path: str) -> ctypes.CDLL | None:
    """The compiled library of the C file ``source_path``, or None when native kernels are off or cannot be built
    here (then with one warning naming the reason)."""
    if not native_enabled():
        return None
    source = Path(source_path)
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        warnings.warn(f"lesmd: no C compiler ({compiler!r}) found; using the slower torch kernels", stacklevel=2)
        return None
    identity = (_source_identity(source), compiler, " ".join(FLAGS), _cpu_model(), platform.machine())
    key = hashlib.sha256(b"\0".join(x.encode() for x in identity)).hexdigest()[:16]
    errors = []
    for directory in _cache_dirs():
        target = directory / f"{source.stem}-{key}.so"
        try:
            if not target.exists():
                _compile(source, target, compiler)
            return _configured(ctypes.CDLL(str(target)))
        except RuntimeError as error:  # the compiler failed: another directory will not help
            errors.append(str(error))
            break
        except (OSError, subprocess.SubprocessError) as error:
            errors.append(f"{directory}: {error}")
    warnings.warn(f"lesmd: native kernel {source.name} unavailable ({'; '.join(errors)}); using the torch kernels",
                  stacklevel=2)  # fmt: skip
    return None


def _configured(library: ctypes.CDLL) -> ctypes.CDLL:
    """A kernel built with OpenMP runs its threads on the OpenMP pool only when that pool is torch's
    (:func:`shared_openmp_pool`); otherwise it starts POSIX threads, as without OpenMP."""
    setter = getattr(library, "lesmd_set_openmp", None)
    if setter is not None:
        setter.argtypes, setter.restype = [ctypes.c_int], None
        setter(int(shared_openmp_pool(library)))
    return library


#: file-name prefixes of OpenMP runtime libraries (GNU, LLVM, Intel)
_OPENMP_RUNTIMES = ("libgomp", "libomp", "libiomp")


def shared_openmp_pool(library: ctypes.CDLL) -> bool:
    """Whether the OpenMP threads of the kernels in ``library`` are torch's: torch's CPU operations run on OpenMP and
    the kernel calls the same OpenMP runtime library as torch (Linux: the runtime mapped from torch's install
    directory, or the only one mapped when torch brings none).

    Then a kernel call on torch.get_num_threads() threads reuses the pool's threads, which spin for a while after
    each torch operation, and parallel kernels pay off from the smallest systems on. With another runtime, or
    POSIX threads, the extra threads compete with torch's spinning ones for the cores (measured on a 2-core VM:
    4 ms slower at 192 atoms), so the callers keep one thread below their size thresholds. (Other packages may
    map their own runtimes, e.g. mdtraj's vendored libgomp; they do not matter here.)"""
    runtime = _openmp_runtime(library)
    return bool(runtime) and runtime == _torch_openmp_runtime()


@cache
def _openmp_runtime(library: ctypes.CDLL) -> str:
    """Real path of the OpenMP runtime the kernels of ``library`` call, "" without OpenMP (``lesmd_openmp_runtime``,
    native_parallel.h)."""
    probe = getattr(library, "lesmd_openmp_runtime", None)
    if probe is None:
        return ""
    probe.restype, probe.argtypes = ctypes.c_char_p, []
    path = probe().decode(errors="replace")
    return os.path.realpath(path) if path not in ("", "?") else path


@cache
def _torch_openmp_runtime() -> str | None:
    """Real path of the OpenMP runtime torch's operations use, None when unknown or torch does not use OpenMP."""
    import torch

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    files = {os.path.realpath(line.split()[-1]) for line in maps if "/" in line}
    runtimes = {f for f in files if Path(f).name.startswith(_OPENMP_RUNTIMES)}
    home = Path(torch.__file__).resolve().parent
    own = {f for f in runtimes if Path(f).is_relative_to(home) or Path(f).is_relative_to(home.parent / "torch.libs")}
    if len(own) == 1:
        return own.pop()
    return runtimes.pop() if not own and len(runtimes) == 1 else None


def kernel_threads(library: ctypes.CDLL, size: int, min_size: int) -> int:
    """Threads for one call of a kernel of ``library`` on ``size`` work items: torch.get_num_threads() when the
    kernel runs on torch's OpenMP pool (:func:`shared_openmp_pool`) or ``size`` ≥ ``min_size``, else one."""
    import torch

    threads = torch.get_num_threads()
    if threads <= 1 or size >= min_size:
        return threads
    return threads if shared_openmp_pool(library) else 1
