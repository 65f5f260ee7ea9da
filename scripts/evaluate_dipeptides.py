"""Held-out report of a dipeptide LES model (trained on energies and forces only) against the DFT (ωB97M-D3(BJ)).

The validation frames are the ones the training held out, rebuilt from the model's provenance (the same
``split_frames`` call with its ``valid_fraction``/``valid_last`` and seed), so no reported number comes from a
training frame. Reports energy and force RMSE, the dipole M = Σ_i q_i r_i of the latent charges against the data's
``dipole`` (e·Å): RMSE and R² as given and after the least-squares scale s (latent charges are defined up to a
√ε∞-like factor; sign free), and the correlation of the latent charges with the DFT MBI partial charges (never used
in training). Writes the card JSON beside the model (``<model>.json``).

Usage: python scripts/evaluate_dipeptides.py --model PEP.pt [--data XYZ]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import ase.io
import numpy as np
import torch

from lesmd.data import Keys, read_frames, split_frames
from lesmd.models.io import load_model


def fit(pred: np.ndarray, ref: np.ndarray, scale: float = 1.0) -> dict:
    res = ref - scale * pred
    return {"scale": scale, "rmse": float(np.sqrt((res**2).mean())),
            "r2": float(1 - (res**2).sum() / ((ref - ref.mean(0)) ** 2).sum())}  # fmt: skip


def held_out(model, data: str):
    """(validation frames, their indices in the file) of the model's training split."""
    config = model.provenance.get("config", {})
    frames = read_frames(data, Keys(forces=config.get("forces_key") or "force", dipole="dipole"))
    for k, f in enumerate(frames):
        f.extras["index"] = k
    _, valid = split_frames(frames, valid_fraction=config.get("valid_fraction", 0.1),
                            valid_last=config.get("valid_last"),
                            seed=config.get("split_seed") if config.get("split_seed") is not None
                            else config.get("seed", 0))  # fmt: skip
    return valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "dipeptides_spice_train.xyz"
    parser.add_argument("--data", default=str(data))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, dtype=torch.float64)
    valid = held_out(model, args.data)
    atoms_list = ase.io.read(args.data, ":")
    pred, ref, q_model, q_mbi, de, df = [], [], [], [], [], []
    for f in valid:
        pos = torch.tensor(f.positions, requires_grad=True)
        out = model(torch.tensor(f.numbers), pos, torch.zeros(3, 3, dtype=torch.float64), torch.tensor([False] * 3))
        forces = -torch.autograd.grad(out["energy"], pos)[0].numpy()
        de.append((float(out["energy"]) - f.energy) / f.n_atoms)
        df.append((forces - f.forces).ravel())
        q = out["charges"].detach()
        pred.append((q.unsqueeze(1) * pos.detach()).sum(0).numpy())
        ref.append(f.dipole)
        q_model.append(q.numpy())
        q_mbi.append(atoms_list[f.extras["index"]].arrays["mbi_charges"].reshape(-1))
    pred, ref = np.array(pred), np.array(ref)
    s = float((pred * ref).sum() / (pred * pred).sum())
    q_model, q_mbi = np.concatenate(q_model), np.concatenate(q_mbi)
    report = {
        "model": str(args.model), "data": str(args.data), "validation_frames": len(valid),
        "validation_indices": [int(f.extras["index"]) for f in valid],
        "energy_rmse_mev_per_atom": 1e3 * math.sqrt(float(np.mean(np.square(de)))),
        "forces_rmse_mev_per_a": 1e3 * math.sqrt(float(np.mean(np.square(np.concatenate(df))))),
        "dipole_units": "e·Å", "dipole_raw": fit(pred, ref), "dipole_scaled": fit(pred, ref, s),
        "mean_abs_dft_dipole": float(np.linalg.norm(ref, axis=1).mean()),
        "mean_abs_model_dipole": float(np.linalg.norm(pred, axis=1).mean()),
        "latent_rms_charge_e": float(np.sqrt((q_model**2).mean())),
        "mbi_rms_charge_e": float(np.sqrt((q_mbi**2).mean())),
        "latent_vs_mbi_charge_correlation": float(np.corrcoef(q_model, q_mbi)[0, 1]),
    }  # fmt: skip
    out_path = Path(args.model).with_suffix(".json")
    out_path.write_text(json.dumps({"provenance": model.provenance, "evaluation": report}, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "validation_indices"}, indent=2))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
