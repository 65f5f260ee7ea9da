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


#: 1 eV/Å³ in GPa
EV_A3_TO_GPA = 160.21766208


def npt_density(model_path: str, data: str, ps: float) -> dict:
    """Density (g/cm³) of 64 H₂O in a 300 K, 1 bar NPT run (ASE NPTBerendsen, 0.5 fs, Langevin pre-equilibration
    0.5 ps) from the first data frame; mean and standard error of the second half (blocks of 0.5 ps)."""
    import ase.io
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.nptberendsen import NPTBerendsen
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    from lesmd.calculator import LESCalculator

    atoms = ase.io.read(data, 0)
    atoms.calc = LESCalculator(model_path)
    rng = np.random.default_rng(0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
    Stationary(atoms)
    Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=rng).run(1000)
    dyn = NPTBerendsen(atoms, 0.5 * units.fs, temperature_K=300, pressure_au=1.0 * units.bar, taut=100 * units.fs,
                       taup=1000 * units.fs, compressibility_au=4.57e-5 / units.bar)  # fmt: skip
    mass_g = atoms.get_masses().sum() / 6.02214076e23
    densities = []
    steps = int(round(ps * 2000))
    for _ in range(steps // 20):
        dyn.run(20)
        densities.append(mass_g / (atoms.get_volume() * 1e-24))
    second = np.array(densities[len(densities) // 2 :])
    blocks = np.array([b.mean() for b in np.array_split(second, max(2, int(len(second) * 20 / 1000)))])
    return {"npt_ps": ps, "npt_density_g_cm3": float(second.mean()),
            "npt_density_err_g_cm3": float(blocks.std(ddof=1) / np.sqrt(len(blocks))),
            "npt_density_dft_frames_g_cm3": float(mass_g / (ase.io.read(data, 0).get_volume() * 1e-24))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_path()))
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "water_rpbe_d3_bec_100.xyz"
    parser.add_argument("--data", default=str(data))
    parser.add_argument("--valid-last", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--npt-ps", type=float, default=10.0, help="length of the 300 K, 1 bar NPT run (ps; 0: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, dtype=torch.float64)
    frames = read_frames(args.data, Keys(bec="BEC", stress="stress"))[-args.valid_last :]
    de, df, z_model, z_dft, q_o, q_h, p_model, p_dft = [], [], [], [], [], [], [], []
    for f in frames:
        numbers = torch.from_numpy(f.numbers)
        pos = torch.tensor(f.positions, requires_grad=True)
        cell, pbc = torch.tensor(f.cell), torch.tensor(f.pbc)
        strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        out = model(numbers, pos + pos @ strain, cell + cell @ strain, pbc)
        grad_pos, grad_strain = torch.autograd.grad(out["energy"], (pos, strain))
        forces = -grad_pos
        volume = abs(float(np.linalg.det(f.cell)))
        p_model.append(-float(torch.trace(grad_strain)) / (3 * volume) * EV_A3_TO_GPA)  # P = −tr σ/3
        p_dft.append(-float(np.trace(f.stress)) / 3 * EV_A3_TO_GPA)
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
        "pressure_gpa_model_mean": float(np.mean(p_model)), "pressure_gpa_dft_mean": float(np.mean(p_dft)),
        "pressure_gpa_offset_dft_minus_model": float(np.mean(p_dft) - np.mean(p_model)),
        "pressure_gpa_rmse_after_offset": float(np.std(np.array(p_dft) - np.array(p_model))),
    }  # fmt: skip
    if args.npt_ps > 0:
        report.update(npt_density(args.model, args.data, args.npt_ps))
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
