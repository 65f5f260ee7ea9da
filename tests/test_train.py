"""Training: data keys, reference-energy fit, splits, a short real run that learns, checkpoint/resume, CLI."""

import argparse
import json

import ase
import numpy as np
import pytest
import torch

from lesmd.data import Keys, fit_reference_energies, read_frames, split_frames
from lesmd.models.io import load_model
from lesmd.train import TrainConfig, Trainer, add_cli_arguments, run_cli

SMALL = {"cutoff": 4.0, "n_channels": 8, "l_max": 2, "hidden": [16], "charge_hidden": [8], "batch_size": 4,
         "progress": False, "les_accuracy": 1e-4}  # fmt: skip


@pytest.fixture(scope="module")
def dipeptides(shared_data):
    return read_frames(shared_data / "dipeptides_spice_train.xyz", Keys(forces="force", dipole="dipole"), "0:40")


def test_forces_key_is_configurable_and_missing_labels_are_named(shared_data):
    path = shared_data / "dipeptides_spice_train.xyz"
    frames = read_frames(path, Keys(forces="force"), "0:2")
    assert frames[0].forces.shape == (len(frames[0].numbers), 3) and not frames[0].pbc.any()
    with pytest.raises(ValueError, match="no forces under key 'forces'"):
        read_frames(path, Keys(forces="forces"), "0:1")


def test_water_labels_are_read_with_stress_and_bec(shared_data):
    frames = read_frames(shared_data / "water_rpbe_d3_bec_100.xyz", Keys(stress="stress", bec="BEC"), "0:2")
    f = frames[0]
    assert f.stress.shape == (3, 3) and np.allclose(f.stress, f.stress.T)
    assert f.bec.shape == (192, 3, 3) and f.pbc.all()


def test_reference_energy_fit_recovers_exact_per_element_energies():
    rng = np.random.default_rng(0)
    truth = {1: -13.6, 6: -1030.0, 8: -2040.5}
    frames = []
    for _ in range(6):
        numbers = rng.choice([1, 6, 8], size=rng.integers(3, 9))
        energy = sum(truth[int(z)] for z in numbers)
        atoms = ase.Atoms(numbers=numbers, positions=rng.uniform(0, 5, (len(numbers), 3)))
        atoms.info["energy"] = energy
        from lesmd.data import frame_from_atoms

        frames.append(frame_from_atoms(atoms, Keys(forces=None)))
    fitted = fit_reference_energies(frames, [1, 6, 8])
    assert fitted == pytest.approx(truth, rel=1e-10)


def test_split_last_k_frames_and_random_fraction(dipeptides):
    train, valid = split_frames(dipeptides, valid_last=5)
    assert len(valid) == 5 and valid[-1] is dipeptides[-1] and len(train) == 35
    train, valid = split_frames(dipeptides, valid_fraction=0.25, seed=1)
    assert len(valid) == 10 and len(train) == 30
    assert {id(f) for f in train}.isdisjoint({id(f) for f in valid})
    with pytest.raises(ValueError, match="valid_last"):
        split_frames(dipeptides, valid_last=40)


def test_short_dipeptide_training_lowers_validation_loss_and_saves_a_loadable_model(dipeptides, tmp_path):
    config = TrainConfig(output=str(tmp_path / "pep.pt"), valid_last=4, epochs=4, lr=1e-2, **SMALL)
    trainer = Trainer(config, dipeptides[:16])
    before = trainer.evaluate(trainer.model)
    metrics = trainer.fit()
    assert metrics["loss"] < 0.8 * before["loss"]
    assert metrics["forces_rmse_mev_per_a"] < before["forces_rmse_mev_per_a"]
    model = load_model(tmp_path / "pep.pt")
    assert model.species == [1, 6, 7, 8]
    assert model.provenance["n_train"] == 12 and model.provenance["validation"]["loss"] == pytest.approx(
        metrics["loss"]
    )
    f = dipeptides[-1]
    out = model(torch.tensor(f.numbers), torch.tensor(f.positions, dtype=torch.float32),
                torch.zeros(3, 3), torch.tensor([False] * 3))  # fmt: skip
    assert float(out["charges"].sum()) == pytest.approx(0.0, abs=1e-5)


