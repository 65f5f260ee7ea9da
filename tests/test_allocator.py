"""The malloc settings of lesmd.allocator: repeated evaluations stop faulting pages in; opt-out works."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Page faults per evaluation of a 192-atom water box (energy, forces, stress) after warm-up calls, through
# LESPotential (which applies the settings unless LESMD_MALLOC_TUNING=0).
SCRIPT = """
import resource, sys
import ase.io, numpy as np, torch
torch.set_num_threads(1)
from lesmd.allocator import tune_allocator
from lesmd.potential import LESPotential
atoms = ase.io.read(sys.argv[1], 0)
numbers, positions, cell = atoms.numbers, atoms.positions, atoms.cell.array
rng = np.random.default_rng(0)
potential = LESPotential()
props = ("energy", "forces", "stress")
for _ in range(6):
    potential.compute(numbers, positions, cell, np.ones(3, bool), props)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    potential.compute(numbers, positions + rng.normal(0, 0.01, positions.shape), cell, np.ones(3, bool), props)
print(tune_allocator(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults(tuning: str, data: Path) -> tuple[bool, float]:
    env = dict(os.environ, LESMD_MALLOC_TUNING=tuning, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", SCRIPT, str(data / "water_rpbe_d3_bec_100.xyz")]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_tuned_allocator_stops_page_faults_between_evaluations(shared_data):
    applied, tuned = _faults("1", shared_data)
    not_applied, default = _faults("0", shared_data)
    assert applied and not not_applied
    assert default > 50  # glibc's defaults return the large blocks to the kernel every call
    assert tuned < 0.2 * default, f"page faults per call: tuned {tuned}, default {default}"
