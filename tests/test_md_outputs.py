"""`lesmd md --out`: a killed run leaves a readable trajectory; bad output paths are one-line errors up front."""

import os
import signal
import subprocess
import sys
import time
import warnings

import ase.io
import pytest

from lesmd.trajectory import iter_ase


def _md(tmp_path, out, steps=400, extra=()):
    return subprocess.Popen([sys.executable, "-m", "lesmd.cli", "md", "--steps", str(steps), "--molecules", "8",
                             "--relax-steps", "0", "--threads", "1", "--out", str(out), *extra],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.slow
def test_killed_md_run_leaves_whole_extxyz_frames(tmp_path):
    out = tmp_path / "run.xyz"
    proc = _md(tmp_path, out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 200_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    frames = ase.io.read(out, ":")  # a partial last frame would raise here
    assert len(frames) >= 5 and all(len(f) == 24 for f in frames)
    assert "charges" in frames[-1].calc.results


def test_truncated_trajectory_is_read_up_to_the_cut_with_a_warning(tmp_path, shared_data):
    frames = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", "0:3")
    path = tmp_path / "cut.xyz"
    ase.io.write(path, frames, format="extxyz")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])  # the third frame is cut mid-way
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chunks = list(iter_ase(path))
    assert sum(len(c) for c in chunks) == 2
    assert any("stopped after 2 frames" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="cannot read the first frame"):
        list(iter_ase(_garbage(tmp_path)))


def _garbage(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("3\nnot a comment line\nO 0 0\n")
    return path


@pytest.mark.parametrize("kind", ["directory", "under_file", "missing_folder"])
def test_odd_out_paths_fail_at_once_with_one_line(tmp_path, kind):
    (tmp_path / "afile").write_text("x")
    out = {"directory": tmp_path, "under_file": tmp_path / "afile" / "run.xyz",
           "missing_folder": tmp_path / "no" / "run.xyz"}[kind]  # fmt: skip
    start = time.monotonic()
    proc = _md(tmp_path, out, steps=5)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.strip().count("\n") == 0 and "--out" in err and "Traceback" not in err
    assert time.monotonic() - start < 60


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_a_one_line_error(tmp_path):
    from pathlib import Path

    from lesmd.md import append_whole

    with pytest.raises(OSError, match="disk full"):
        append_whole(Path("/dev/full"), "frame\n")
