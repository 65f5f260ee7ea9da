"""Validation report of a water LES model: energy/force RMSE, Born effective charges vs DFT, latent charges.

Evaluates ``--model`` (default: the embedded one) on the last 20 frames of the water data set at full Ewald
accuracy, and writes the JSON card (``<model>.json`` beside the model file) that README and the pretrained card
quote. BECs: the model's Z* (minimum-image form, :meth:`LESModel.born_effective_charges`, index [atom, α dipole,
β displacement]) vs the data's ``BEC`` (index order undocumented upstream: compared as given and transposed), after
the least-squares scale s = √ε∞ that minimises |s·Z_model − Z_DFT|; R² = 1 − SS_res/SS_tot over all components.

Usage: python scripts/evaluate_default_model.py [--model PATH] [--data XYZ] [--valid-last 20]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from lesmd.data import Keys, read_frames
from lesmd.models.io import default_model_path, load_model


def scaled_fit(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Best scale s (pred·s ≈ ref), RMSE and R² after scaling, and the implied ε∞ = s²."""
    s = float((pred * ref).sum() / (pred * pred).sum())
    res = ref - s * pred
    return {"scale_sqrt_eps_inf": s, "epsilon_inf": s * s, "rmse_e": float(np.sqrt((res**2).mean())),
            "r2": float(1 - (res**2).sum() / ((ref - ref.mean()) ** 2).sum())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_path()))
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "water_rpbe_d3_bec_100.xyz"
    parser.add_argument("--data", default=str(data))
    parser.add_argument("--valid-last", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, dtype=torch.float64)
    frames = read_frames(args.data, Keys(bec="BEC"))[-args.valid_last :]
    de, df, z_model, z_dft, q_o, q_h = [], [], [], [], [], []
    for f in frames:
        numbers = torch.from_numpy(f.numbers)
        pos = torch.tensor(f.positions, requires_grad=True)
        cell, pbc = torch.tensor(f.cell), torch.tensor(f.pbc)
        out = model(numbers, pos, cell, pbc)
        forces = -torch.autograd.grad(out["energy"], pos)[0]
        de.append((float(out["energy"].detach()) - f.energy) / f.n_atoms)
        df.append((forces.detach().numpy() - f.forces).ravel())
        q = out["charges"].detach().numpy()
        q_o.append(q[f.numbers == 8])
        q_h.append(q[f.numbers == 1])
        z_model.append(model.born_effective_charges(numbers, pos.detach(), cell, pbc).numpy())
        z_dft.append(f.bec)
    z_model, z_dft = np.stack(z_model), np.stack(z_dft)
    mean_o, mean_h = float(np.concatenate(q_o).mean()), float(np.concatenate(q_h).mean())
    report = {
        "model": str(args.model), "data": str(args.data), "validation_frames": len(frames),
        "energy_rmse_mev_per_atom": 1e3 * math.sqrt(float(np.mean(np.square(de)))),
        "forces_rmse_mev_per_a": 1e3 * math.sqrt(float(np.mean(np.square(np.concatenate(df))))),
        "bec_as_given": scaled_fit(z_model, z_dft),
        "bec_transposed": scaled_fit(z_model, z_dft.transpose(0, 1, 3, 2)),
        "latent_charge_mean_O": mean_o, "latent_charge_mean_H": mean_h, "charge_ratio_O_over_H": mean_o / mean_h,
    }  # fmt: skip
    numbers = frames[0].numbers
    tr_model = np.trace(z_model, axis1=2, axis2=3) / 3
    tr_dft = np.trace(z_dft, axis1=2, axis2=3) / 3
    for symbol, z in (("O", 8), ("H", 1)):
        report[f"bec_mean_trace_{symbol}_model_dft"] = [float(tr_model[:, numbers == z].mean()),
                                                         float(tr_dft[:, numbers == z].mean())]  # fmt: skip
    out_path = Path(args.model).with_suffix(".json")
    model_info = {"provenance": model.provenance, "evaluation": report}
    out_path.write_text(json.dumps(model_info, indent=2, default=str))
    print(json.dumps(report, indent=2))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