def test_checkpoint_resume_continues_from_the_saved_epoch(dipeptides, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    base = dict(output=str(tmp_path / "a.pt"), valid_last=8, checkpoint=str(ckpt), **SMALL)
    first = Trainer(TrainConfig(epochs=1, **base), dipeptides[:12])
    first.fit()
    assert ckpt.is_file()
    resumed = Trainer(TrainConfig(epochs=2, resume=True, **base), dipeptides[:12])
    assert resumed.epoch == 1 and len(resumed.history) == 1
    resumed.fit()
    assert resumed.epoch == 2 and len(resumed.history) == 2


def test_optional_dipole_term_trains_dipoles_of_molecules(dipeptides, tmp_path):
    """Fine-tuning on dipoles (off by default) reduces the dipole error of the latent charges."""
    config = TrainConfig(output=str(tmp_path / "d.pt"), valid_last=8, epochs=5, dipole_key="dipole",
                         dipole_weight=10.0, energy_weight=0.0, forces_weight=0.0, lr=2e-2, **SMALL)  # fmt: skip
    trainer = Trainer(config, dipeptides[:20])
    before = trainer.evaluate(trainer.model)["dipole_rmse_e_a"]
    after = trainer.fit()["dipole_rmse_e_a"]
    assert after < 0.8 * before


def test_cli_trains_and_reports(dipeptides, shared_data, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    out = tmp_path / "cli.pt"
    args = parser.parse_args([
        str(shared_data / "dipeptides_spice_train.xyz"), "-o", str(out), "--forces-key", "force",
        "--valid-last", "3", "--epochs", "1", "--channels", "4", "--l-max", "1", "--hidden", "8",
        "--no-progress", "--report", str(tmp_path / "r.json"), "--les-accuracy", "1e-3",
    ])  # fmt: skip
    # keep it quick: a 10-frame copy of the file (7 train, 3 validation)
    args.data = str(tmp_path / "small.xyz")
    import ase.io

    ase.io.write(args.data, ase.io.read(shared_data / "dipeptides_spice_train.xyz", "0:10"))
    assert run_cli(args) == 0
    text = capsys.readouterr().out
    assert "validation force RMSE" in text and "meV/Å" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["forces_rmse_mev_per_a"] > 0 and out.is_file()


def test_resume_refuses_other_architecture_other_data_and_a_missing_checkpoint(dipeptides, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    base = dict(output=str(tmp_path / "a.pt"), valid_last=4, checkpoint=str(ckpt), **SMALL)
    Trainer(TrainConfig(epochs=1, **base), dipeptides[:8]).fit()
    wider = {**base, "cutoff": 4.5}
    with pytest.raises(ValueError, match="cutoff: checkpoint 4.0, now 4.5"):
        Trainer(TrainConfig(epochs=2, resume=True, **wider), dipeptides[:8])
    with pytest.raises(ValueError, match="other data"):
        Trainer(TrainConfig(epochs=2, resume=True, **base), dipeptides[8:16])
    missing = {**base, "checkpoint": str(tmp_path / "none.ckpt")}
    with pytest.raises(ValueError, match="not found"):
        Trainer(TrainConfig(epochs=2, resume=True, **missing), dipeptides[:8])
    resumed = Trainer(TrainConfig(epochs=2, resume=True, **base), dipeptides[:8])
    assert resumed.epoch == 1 and resumed.model.cutoff == 4.0


def _cli_args(data, out, *extra):
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args([str(data), "-o", str(out), "--forces-key", "force", "--valid-last", "2", "--epochs",
                              "1", "--channels", "4", "--l-max", "1", "--hidden", "8", "--no-progress", *extra])


def test_cli_never_overwrites_a_model_and_checks_outputs_before_training(shared_data, tmp_path):
    import ase.io

    data = tmp_path / "small.xyz"
    ase.io.write(data, ase.io.read(shared_data / "dipeptides_spice_train.xyz", "0:6"))
    out = tmp_path / "keep.pt"
    out.write_bytes(b"a better model")
    with pytest.raises(ValueError, match="exists: pass --overwrite"):
        run_cli(_cli_args(data, out))
    assert out.read_bytes() == b"a better model"
    with pytest.raises(ValueError, match="is a directory"):
        run_cli(_cli_args(data, tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot write"):
        run_cli(_cli_args(data, blocker / "model.pt"))
    with pytest.raises(ValueError, match="--resume: checkpoint .* not found"):
        run_cli(_cli_args(data, tmp_path / "new.pt", "--resume"))
    assert run_cli(_cli_args(data, out, "--overwrite")) == 0 and out.read_bytes() != b"a better model"


def test_several_seeds_share_one_validation_split_and_the_best_is_kept(dipeptides, tmp_path):
    from lesmd.train import train_seeds

    out = tmp_path / "best.pt"
    config = TrainConfig(output=str(out), valid_fraction=0.25, epochs=1, **SMALL)
    best, metrics = train_seeds(config, [0, 1], dipeptides[:12])
    losses = {}
    for seed in (0, 1):
        model = load_model(tmp_path / f"best.seed{seed}.pt")
        assert model.provenance["config"]["split_seed"] == 0  # both validated on the same frames
        losses[seed] = model.provenance["validation"]["loss"]
    assert best == min(losses, key=losses.get) and losses[0] != losses[1]
    assert load_model(out).provenance["config"]["seed"] == best
    assert metrics["loss"] == pytest.approx(losses[best])


def test_sigterm_stops_training_and_keeps_the_best_model(shared_data, tmp_path):
    """`kill` (SIGTERM) of a background `lesmd train` writes the best model so far, like Ctrl-C."""
    import signal
    import subprocess
    import sys
    import time

    import ase.io

    data = tmp_path / "small.xyz"
    ase.io.write(data, ase.io.read(shared_data / "dipeptides_spice_train.xyz", "0:12"))
    out = tmp_path / "m.pt"
    proc = subprocess.Popen([sys.executable, "-m", "lesmd.cli", "train", str(data), "-o", str(out), "--forces-key",
                             "force", "--valid-last", "3", "--epochs", "10000", "--channels", "4", "--l-max", "1",
                             "--hidden", "8", "--no-progress", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    checkpoint = tmp_path / "m.pt.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "interrupted: keeping the best model" in stdout + stderr
    assert load_model(out).provenance["epochs_run"] >= 1
