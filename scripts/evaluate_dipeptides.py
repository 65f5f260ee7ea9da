"""Dipoles of a dipeptide LES model (trained on energies and forces only) vs the DFT (ωB97M-D3(BJ)) dipoles.

M = Σ_i q_i r_i from the latent charges (open boundaries, neutral molecules, so origin-independent), compared
with the data's ``dipole`` (e·Å) on the validation frames (the last ``--valid-last``): RMSE, R² and the same after
the least-squares scale s (latent charges are defined up to the √ε∞-like factor); plus the correlation of the
latent charges with the DFT MBI partial charges (never used in training).

Usage: python scripts/evaluate_dipeptides.py --model PEP.pt [--data XYZ] [--valid-last 95]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np
import torch

from lesmd.models.io import load_model


def fit(pred: np.ndarray, ref: np.ndarray, scale: float = 1.0) -> dict:
    res = ref - scale * pred
    return {"scale": scale, "rmse": float(np.sqrt((res**2).mean())),
            "r2": float(1 - (res**2).sum() / ((ref - ref.mean()) ** 2).sum())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "dipeptides_spice_train.xyz"
    parser.add_argument("--data", default=str(data))
    parser.add_argument("--valid-last", type=int, default=95)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, dtype=torch.float64)
    frames = ase.io.read(args.data, ":")[-args.valid_last :]
    pred, ref, q_model, q_mbi = [], [], [], []
    with torch.no_grad():
        for atoms in frames:
            pos = torch.tensor(atoms.positions)
            out = model(torch.tensor(atoms.numbers), pos, torch.zeros(3, 3, dtype=torch.float64),
                        torch.tensor([False] * 3))  # fmt: skip
            q = out["charges"]
            pred.append((q.unsqueeze(1) * pos).sum(0).numpy())
            ref.append(np.asarray(atoms.calc.results["dipole"]).reshape(3))
            q_model.append(q.numpy())
            q_mbi.append(atoms.arrays["mbi_charges"].reshape(-1))
    pred, ref = np.array(pred), np.array(ref)
    s = float((pred * ref).sum() / (pred * pred).sum())
    q_model, q_mbi = np.concatenate(q_model), np.concatenate(q_mbi)
    report = {
        "validation_frames": len(frames), "dipole_units": "e·Å",
        "dipole_raw": fit(pred, ref), "dipole_scaled": fit(pred, ref, s),
        "mean_abs_dft_dipole": float(np.linalg.norm(ref, axis=1).mean()),
        "mean_abs_model_dipole": float(np.linalg.norm(pred, axis=1).mean()),
        "latent_vs_mbi_charge_correlation": float(np.corrcoef(q_model, q_mbi)[0, 1]),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    Path(args.model).with_suffix(".dipoles.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
