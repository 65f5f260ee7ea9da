"""Keep freed memory in the process: glibc malloc settings for repeated evaluations of the same-sized system.

Every MD step allocates and frees the same large tensors (padded edge tables, charge meshes: 0.1–50 MB). With
glibc's defaults such blocks go back to the kernel when freed (``munmap`` of large blocks, trimming of the heap
top), so the next step faults every page back in. Measured for the default water model (energy + forces + stress,
2 threads): 231 page faults and 1.5 ms of kernel CPU time per call at 192 atoms, ~4000 faults and ~17 ms at 1536
atoms (about 8 % of the step). Serving blocks up to 32 MB (glibc's largest allowed mmap threshold on 64-bit) from
the heap and not trimming it brings that to 2 and ~70 faults per call.

Cost: the process keeps its peak heap (about the memory of one evaluation) resident between calls.
Set ``LESMD_MALLOC_TUNING=0`` in the environment to leave glibc's defaults alone. Other C libraries (musl, macOS)
are left untouched.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc refuses mmap thresholds above HEAP_MAX_SIZE/2 = 32 MiB on 64-bit systems
MMAP_THRESHOLD = 32 * 1024 * 1024
#: largest value mallopt's int argument takes: heap tops below 2 GiB of free space are never trimmed
TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def tune_allocator() -> bool:
    """Apply the malloc settings once per process (glibc on Linux only); True when they are in effect.

    Called by :class:`lesmd.potential.LESPotential`, the electrode potential and the trainer, so every MD, i-PI
    and training run gets them. ``LESMD_MALLOC_TUNING=0`` disables it.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("LESMD_MALLOC_TUNING", "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
