"""Shared test fixtures: paths to the public reference data and a few thread settings."""

import subprocess
from pathlib import Path

import ipi_helpers as h
import pytest
import torch

torch.set_num_threads(2)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the public DFT reference data (`../shared/data`)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data folder not found: {SHARED_DATA} (clone with ../shared beside it)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def single_thread():
    """Many small tensor operations: one thread is faster on a shared machine (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def run_dir(tmp_path):
    """A work directory holding init.xyz; kills leftover processes and removes socket files afterwards."""
    h.write_init(tmp_path / "init.xyz", h.water2_atoms())
    procs: list[subprocess.Popen] = []
    names: list[str] = []
    yield tmp_path, procs, names
    for p in procs:
        h.stop(p)
    for n in names:
        h.remove_socket(n)


@pytest.fixture(scope="module")
def les_model_file(tmp_path_factory) -> Path:
    """An untrained (random) LESModel for H and O saved as a model file."""
    from lesmd.models.io import save_model
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    torch.manual_seed(0)
    model = LESModel(MomentNetwork([1, 8], cutoff=3.0, n_channels=4, l_max=1, hidden=[8]), charge_hidden=(8,))
    return save_model(model, tmp_path_factory.mktemp("model") / "les.pt")
