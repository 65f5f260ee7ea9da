"""The code base stays `ruff` clean (configuration in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_reports_no_problems():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_adapter_takes_its_property_names_from_lesmd_properties():
    from lesmd import properties
    from lesmd.calculator import LESCalculator
    from lesmd.evaluate import PROPERTIES
    from lesmd.ipi import EXTRAS

    assert PROPERTIES == properties.NAMES
    assert set(LESCalculator.implemented_properties) == set(properties.ASE_PROPERTIES)
    assert set(EXTRAS) == {"dipole", "BEC", "charges"} == set(properties.IPI_EXTRAS)
    for p in properties.PROPERTIES.values():  # every entry says its shape and unit
        assert p.shape.startswith("(") and p.unit
