"""Training LES models on energies and forces (optionally stress, dipoles, Born effective charges): `lesmd train`.

Loss (per batch of structures; every term a mean square, weights w_*):

    L = w_E ⟨(ΔE/N)²⟩ + w_F ⟨|ΔF_i|²⟩/3 + w_S ⟨|Δσ|²⟩/9 + w_M ⟨|ΔM|²⟩/3 + w_Z ⟨|ΔZ*_i|²⟩/9

with F = −∂E/∂r, σ = (1/V) ∂E/∂ε (strain ε on positions and cell, ASE sign), M = √ε∞ Σ q_i r_i (open boundaries
or unwrapped positions) and Z*_{i,αβ} = ∂M_α/∂r_{iβ}. Following LES (Cheng, npj Comput. Mater. 11, 80 (2025)),
the latent charges are never fitted to reference charges; the dipole and BEC terms are off by default (Zhong et
al., arXiv:2504.05169 show BECs emerge from energy/force training alone).

Procedure: per-element reference energies by least squares on the training set; descriptor statistics
(mean neighbour count, feature mean/std) and the energy scale (RMS force) from the training data; Adam with a
cosine learning-rate schedule, an exponential moving average (EMA) of the weights used for validation and saving,
early stopping on the validation loss, a checkpoint every epoch (``--resume`` continues from it), and Ctrl-C
that stops cleanly and keeps the best model. The final report gives validation RMSEs in meV/atom and meV/Å.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import lesmd
from lesmd.allocator import tune_allocator
from lesmd.data import Frame, Keys, fit_reference_energies, read_frames, species_of, split_frames
from lesmd.models.io import build_model, model_from_dict, model_to_dict, save_model
from lesmd.models.les import LESModel
from lesmd.models.shortrange import MomentNetwork
from lesmd.neighbors import neighbor_list


@dataclass
class TrainConfig:
    """Every setting of a training run (plain values: stored in checkpoints and model provenance)."""

    data: str = ""
    output: str = "model.pt"
    energy_key: str = "energy"
    forces_key: str | None = "forces"
    stress_key: str | None = None
    dipole_key: str | None = None
    bec_key: str | None = None
    valid_fraction: float = 0.1
    valid_last: int | None = None
    cutoff: float = 5.0
    n_basis: int = 8
    n_channels: int = 32
    l_max: int = 3
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    charge_hidden: list[int] = field(default_factory=lambda: [16])
    sigma: float = 1.0
    use_les: bool = True
    les_accuracy: float | None = None
    energy_weight: float = 1000.0
    energy_weight_start: float | None = None
    energy_ramp: float = 0.5
    charge_lr_scale: float = 1.0
    charge_freeze: float = 0.0
    near_field: float = 0.0
    forces_weight: float = 1.0
    stress_weight: float = 1000.0
    dipole_weight: float = 0.0
    bec_weight: float = 0.0
    epsilon_inf: float = 1.0
    epochs: int = 200
    batch_size: int = 1
    lr: float = 4e-3
    lr_min: float = 2e-5
    weight_decay: float = 0.0
    ema_decay: float = 0.99
    patience: int = 50
    max_minutes: float | None = None
    seed: int = 0
    split_seed: int | None = None
    dtype: str = "float32"
    threads: int | None = None
    checkpoint: str | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


#: settings that define the model (a resumed run must use the checkpoint's)
ARCHITECTURE_FIELDS = ("cutoff", "n_basis", "n_channels", "l_max", "hidden", "charge_hidden", "sigma", "use_les",
                       "dtype", "near_field")
#: settings that define the data (a resumed run on other data would compare losses across data sets)
DATA_FIELDS = ("energy_key", "forces_key", "stress_key", "dipole_key", "bec_key", "valid_fraction", "valid_last",
               "split_seed")


def data_fingerprint(frames: list[Frame]) -> str:
    """sha256 over the atomic numbers, positions and energies of the frames (what a checkpoint was trained on)."""
    import hashlib

    digest = hashlib.sha256()
    for f in frames:
        digest.update(np.ascontiguousarray(f.numbers, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(f.positions, dtype=np.float64).tobytes())
        digest.update(np.float64(f.energy).tobytes())
    return digest.hexdigest()


def check_outputs(config: TrainConfig) -> None:
    """Before any training: the output and checkpoint can be written, a fresh run does not overwrite existing
    files unless ``overwrite``, and ``resume`` has a checkpoint to resume from. ValueError naming the fix."""
    c = config
    out = Path(c.output)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory: give a file name, e.g. {out / 'model.pt'}")
    if c.resume:
        if not c.checkpoint or not Path(c.checkpoint).is_file():
            raise ValueError(f"--resume: checkpoint {c.checkpoint} not found (start a fresh run without --resume)")
    elif not c.overwrite:
        for path, what in ((out, "model"), (Path(c.checkpoint) if c.checkpoint else None, "checkpoint")):
            if path is not None and path.exists():
                raise ValueError(f"{what} file {path} exists: pass --overwrite to replace it, --resume to continue "
                                 "that run, or choose another -o")
    for path in (out, Path(c.checkpoint) if c.checkpoint else None):
        if path is None or str(path) == "/dev/null":
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = path.with_name(path.name + ".write-test")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise ValueError(f"cannot write {path}: {error.strerror or error} (choose a writable -o/--checkpoint)") \
                from None


@dataclass
class Batch:
    """Structures concatenated into one graph (torch, ready for :meth:`LESModel.forward_graph`)."""

    species: torch.Tensor
    positions: torch.Tensor
    cells: torch.Tensor
    pbcs: torch.Tensor
    counts: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    offsets: torch.Tensor
    edge_counts: list[int]
    charges: list[float]
    energy: torch.Tensor
    forces: torch.Tensor | None
    stress: torch.Tensor | None
    dipole: torch.Tensor | None
    bec: torch.Tensor | None


class Prepared:
    """A frame with its neighbour list computed once (training positions do not move)."""

    def __init__(self, frame: Frame, model: LESModel, dtype: torch.dtype) -> None:
        self.frame = frame
        f = frame
        numbers = torch.from_numpy(f.numbers)
        self.species = model.species_indices(numbers)
        self.positions = torch.tensor(f.positions, dtype=dtype)
        self.cell = torch.tensor(f.cell, dtype=dtype)
        self.pbc = torch.tensor(f.pbc)
        edges = neighbor_list(self.positions, self.cell, self.pbc, model.cutoff)
        self.i, self.j = edges.i, edges.j
        self.offsets = edges.shifts @ self.cell
        self.volume = abs(float(np.linalg.det(f.cell))) if f.pbc.all() else None


def collate(items: list[Prepared], dtype: torch.dtype) -> Batch:
    """Concatenate prepared frames (atom indices shifted per frame)."""
    start = 0
    i, j = [], []
    for p in items:
        i.append(p.i + start)
        j.append(p.j + start)
        start += p.species.shape[0]

    def stack(name, shape=None):
        values = [getattr(p.frame, name) for p in items]
        if any(v is None for v in values):
            return None
        return torch.tensor(np.concatenate([np.asarray(v).reshape(-1, *(shape or ())) for v in values]), dtype=dtype)

    return Batch(
        species=torch.cat([p.species for p in items]),
        positions=torch.cat([p.positions for p in items]),
        cells=torch.stack([p.cell for p in items]),
        pbcs=torch.stack([p.pbc for p in items]),
        counts=torch.tensor([p.species.shape[0] for p in items]),
        i=torch.cat(i), j=torch.cat(j), offsets=torch.cat([p.offsets for p in items]),
        edge_counts=[int(p.i.shape[0]) for p in items],
        charges=[p.frame.charge for p in items],
        energy=torch.tensor([p.frame.energy for p in items], dtype=dtype),
        forces=stack("forces", (3,)), stress=stack("stress", (3, 3)), dipole=stack("dipole", (3,)),
        bec=stack("bec", (3, 3)),
    )  # fmt: skip


def predict(model: LESModel, batch: Batch, *, need_forces: bool, need_stress: bool, need_dipole: bool,
            need_bec: bool, create_graph: bool, epsilon_inf: float = 1.0) -> dict[str, torch.Tensor]:  # fmt: skip
    """Model predictions for a batch: energy (B,), forces (N,3), stress (B,3,3), dipole (B,3), bec (N,3,3)."""
    n_frames = batch.counts.shape[0]
    positions = batch.positions.clone().requires_grad_(need_forces or need_bec)
    strain = torch.zeros(n_frames, 3, 3, dtype=positions.dtype, requires_grad=need_stress)
    deform = torch.eye(3, dtype=positions.dtype) + 0.5 * (strain + strain.transpose(1, 2))
    frame_of_atom = torch.repeat_interleave(torch.arange(n_frames), batch.counts)
    frame_of_edge = torch.repeat_interleave(torch.arange(n_frames), torch.tensor(batch.edge_counts))
    if need_stress:
        pos = torch.bmm(positions.unsqueeze(1), deform[frame_of_atom]).squeeze(1)
        cells = torch.bmm(batch.cells, deform)
        offsets = torch.bmm(batch.offsets.unsqueeze(1), deform[frame_of_edge]).squeeze(1)
    else:
        pos, cells, offsets = positions, batch.cells, batch.offsets
    vectors = pos[batch.j] - pos[batch.i] + offsets
    out = model.forward_graph(batch.species, vectors, batch.i, batch.j, pos, cells, batch.pbcs, batch.counts,
                              batch.charges)  # fmt: skip
    result = {"energy": out["energy"], "charges": out["charges"]}
    inputs = ([positions] if need_forces else []) + ([strain] if need_stress else [])
    if inputs:
        grads = torch.autograd.grad(out["energy"].sum(), inputs, create_graph=create_graph, retain_graph=True)
        if need_forces:
            result["forces"] = -grads[0]
        if need_stress:
            volumes = torch.linalg.det(cells).abs()
            result["stress"] = grads[-1] / volumes.view(-1, 1, 1)
    if need_dipole or need_bec:
        scale = math.sqrt(epsilon_inf)
        per_atom = scale * out["charges"].unsqueeze(-1) * positions
        dipole = pos.new_zeros(n_frames, 3).index_add(0, frame_of_atom, per_atom)
        result["dipole"] = dipole
        if need_bec:
            rows = [torch.autograd.grad(dipole[:, a].sum(), positions, create_graph=create_graph, retain_graph=True)[0]
                    for a in range(3)]  # fmt: skip
            result["bec"] = torch.stack(rows, dim=1)  # (N, α, β)
    return result


def loss_terms(pred: dict, batch: Batch) -> dict[str, torch.Tensor]:
    """Mean-square errors: energy per atom (eV²), force, stress, dipole and BEC components."""
    terms = {"energy": (((pred["energy"] - batch.energy) / batch.counts.to(batch.energy.dtype)) ** 2).mean()}
    for name in ("forces", "stress", "dipole", "bec"):
        if name in pred and getattr(batch, name) is not None:
            terms[name] = ((pred[name] - getattr(batch, name)) ** 2).mean()
    return terms


class Trainer:
    """Runs a training: holds the model, its EMA copy, the optimiser, data and the best state so far."""

    def __init__(self, config: TrainConfig, frames: list[Frame] | None = None) -> None:
        self.config = c = config
        tune_allocator()
        if c.threads:
            torch.set_num_threads(c.threads)
        torch.manual_seed(c.seed)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[c.dtype]
        keys = Keys(energy=c.energy_key, forces=c.forces_key, stress=c.stress_key, dipole=c.dipole_key,
                    bec=c.bec_key)  # fmt: skip
        frames = frames if frames is not None else read_frames(c.data, keys)
        self.train_frames, self.valid_frames = split_frames(
            frames, valid_fraction=c.valid_fraction, valid_last=c.valid_last,
            seed=c.seed if c.split_seed is None else c.split_seed,
        )
        self.weights = {"energy": c.energy_weight, "forces": c.forces_weight if c.forces_key else 0.0,
                        "stress": c.stress_weight if c.stress_key else 0.0,
                        "dipole": c.dipole_weight if c.dipole_key else 0.0,
                        "bec": c.bec_weight if c.bec_key else 0.0}  # fmt: skip
        self.fingerprint = data_fingerprint(self.train_frames) + ":" + data_fingerprint(self.valid_frames)
        checkpoint = self._read_checkpoint() if c.resume else None
        if checkpoint is not None:
            self.model = model_from_dict(checkpoint["model"], str(c.checkpoint)).to(self.dtype)
        else:
            self.model = self._initial_model(self.train_frames).to(self.dtype)
        self.train = [Prepared(f, self.model, self.dtype) for f in self.train_frames]
        self.valid = [Prepared(f, self.model, self.dtype) for f in self.valid_frames]
        if checkpoint is None:
            self._fit_statistics()
        self.ema = copy.deepcopy(self.model)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.optimizer = self._optimizer()
        self.epoch = 0
        self.best_loss = math.inf
        self.best_state: dict | None = None
        self.best_metrics: dict = {}
        self.history: list[dict] = []
        self.bad_epochs = 0
        self.elapsed = 0.0
        self._start = time.perf_counter()
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)

    def _read_checkpoint(self) -> dict:
        """The checkpoint to resume, checked against this run: same architecture settings and same data."""
        c = self.config
        if not c.checkpoint or not Path(c.checkpoint).is_file():
            raise ValueError(f"--resume: checkpoint {c.checkpoint} not found (start a fresh run without --resume)")
        path = Path(c.checkpoint)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any failure means the file is not a usable checkpoint
            raise ValueError(f"{path} is not a readable lesmd checkpoint: {str(error).splitlines()[0]}") from None
        if not isinstance(state, dict) or state.get("format") != "lesmd-checkpoint":
            raise ValueError(f"{path} is not a lesmd training checkpoint")
        saved = state.get("config", {})
        changed = [f"{k}: checkpoint {saved.get(k)!r}, now {getattr(c, k)!r}" for k in ARCHITECTURE_FIELDS + DATA_FIELDS
                   if k in saved and saved.get(k) != getattr(c, k)]
        if changed:
            raise ValueError(f"--resume with other settings than the checkpoint {path} ({'; '.join(changed)}): "
                             "resume with the same flags, or start a fresh run")
        if state.get("data_fingerprint") not in (None, self.fingerprint):
            raise ValueError(f"--resume on other data than the checkpoint {path} was trained on (its best loss "
                             "would not compare): use the same data file, or start a fresh run")
        return state

    def _optimizer(self) -> torch.optim.Optimizer:
        """Adam; the latent-charge head in its own group, its learning rate scaled by ``charge_lr_scale``."""
        c = self.config
        head = [p for name, p in self.model.named_parameters() if name.startswith("charge_head.")]
        ids = {id(p) for p in head}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        groups = [{"params": rest, "lr_scale": 1.0}]
        if head:
            groups.append({"params": head, "lr_scale": float(c.charge_lr_scale), "charge": True})
        return torch.optim.Adam(groups, lr=c.lr, weight_decay=c.weight_decay)

    def _weights_now(self, step_fraction: float = 0.0) -> dict[str, float]:
        """Loss weights at this point of the run: the energy weight rises geometrically from
        ``energy_weight_start`` to ``energy_weight`` over the first ``energy_ramp`` of the run (staged weights:
        forces shape the potential first), then stays."""
        c = self.config
        if c.energy_weight_start is None:
            return self.weights
        t = min(self._progress(step_fraction) / max(c.energy_ramp, 1e-9), 1.0)
        start = max(float(c.energy_weight_start), 1e-12)
        return {**self.weights, "energy": start * (float(c.energy_weight) / start) ** t}

    def _initial_model(self, frames: list[Frame]) -> LESModel:
        c = self.config
        species = species_of(frames)
        short_range = MomentNetwork(species, cutoff=c.cutoff, n_basis=c.n_basis, n_channels=c.n_channels,
                                    l_max=c.l_max, hidden=c.hidden)  # fmt: skip
        les_options = {"accuracy": c.les_accuracy} if c.les_accuracy else None
        return LESModel(short_range, sigma=c.sigma, reference_energies=fit_reference_energies(frames, species),
                        charge_hidden=c.charge_hidden, use_les=c.use_les, les_options=les_options,
                        near_field_cutoff=float(c.near_field) if c.near_field else None)  # fmt: skip

    @torch.no_grad()
    def _fit_statistics(self) -> None:
        """Mean neighbour count, feature standardisation and energy scale from (up to 20) training frames."""
        sr = self.model.short_range
        sample = self.train[: min(20, len(self.train))]
        n_edges = sum(p.i.shape[0] for p in sample)
        n_atoms = sum(p.species.shape[0] for p in sample)
        sr.descriptor.avg_neighbors.fill_(max(n_edges / n_atoms, 1.0))
        feats = []
        for p in sample:
            vectors = p.positions[p.j] - p.positions[p.i] + p.offsets
            keep = (vectors**2).sum(-1) < sr.cutoff**2
            feats.append(sr.raw_features(p.species, vectors[keep], p.i[keep], p.j[keep]))
        feats = torch.cat(feats)
        sr.feature_mean.copy_(feats.mean(0))
        std = feats.std(0)
        sr.feature_std.copy_(torch.clamp(std, min=1e-3 * float(std.max()) + 1e-12))
        forces = [p.frame.forces for p in self.train if p.frame.forces is not None]
        if forces:
            rms = float(np.sqrt(np.mean(np.concatenate([f.reshape(-1) for f in forces]) ** 2)))
            sr.energy_scale.fill_(max(rms, 1e-3))

    def _batches(self, items: list[Prepared], shuffle: bool, generator: torch.Generator | None = None):
        order = torch.randperm(len(items), generator=generator).tolist() if shuffle else list(range(len(items)))
        size = self.config.batch_size
        for k in range(0, len(order), size):
            yield collate([items[o] for o in order[k : k + size]], self.dtype)

    def _needs(self, batch: Batch) -> dict:
        w = self.weights
        return {"need_forces": w["forces"] > 0 and batch.forces is not None,
                "need_stress": w["stress"] > 0 and batch.stress is not None,
                "need_dipole": w["dipole"] > 0 and batch.dipole is not None,
                "need_bec": w["bec"] > 0 and batch.bec is not None}  # fmt: skip

    def _loss(self, terms: dict, weights: dict | None = None) -> torch.Tensor:
        weights = self.weights if weights is None else weights
        return sum(weights[k] * v for k, v in terms.items() if weights.get(k, 0.0) > 0)

    def _progress(self, step_fraction: float = 0.0) -> float:
        """Fraction of the run done: epochs, or elapsed time when a time limit is set (whichever is further)."""
        c = self.config
        t = (self.epoch + step_fraction) / max(c.epochs, 1)
        if c.max_minutes:
            t = max(t, (time.perf_counter() - self._start) / (60.0 * c.max_minutes))
        return min(t, 1.0)

    def _lr(self, step_fraction: float = 0.0) -> float:
        """Cosine decay from ``lr`` to ``lr_min`` over the run (epochs or the time limit)."""
        c = self.config
        t = self._progress(step_fraction)
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * t))

    def train_epoch(self, generator: torch.Generator) -> float:
        """One pass over the training frames; returns the mean loss."""
        self.model.train()
        total, count = 0.0, 0
        decay = self.config.ema_decay
        n_batches = math.ceil(len(self.train) / self.config.batch_size)
        for batch in self._batches(self.train, True, generator):
            frozen = self._progress(count / n_batches) < self.config.charge_freeze
            for group in self.optimizer.param_groups:
                held = frozen and group.get("charge", False)  # the charge head waits for the short range
                group["lr"] = 0.0 if held else self._lr(count / n_batches) * group.get("lr_scale", 1.0)
            pred = predict(self.model, batch, create_graph=True, epsilon_inf=self.config.epsilon_inf,
                           **self._needs(batch))  # fmt: skip
            loss = self._loss(loss_terms(pred, batch), self._weights_now(count / n_batches))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
            self.optimizer.step()
            with torch.no_grad():
                for pe, pm in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    pe.mul_(decay).add_(pm, alpha=1 - decay)
            total += float(loss.detach())
            count += 1
        return total / max(count, 1)

    def evaluate(self, model: LESModel | None = None, items: list[Prepared] | None = None) -> dict[str, float]:
        """Validation metrics: loss, energy RMSE (meV/atom), force RMSE (meV/Å) and the other RMSEs."""
        model = model or self.ema
        items = self.valid if items is None else items
        model.eval()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        loss = 0.0
        for batch in self._batches(items, False):
            needs = self._needs(batch)
            needs["need_forces"] = batch.forces is not None
            pred = predict(model, batch, create_graph=False, epsilon_inf=self.config.epsilon_inf, **needs)
            terms = loss_terms({k: v.detach() for k, v in pred.items()}, batch)
            charges = pred["charges"].detach()
            sums["q2"] = sums.get("q2", 0.0) + float((charges * charges).sum())
            counts["q2"] = counts.get("q2", 0) + int(charges.numel())
            n = batch.counts.shape[0]
            loss += float(self._loss(terms)) * n
            for k, v in terms.items():
                weight = n
                sums[k] = sums.get(k, 0.0) + float(v) * weight
                counts[k] = counts.get(k, 0) + weight
        n_frames = max(len(items), 1)
        q_rms = math.sqrt(sums.pop("q2", 0.0) / max(counts.pop("q2", 1), 1))
        metrics = {"loss": loss / n_frames, "charge_rms_e": q_rms}
        units = {"energy": ("energy_rmse_mev_per_atom", 1e3), "forces": ("forces_rmse_mev_per_a", 1e3),
                 "stress": ("stress_rmse_mev_per_a3", 1e3), "dipole": ("dipole_rmse_e_a", 1.0),
                 "bec": ("bec_rmse_e", 1.0)}  # fmt: skip
        for k, total in sums.items():
            name, factor = units[k]
            metrics[name] = math.sqrt(total / counts[k]) * factor
        return metrics

    def provenance(self, metrics: dict) -> dict:
        c = self.config
        return {
            "training_data": str(c.data), "n_train": len(self.train), "n_valid": len(self.valid),
            "config": dict(vars(c)), "epochs_run": self.epoch, "validation": metrics,
            "argv": list(sys.argv),
            "lesmd_version": lesmd.__version__, "torch_version": str(torch.__version__),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "training_minutes": self.elapsed / 60.0, "training_cpu_minutes": time.process_time() / 60.0,
            "threads": torch.get_num_threads(),
        }  # fmt: skip

    def _save_checkpoint(self) -> None:
        c = self.config
        if not c.checkpoint:
            return
        state = {
            "format": "lesmd-checkpoint", "config": dict(vars(c)), "epoch": self.epoch,
            "model": model_to_dict(self.model), "ema": model_to_dict(self.ema),
            "optimizer": self.optimizer.state_dict(), "best_loss": self.best_loss,
            "best": self.best_state, "best_metrics": self.best_metrics, "history": self.history,
            "bad_epochs": self.bad_epochs, "elapsed": self.elapsed, "data_fingerprint": self.fingerprint,
        }  # fmt: skip
        tmp = Path(c.checkpoint).with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(c.checkpoint)

    def _load_checkpoint(self, state: dict) -> None:
        path = self.config.checkpoint
        self.ema = model_from_dict(state["ema"], str(path)).to(self.dtype)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.optimizer = self._optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.best_loss = state["best_loss"]
        self.best_state = state["best"]
        self.best_metrics = state["best_metrics"]
        self.history = state["history"]
        self.bad_epochs = state["bad_epochs"]
        self.elapsed = state["elapsed"]

    def _epoch_seconds(self) -> float:
        return self.elapsed / max(len(self.history), 1)

    def best_model(self) -> LESModel:
        """The EMA model of the best validation epoch (the current EMA model before any validation)."""
        if self.best_state is None:
            return self.ema
        return model_from_dict(self.best_state, "best model")

    def fit(self) -> dict[str, float]:
        """Train until ``epochs``, early stopping, the time limit, Ctrl-C or SIGTERM; save and return best metrics.

        SIGTERM (``kill``; a batch system's time limit) stops like Ctrl-C, and so does SIGINT in a background job
        (where the shell ignores it): the best model so far is written either way."""
        with _stop_on_signals():
            return self._fit()

    def _fit(self) -> dict[str, float]:
        c = self.config
        generator = torch.Generator().manual_seed(c.seed + self.epoch)
        bar = _progress(c.epochs, self.epoch, c.progress)
        start = time.perf_counter() - self.elapsed
        self._start = start
        try:
            while self.epoch < c.epochs:
                train_loss = self.train_epoch(generator)
                self.epoch += 1
                self.elapsed = time.perf_counter() - start
                metrics = self.evaluate()
                metrics.update(epoch=self.epoch, train_loss=train_loss, lr=self._lr(), minutes=self.elapsed / 60)
                self.history.append(metrics)
                if metrics["loss"] < self.best_loss:
                    self.best_loss = metrics["loss"]
                    self.best_state = model_to_dict(self.ema)
                    self.best_metrics = metrics
                    self.bad_epochs = 0
                else:
                    self.bad_epochs += 1
                self._save_checkpoint()
                bar.update(1)
                bar.set_postfix(_postfix(train_loss, metrics), refresh=False)
                if self.bad_epochs >= c.patience:
                    bar.write(f"early stopping: no improvement for {c.patience} epochs")
                    break
                if c.max_minutes is not None and self.elapsed > 60 * c.max_minutes - 0.5 * self._epoch_seconds():
                    bar.write(f"time limit of {c.max_minutes} min reached")
                    break
        except KeyboardInterrupt:
            bar.write("interrupted: keeping the best model so far")
        finally:
            bar.close()
        self.elapsed = time.perf_counter() - start
        best = self.best_model()
        best.les_options = {}  # the training accuracy setting is not part of the model
        save_model(best, c.output, provenance=self.provenance(self.best_metrics))
        return self.best_metrics


class _stop_on_signals:
    """Within the block, SIGTERM (and SIGINT even where a background shell ignored it) raise KeyboardInterrupt
    in the main thread; the previous handlers come back afterwards."""

    def __enter__(self):
        import signal
        import threading

        self.saved = {}
        if threading.current_thread() is not threading.main_thread():
            return self

        def stop(signum, frame):
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved[sig] = signal.getsignal(sig)
            if sig == signal.SIGTERM or self.saved[sig] == signal.SIG_IGN:
                signal.signal(sig, stop)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False


def _postfix(train_loss: float, metrics: dict) -> dict:
    out = {"train": f"{train_loss:.3g}", "val": f"{metrics['loss']:.3g}"}
    if "energy_rmse_mev_per_atom" in metrics:
        out["E"] = f"{metrics['energy_rmse_mev_per_atom']:.2f}meV/at"
    if "forces_rmse_mev_per_a" in metrics:
        out["F"] = f"{metrics['forces_rmse_mev_per_a']:.1f}meV/Å"
    if "charge_rms_e" in metrics:  # latent charges near 0 mean the long-range channel collapsed
        out["q"] = f"{metrics['charge_rms_e']:.3f}e"
    return out


def _progress(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="epochs", disable=not enabled, dynamic_ncols=True)


def train_model(config: TrainConfig, frames: list[Frame] | None = None) -> tuple[LESModel, dict[str, float]]:
    """Python API: train with ``config`` (optionally on already-read ``frames``); returns (best model, metrics)."""
    trainer = Trainer(config, frames)
    metrics = trainer.fit()
    return trainer.best_model(), metrics


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd train`."""
    d = TrainConfig()
    add = parser.add_argument
    add("data", help="training data (extxyz or any ASE-readable file) with energies and forces")
    add("-o", "--output", default=d.output, help="model file to write (default: %(default)s)")
    add("--energy-key", default=d.energy_key, help="energy label name (default: %(default)s)")
    add("--forces-key", default=d.forces_key, help="forces label name, e.g. 'force' (default: %(default)s)")
    add("--stress-key", default=None, help="stress label name (default: stress not used)")
    add("--dipole-key", default=None, help="dipole label (e·Å) for the optional dipole loss term")
    add("--bec-key", default=None, help="Born effective charge label for the optional BEC loss term")
    add("--valid-fraction", type=float, default=d.valid_fraction, help="random validation fraction")
    add("--valid-last", type=int, default=None, help="use the last K frames for validation instead")
    add("--cutoff", type=float, default=d.cutoff, help="short-range cutoff, Å (default: %(default)s)")
    add("--n-basis", type=int, default=d.n_basis, help="radial basis functions")
    add("--channels", type=int, default=d.n_channels, help="radial channels per angular order")
    add("--l-max", type=int, default=d.l_max, help="highest angular order (0-3)")
    add("--hidden", type=_int_list, default=d.hidden, help="readout MLP widths, e.g. 64,64")
    add("--charge-hidden", type=_int_list, default=d.charge_hidden, help="charge head MLP widths")
    add("--sigma", type=float, default=d.sigma, help="LES Gaussian width σ, Å")
    add("--near-field", type=float, default=d.near_field,
        help="r_n, Å: the short range takes over the latent charges' Coulomb energy within r_n (lesmd.les.near_field; "
             "0 = off)")
    add("--no-les", dest="use_les", action="store_false", help="short-range model only (no latent charges)")
    add("--les-accuracy", type=float, default=None, help="Ewald accuracy during training (not stored)")
    add("--energy-weight", type=float, default=d.energy_weight, help="final energy weight (default: %(default)s)")
    add("--energy-weight-start", type=float, default=None,
        help="staged loss: the energy weight rises geometrically from this to --energy-weight over the first "
             "--energy-ramp of the run (forces shape the potential first)")
    add("--energy-ramp", type=float, default=d.energy_ramp, help="fraction of the run of the energy ramp")
    add("--charge-lr-scale", type=float, default=d.charge_lr_scale, help="learning-rate factor of the charge head")
    add("--charge-freeze", type=float, default=d.charge_freeze,
        help="fraction of the run during which the charge head is held (0 = never)")
    add("--forces-weight", type=float, default=d.forces_weight)
    add("--stress-weight", type=float, default=d.stress_weight)
    add("--dipole-weight", type=float, default=d.dipole_weight, help="0 = off (default)")
    add("--bec-weight", type=float, default=d.bec_weight, help="0 = off (default)")
    add("--epsilon-inf", type=float, default=d.epsilon_inf, help="ε∞ scaling of dipoles/BECs in those terms")
    add("--epochs", type=int, default=d.epochs)
    add("--batch-size", type=int, default=d.batch_size, help="structures per optimiser step")
    add("--lr", type=float, default=d.lr, help="initial learning rate (cosine schedule)")
    add("--lr-min", type=float, default=d.lr_min, help="final learning rate")
    add("--ema-decay", type=float, default=d.ema_decay, help="EMA decay of the weights (0 = no EMA)")
    add("--patience", type=int, default=d.patience, help="early stopping patience, epochs")
    add("--max-minutes", type=float, default=None, help="stop after this many minutes")
    add("--seed", type=int, default=d.seed)
    add("--seeds", type=_int_list, default=None,
        help="train one model per seed (e.g. 0,1,2; --max-minutes is shared between them) and keep the one with "
             "the lowest validation loss as -o (the others as OUTPUT.seedK.pt)")
    add("--dtype", choices=["float32", "float64"], default=d.dtype)
    add("--threads", type=int, default=None, help="torch CPU threads")
    add("--checkpoint", default=None, help="checkpoint file written every epoch (default: OUTPUT.ckpt)")
    add("--resume", action="store_true", help="continue from the checkpoint (same flags and data)")
    add("--overwrite", action="store_true", help="a fresh run may replace an existing -o model and checkpoint")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add("--report", default=None, help="write the final metrics as JSON to this file")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed `lesmd train` arguments."""
    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["n_channels"] = args.channels
    if values.get("checkpoint") is None:
        values["checkpoint"] = str(args.output) + ".ckpt"
    return TrainConfig(**values)


def train_seeds(config: TrainConfig, seeds: list[int], frames: list[Frame] | None = None) -> tuple[int, dict]:
    """Train one model per seed (``max_minutes`` split evenly), each saved as OUTPUT.seedK.pt with its
    checkpoint; the one with the lowest validation loss is copied to OUTPUT. Returns (best seed, its metrics).

    The validation split is the same for every seed (``valid_last``, or ``valid_fraction`` drawn with
    ``split_seed``, default ``seed``), so the losses compare."""
    import shutil

    if not seeds:
        raise ValueError("--seeds needs at least one seed")
    out = Path(config.output)
    results: dict[int, dict] = {}
    base = dict(vars(config))
    split_seed = config.seed if config.split_seed is None else config.split_seed
    for seed in seeds:
        path = out.with_name(f"{out.stem}.seed{seed}{out.suffix}")
        minutes = None if config.max_minutes is None else config.max_minutes / len(seeds)
        c = TrainConfig(**{**base, "seed": seed, "split_seed": split_seed, "output": str(path),
                           "checkpoint": str(path) + ".ckpt", "max_minutes": minutes})
        trainer = Trainer(c, frames)
        results[seed] = trainer.fit()
        print(f"seed {seed}: validation loss {results[seed]['loss']:.4g}, "
              f"forces {results[seed].get('forces_rmse_mev_per_a', float('nan')):.2f} meV/Å", flush=True)
    best = min(results, key=lambda k: results[k]["loss"])
    best_path = out.with_name(f"{out.stem}.seed{best}{out.suffix}")
    tmp = out.with_name(out.name + ".tmp")
    shutil.copyfile(best_path, tmp)
    tmp.replace(out)
    return best, results[best]


def run_cli(args: argparse.Namespace) -> int:
    """`lesmd train`: train, save, print the validation report."""
    config = config_from_args(args)
    check_outputs(config)
    if getattr(args, "seeds", None):
        start = time.perf_counter()
        best, metrics = train_seeds(config, args.seeds)
        print(f"best of seeds {args.seeds}: seed {best}")
        print(format_report(metrics, time.perf_counter() - start, config.output))
        if getattr(args, "report", None):
            Path(args.report).write_text(json.dumps({**metrics, "seed": best}, indent=2))
        return 0
    trainer = Trainer(config)
    print(f"training on {len(trainer.train)} frames, validating on {len(trainer.valid)}; "
          f"species {trainer.model.species}; reference energies {trainer.model.reference_energy_dict()}")  # fmt: skip
    metrics = trainer.fit()
    print(format_report(metrics, trainer.elapsed, config.output))
    if getattr(args, "report", None):
        Path(args.report).write_text(json.dumps({**metrics, "minutes": trainer.elapsed / 60}, indent=2))
    return 0


def format_report(metrics: dict, seconds: float, output: str) -> str:
    """Final one-paragraph report of a training run."""
    lines = [f"saved {output} (best epoch {metrics.get('epoch', '?')}, {seconds / 60:.1f} min)"]
    if "energy_rmse_mev_per_atom" in metrics:
        lines.append(f"validation energy RMSE: {metrics['energy_rmse_mev_per_atom']:.3f} meV/atom")
    if "forces_rmse_mev_per_a" in metrics:
        lines.append(f"validation force RMSE: {metrics['forces_rmse_mev_per_a']:.2f} meV/Å")
    if "charge_rms_e" in metrics:
        lines.append(f"validation rms latent charge: {metrics['charge_rms_e']:.4f} e")
    for key in ("stress_rmse_mev_per_a3", "dipole_rmse_e_a", "bec_rmse_e"):
        if key in metrics:
            lines.append(f"validation {key}: {metrics[key]:.4g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m lesmd.train``."""
    parser = argparse.ArgumentParser(prog="lesmd train", description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["TrainConfig", "Trainer", "train_model", "add_cli_arguments", "run_cli", "build_model"]
