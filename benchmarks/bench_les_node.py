"""What the single-node LES mesh energy saves inside the model: interleaved calls, one process.

Four copies of the default model are called in turn on the same positions (energy + forces + stress, the Verlet
list reused as in MD, as in bench_model.py): with the LES mesh energy as one autograd node
(:mod:`lesmd.les.uniform_mesh`, the default), the same node with torch.fft for its FFTs at every mesh size (the
baseline of the node's own C FFT, used up to ``uniform_mesh.NATIVE_FFT_MAX_POINTS`` points), with the composable
mesh operations (``fused=False``, the baseline of the node), and with the LES term switched off. Ratios are
medians of per-round ratios, so the machine's slow and fast phases cancel; on a shared 2-core VM this resolves
differences of about 1 %, where separate runs of bench_model.py scatter by ±20 %.

Usage: python benchmarks/bench_les_node.py [--replicas 1] [--repeats 300] [--threads 2]
Last line: N=<atoms> node_overhead=<x> torch_fft_overhead=<x> composable_overhead=<x> node_vs_composable=<x>
node_vs_torch_fft=<x>
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import median_ratio, time_calls, water_box  # noqa: E402

from lesmd.allocator import tune_allocator  # noqa: E402
from lesmd.les import uniform_mesh  # noqa: E402
from lesmd.models.io import load_model  # noqa: E402


class TorchFFT(torch.nn.Module):
    """A model whose LES node takes torch.fft at every mesh size (its forward decides; the backward follows)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.verlet_list = model, model.verlet_list

    def forward(self, *args):  # noqa: D102
        saved, uniform_mesh.NATIVE_FFT_MAX_POINTS = uniform_mesh.NATIVE_FFT_MAX_POINTS, 0
        try:
            return self.model(*args)
        finally:
            uniform_mesh.NATIVE_FFT_MAX_POINTS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()
    node, torch_fft, composable, short = (load_model(None, dtype=torch.float32) for _ in range(4))
    composable.les_options = {**composable.les_options, "fused": False}
    short.use_les = False
    inputs = water_box(args.replicas, torch.float32)
    models = [node, TorchFFT(torch_fft), composable, short]
    (w_node, _), (w_fft, _), (w_comp, _), (w_short, _) = time_calls(models, inputs, args.repeats)
    n = inputs[0].shape[0]
    medians = {"node": w_node, "torch_fft": w_fft, "composable": w_comp, "short": w_short}
    ms = " ".join(f"{name}={1e3 * statistics.median(w):.2f}" for name, w in medians.items())
    print(f"N={n} threads={args.threads} rounds={args.repeats}: median ms {ms}")
    print(f"N={n} node_overhead={median_ratio(w_node, w_short):.3f} "
          f"torch_fft_overhead={median_ratio(w_fft, w_short):.3f} "
          f"composable_overhead={median_ratio(w_comp, w_short):.3f} "
          f"node_vs_composable={median_ratio(w_node, w_comp):.3f} "
          f"node_vs_torch_fft={median_ratio(w_node, w_fft):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
