"""Which training choices make the latent charges carry the electrostatics? Short runs, one change at a time.

Each arm trains the water model (80 frames, last 20 held out) for a fixed number of epochs and records, every few
epochs, the mean latent charge of O and H and the LES energy of a held-out frame; at the end the validation
energy/force RMSE and the Born effective charges against the file's DFT ``BEC`` (R² after the least-squares scale,
the model never sees them). Prints one JSON line per arm and a table last.

Usage: python scripts/charge_channel_experiment.py --arms baseline,cutoff4 --epochs 40 [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lesmd.data import Keys, read_frames
from lesmd.train import TrainConfig, Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: system → (data file, label keys, training settings): water (periodic, BECs) or dipeptides (open, dipoles)
SYSTEMS = {
    "water": (SHARED / "water_rpbe_d3_bec_100.xyz", Keys(bec="BEC"), {"valid_last": 20}),
    "dipeptides": (SHARED / "dipeptides_spice_train.xyz", Keys(forces="force", dipole="dipole"),
                   {"valid_last": 55, "forces_key": "force"}),
}

#: one change per arm against "baseline" (the recipe of the shipped model before this study)
ARMS: dict[str, dict] = {
    "baseline": {},
    "cutoff4": {"cutoff": 4.0},
    "cutoff4.5": {"cutoff": 4.5},
    "staged": {"energy_weight_start": 1.0},
    "charge_lr10": {"charge_lr_scale": 10.0},
    "charge_lr0.1": {"charge_lr_scale": 0.1},
    "staged_charge_lr0.1": {"energy_weight_start": 1.0, "charge_lr_scale": 0.1},
    "cutoff4_staged": {"cutoff": 4.0, "energy_weight_start": 1.0},
    "freeze": {"charge_freeze": 0.25},
    "freeze_lr10": {"charge_freeze": 0.25, "charge_lr_scale": 10.0},
    "staged_freeze": {"energy_weight_start": 1.0, "charge_freeze": 0.25},
    "staged_cutoff4.5": {"energy_weight_start": 1.0, "cutoff": 4.5},
    "near_field": {"near_field": 5.0},
    "near_field_staged": {"near_field": 5.0, "energy_weight_start": 1.0},
    "near_field2": {"near_field": 2.0},
    "near_field2_staged": {"near_field": 2.0, "energy_weight_start": 1.0},
    "near_field3_staged": {"near_field": 3.0, "energy_weight_start": 1.0},
    "no_les": {"use_les": False},
}


def bec_r2(model, frames) -> float:
    """R² of s·Z*_model against the DFT BEC (as given) over the frames, s the least-squares scale."""
    pred, ref = [], []
    for f in frames:
        numbers, pos = torch.from_numpy(f.numbers), torch.tensor(f.positions, dtype=torch.float64)
        pred.append(model.born_effective_charges(numbers, pos, torch.tensor(f.cell), torch.tensor(f.pbc)).numpy())
        ref.append(f.bec)
    pred, ref = np.stack(pred), np.stack(ref)
    s = float((pred * ref).sum() / (pred * pred).sum())
    return float(1 - ((ref - s * pred) ** 2).sum() / ((ref - ref.mean()) ** 2).sum())


def dipole_r2(model, frames) -> float:
    """R² of s·Σ q_i r_i against the DFT dipoles (e·Å), s the least-squares scale (sign free)."""
    pred, ref = [], []
    for f in frames:
        with torch.no_grad():
            pos = torch.tensor(f.positions, dtype=torch.float64)
            out = model(torch.from_numpy(f.numbers), pos, torch.zeros(3, 3, dtype=torch.float64),
                        torch.zeros(3, dtype=torch.bool))  # fmt: skip
        pred.append((out["charges"][:, None] * pos).sum(0).numpy())
        ref.append(f.dipole)
    pred, ref = np.array(pred), np.array(ref)
    s = float((pred * ref).sum() / (pred * pred).sum())
    return float(1 - ((ref - s * pred) ** 2).sum() / ((ref - ref.mean(0)) ** 2).sum())


def charge_summary(model, frame) -> dict:
    numbers = torch.from_numpy(frame.numbers)
    with torch.no_grad():
        out = model(numbers, torch.tensor(frame.positions, dtype=torch.float64), torch.tensor(frame.cell),
                    torch.tensor(frame.pbc))  # fmt: skip
    q = out["charges"].numpy()
    return {"q_O": float(q[frame.numbers == 8].mean()), "q_H": float(q[frame.numbers == 1].mean()),
            "q_rms": float(np.sqrt((q**2).mean())), "E_lr_eV": float(out["energy_lr"])}  # fmt: skip


def run_arm(name: str, epochs: int, seed: int, every: int, system: str = "water") -> dict:
    data, keys, settings = SYSTEMS[system]
    frames = read_frames(str(data), keys)
    config = TrainConfig(data=str(data), output="/dev/null", epochs=epochs, threads=1, les_accuracy=1e-4,
                         hidden=[128, 128], energy_weight=300.0, seed=seed, progress=False,
                         **{**settings, **ARMS[name]})  # fmt: skip
    trainer = Trainer(config, frames)
    generator = torch.Generator().manual_seed(seed)
    trace = []
    start = time.perf_counter()
    for epoch in range(epochs):
        trainer.train_epoch(generator)
        trainer.epoch += 1
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            ema = trainer.ema.to(torch.float64)
            row = {"epoch": epoch + 1, **charge_summary(ema, trainer.valid_frames[0])}
            trainer.ema.to(trainer.dtype)
            trace.append(row)
    metrics = trainer.evaluate()
    ema = trainer.ema.to(torch.float64)
    result = {"arm": name, "seed": seed, "epochs": epochs, "minutes": (time.perf_counter() - start) / 60,
              "energy_rmse_mev_per_atom": metrics["energy_rmse_mev_per_atom"],
              "forces_rmse_mev_per_a": metrics["forces_rmse_mev_per_a"],
              "system": system,
              "bec_r2": bec_r2(ema, trainer.valid_frames) if config.use_les and system == "water" else float("nan"),
              "dipole_r2": dipole_r2(ema, trainer.valid_frames) if config.use_les and system != "water"
              else float("nan"),
              "final": trace[-1], "trace": trace}  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="baseline,cutoff4")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    parser.add_argument("--system", choices=sorted(SYSTEMS), default="water")
    args = parser.parse_args()
    results = []
    for name in args.arms.split(","):
        result = run_arm(name, args.epochs, args.seed, args.every, args.system)
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(line + "\n")
        results.append(result)
    print("system | arm | E meV/atom | F meV/Å | BEC R² | dipole R² | q_O | q_H | q_rms | E_lr eV")
    for r in results:
        f = r["final"]
        print(f"{r['system']} | {r['arm']} | {r['energy_rmse_mev_per_atom']:.3f} | {r['forces_rmse_mev_per_a']:.1f} | "
              f"{r['bec_r2']:.3f} | {r['dipole_r2']:.3f} | {f['q_O']:+.3f} | {f['q_H']:+.3f} | {f['q_rms']:.3f} | "
              f"{f['E_lr_eV']:.1f}")


if __name__ == "__main__":
    main()
