"""Add extrapolation guards to a trained model file (done once for the embedded default water model).

All guards sit where the training data has no configurations and leave the model unchanged on it:

- core repulsion: switched ZBL below per-pair cutoffs (``--core-repulsion``, default H–H 1.3, O–H 0.85,
  O–O 2.0 Å, below the data's shortest 1.339, 0.897, 2.386 Å; :class:`lesmd.models.repulsion.CoreRepulsion`);

- latent-charge bound: the raw latent charges of every element are evaluated on all training and validation
  frames; charges pass unchanged inside [min − margin, max + margin] of that range and saturate within
  ``--width`` beyond it (:func:`lesmd.models.les.bound_charges`), so an environment far from the data cannot drive
  runaway charges;
- data walls: a soft cubic pair wall below the shortest distance of every element pair in the data
  (:class:`lesmd.models.repulsion.DataWall`), so molecules cannot interpenetrate into regions the model never saw.

See lesmd/pretrained/README.md for the NVE collapse these guards remove.

Usage: python scripts/add_model_guards.py --model lesmd/pretrained/water_les.pt \
           --data ../shared/data/water_rpbe_d3_bec_100.xyz [--margin 0.25] [--width 0.05] \
           [--core-repulsion 1-1=1.3,1-8=0.85,8-8=2.0]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from ase.io import read

from lesmd.models.io import build_model, load_model, read_model_file, save_model
from lesmd.neighbors import edge_vectors, neighbor_list


def raw_charge_ranges(model, frames) -> dict[int, tuple[float, float]]:
    """{Z: (min, max)} of the raw latent charges over ``frames``."""
    seen: dict[int, list[np.ndarray]] = {}
    for atoms in frames:
        pos, cell = torch.tensor(atoms.positions), torch.tensor(atoms.cell.array)
        pbc = torch.tensor(atoms.pbc)
        numbers = torch.tensor(atoms.numbers)
        edges = neighbor_list(pos, cell, pbc, model.cutoff)
        with torch.no_grad():
            raw = model.raw_charges_graph(model.species_indices(numbers), edge_vectors(pos, cell, edges), edges.i,
                                          edges.j).numpy()
        for z in np.unique(atoms.numbers):
            seen.setdefault(int(z), []).append(raw[atoms.numbers == z])
    return {z: (float(np.concatenate(v).min()), float(np.concatenate(v).max())) for z, v in seen.items()}


def shortest_pair_distances(frames) -> dict[str, float]:
    """{"Z1-Z2": shortest distance (Å, minimum image)} over ``frames``."""
    shortest: dict[str, float] = {}
    for atoms in frames:
        d = atoms.get_all_distances(mic=True)
        np.fill_diagonal(d, np.inf)
        for z1 in np.unique(atoms.numbers):
            for z2 in np.unique(atoms.numbers):
                if z1 <= z2:
                    key = f"{z1}-{z2}"
                    value = float(d[np.ix_(atoms.numbers == z1, atoms.numbers == z2)].min())
                    shortest[key] = min(shortest.get(key, np.inf), value)
    return shortest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--margin", type=float, default=0.25, help="fraction of each range added on both sides")
    parser.add_argument("--width", type=float, default=0.05, help="saturation width beyond the range, e")
    parser.add_argument("--core-repulsion", default="1-1=1.3,1-8=0.85,8-8=2.0",
                        help="ZBL cutoffs 'Z1-Z2=r_c,...' in Å (must lie below the data); 'none' for none")
    parser.add_argument("--wall-strength", type=float, default=0.05, help="data wall ε, eV")
    parser.add_argument("--wall-length", type=float, default=0.1, help="data wall λ, Å")
    args = parser.parse_args()
    model = load_model(args.model, dtype=torch.float64)
    model.charge_bound = None
    model.data_walls = None
    frames = read(args.data, ":")
    ranges = raw_charge_ranges(model, frames)
    bound = {"width": args.width, "ranges": {}}
    for z, (lo, hi) in ranges.items():
        pad = args.margin * (hi - lo)
        bound["ranges"][str(z)] = [round(lo - pad, 4), round(hi + pad, 4)]
        print(f"Z={z}: data raw charges [{lo:.4f}, {hi:.4f}] e -> bound {bound['ranges'][str(z)]}, width {args.width}")
    walls = {key: math.floor(r * 100) / 100 for key, r in shortest_pair_distances(frames).items()}
    print(f"data walls below the shortest data distances (Å): {walls}")
    provenance = read_model_file(args.model).get("provenance", {})
    architecture = model.architecture()
    architecture["charge_bound"] = bound
    if args.core_repulsion.lower() != "none":
        try:
            architecture["core_repulsion"] = {k.strip(): float(v) for k, v in
                                              (item.split("=") for item in args.core_repulsion.split(","))}
        except ValueError:
            raise SystemExit(f"--core-repulsion must look like '1-1=1.3,1-8=0.85', "
                             f"got {args.core_repulsion!r}") from None
        for key, r_c in architecture["core_repulsion"].items():
            if key in walls and r_c >= walls[key]:
                raise SystemExit(f"core repulsion cutoff {key}={r_c} Å is not below the data ({walls[key]} Å)")
    architecture["data_walls"] = {"cutoffs": walls, "strength": args.wall_strength, "length": args.wall_length}
    bounded = build_model(architecture).to(torch.float32)
    bounded.load_state_dict(load_model(args.model).state_dict())
    provenance["guards"] = {"charge_margin": args.margin, "charge_width": args.width, "data": args.data,
                            "wall_strength": args.wall_strength, "wall_length": args.wall_length,
                            "core_repulsion": args.core_repulsion}
    save_model(bounded, args.model, provenance)
    print(f"wrote {args.model}")


if __name__ == "__main__":
    main()
