"""Shared test fixtures: paths to the public reference data and a few thread settings."""

from pathlib import Path

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
