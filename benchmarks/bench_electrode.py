"""Cost of the constant-potential electrodes per MD step vs the electrolyte model call.

System: the Au(100) capacitor of :mod:`lesmd.electrode.geometry` (288 electrode atoms, ΔV = 1 V) with 64 water
molecules (192 atoms) between the plates; frozen electrodes (``solver = "matrix"``); the water atoms take a random
step of 0.01 Å per coordinate before each electrode call, so that the cached pair lists are reused and rebuilt as
in MD (the model-only timing uses fixed positions). For each boundary (finite_field, slab): CPU time of the process
(``time.process_time``, not wall time, so that other jobs on shared cores distort the ratios less) of one
:meth:`ElectrodePotential.compute` (energy + forces) and of the bare model call on the 192 water atoms (energy +
forces by autograd), medians over ``--repeats`` calls after a warm-up, ``torch.set_num_threads(1)`` by default.
Two electrode figures:

- the electrode *solve*: an energy-only call without autograd (model forward, coupling potential φ, the linear
  solve for q, energy assembly, Lennard-Jones, pair lists, overlap checks) minus the model's forward pass inside
  that same call (timed by forward hooks on the model), as a share of the full MD step (energy + forces) — the
  issue's target (issue 6): ≤ 20 % of the step. The subtraction is paired within one call: two separate medians
  (energy call, bare model forward) differed by a few ms from run to run on a shared machine, as much as the
  solve itself;
- all electrode work: full step − model forward+backward (also the backward through the coupling for the
  Hellmann–Feynman forces).
The three calls (solve, step, bare model) are interleaved, and each fraction is the median over the repeats of the
ratio within one round (the machine's speed drifts by up to 2× between rounds when other jobs share the cores);
the times are medians.
Model: the default water model (lesmd.models.io.load_model()) if it exists, else an untrained LESModel
(MomentNetwork H/O, cutoff 5 Å, σ = 1 Å) of the same size; the script says which.

Usage: python benchmarks/bench_electrode.py [--repeats 15] [--threads 1]
Last line: boundary=<b> step=<s> model=<s> solve=<s> solve_fraction=<x> electrode=<s> electrode_fraction=<x>
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lesmd.electrode import ElectrodePotential, config_from_dict
from lesmd.electrode.geometry import au100_capacitor, water_between_electrodes


def load_water_model() -> tuple[torch.nn.Module, str]:
    """The default water model, or an untrained LESModel of similar size."""
    from lesmd.models.io import default_model_path, load_model

    if default_model_path().is_file():
        return load_model(), f"default water model ({default_model_path().name})"
    from lesmd.models.les import LESModel
    from lesmd.models.shortrange import MomentNetwork

    model = LESModel(MomentNetwork([1, 8], cutoff=5.0), sigma=1.0).eval()
    return model, "untrained LESModel (MomentNetwork H/O, cutoff 5 Å, σ = 1 Å; no default model file found)"


class ForwardTimer:
    """CPU time spent in a module's forward passes (forward pre-hook and hook), reset by the caller."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.total = 0.0
        self._start = 0.0
        module.register_forward_pre_hook(self._begin)
        module.register_forward_hook(self._end)

    def _begin(self, *_) -> None:
        self._start = time.process_time()

    def _end(self, *_) -> None:
        self.total += time.process_time() - self._start


def cpu_time(function) -> float:
    """CPU time (s) of this process for one call."""
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, label = load_water_model()
    print(f"model: {label}")
    au_numbers, au_positions, cell = au100_capacitor()
    w_numbers, w_positions = water_between_electrodes()
    numbers = np.concatenate([au_numbers, w_numbers])
    positions = np.vstack([au_positions, w_positions])
    n_el = len(au_numbers)
    print(f"atoms: {n_el} electrode + {len(w_numbers)} water")
    dtype = next(model.parameters()).dtype
    timer = ForwardTimer(model)
    line = ""
    for boundary in ("finite_field", "slab"):
        pbc = torch.tensor([True, True, boundary == "finite_field"])
        config = config_from_dict({
            "boundary": boundary,
            "electrode": [{"indices": f"0:{n_el // 2}", "potential": -0.5},
                          {"indices": f"{n_el // 2}:{n_el}", "potential": 0.5}],
            "lennard_jones": {"cutoff": 10.0, "Au": {"epsilon": 0.2294, "sigma": 2.629},
                              "O": {"epsilon": 0.00674, "sigma": 3.166}}})
        potential = ElectrodePotential(model, config)

        def model_call(pbc=pbc):
            pos = torch.tensor(w_positions, dtype=dtype, requires_grad=True)
            out = model(torch.tensor(w_numbers), pos, torch.tensor(cell, dtype=dtype), pbc)
            torch.autograd.grad(out["energy"], pos)

        rng = np.random.default_rng(1)
        moving = positions.copy()

        def solve_only(potential=potential, moving=moving, rng=rng):
            moving[n_el:] += rng.normal(scale=0.01, size=moving[n_el:].shape)
            with torch.no_grad():  # no autograd graph: the energy path alone
                potential.compute(numbers, moving, cell, None, ["energy"])

        def step(potential=potential, moving=moving, rng=rng):
            # MD-like: the water atoms move by ~0.01 Å per step (cached pair lists are rebuilt as in a real run)
            moving[n_el:] += rng.normal(scale=0.01, size=moving[n_el:].shape)
            potential.compute(numbers, moving, cell, None, ["energy", "forces"])

        try:
            model_call()
        except ValueError as error:
            print(f"{boundary}: the model cannot run this boundary yet ({error})")
            continue
        for warm_up in (solve_only, step, model_call):
            warm_up()
        solves, steps, models = [], [], []
        for _ in range(args.repeats):  # interleaved, so that slow phases of a shared machine hit all three alike
            timer.total = 0.0
            solves.append(cpu_time(solve_only) - timer.total)  # paired: the model's forward in that same call
            if timer.total <= 0.0:
                raise RuntimeError("the model's forward pass was not timed (did the electrode call use it?)")
            steps.append(cpu_time(step))
            models.append(cpu_time(model_call))
        t_solve, t_step, t_model = statistics.median(solves), statistics.median(steps), statistics.median(models)
        overhead = statistics.median([a - b for a, b in zip(steps, models, strict=True)])
        solve_fraction = statistics.median([a / b for a, b in zip(solves, steps, strict=True)])
        electrode_fraction = statistics.median([(a - b) / a for a, b in zip(steps, models, strict=True)])
        q = potential.last_results["electrode_total_charges"]
        print(f"{boundary:12s} step {t_step * 1e3:8.1f} ms  model {t_model * 1e3:8.1f} ms  "
              f"solve {t_solve * 1e3:6.1f} ms ({solve_fraction:.1%})  "
              f"all electrode work {overhead * 1e3:6.1f} ms ({electrode_fraction:.1%})  Q_top={q[1]:+.4f} e")
        line = (f"boundary={boundary} step={t_step:.4f} model={t_model:.4f} solve={t_solve:.4f} "
                f"solve_fraction={solve_fraction:.3f} electrode={overhead:.4f} "
                f"electrode_fraction={electrode_fraction:.3f}")
    print(line)


if __name__ == "__main__":
    main()
