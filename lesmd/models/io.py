"""Model files: one file holding the weights and every piece of metadata, loaded without running code.

Format (``format = "lesmd-model"``, ``format_version = 1``): a ``torch.save`` of a plain dict whose values are
tensors and plain Python types only (str, int, float, bool, None, list, dict):

    format, format_version, lesmd_version, units {"energy": "eV", "length": "Å", "charge": "e"},
    species [Z...], cutoff (Å), sigma (Å), reference_energies {"Z": eV}, dtype,
    architecture {short_range_type, short_range {hyper-parameters}, sigma, charge_hidden, use_les, ...},
    provenance {training data, command, metrics, date...}, state_dict {name: tensor},
    content_hash "sha256:…" (version 2: over every other entry, :func:`content_hash`)

Integrity: the hash is checked on load, so a file whose bytes, species order, weights or metadata were changed
after saving is refused (version-1 files, which have no hash, load with a warning). Every metadata field is
checked for its type and range (species, cutoff ≤ ``MAX_CUTOFF``, σ, Ewald options, dtype), the weights for
their dtype (floating point), finiteness and size (≤ ``MAX_WEIGHT``).

Loading uses ``torch.load(path, weights_only=True)``, whose restricted unpickler refuses any object other than
tensors and plain containers, so a crafted file cannot execute code; the short-range class is looked up by name
in :mod:`lesmd.models.shortrange`'s registry. Missing, corrupt, truncated, foreign or newer-version files raise a
one-line ``ValueError`` (``FileNotFoundError`` for a missing path).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import torch

import lesmd
from lesmd.models.les import LESModel
from lesmd.models.shortrange import short_range_class

FORMAT = "lesmd-model"
FORMAT_VERSION = 2
#: metadata of a model file nested deeper than this is refused (a crafted file must not hang the reader)
MAX_METADATA_DEPTH = 32
#: Å; a model whose cutoff exceeds this is refused (neighbour lists would grow without bound)
MAX_CUTOFF = 20.0
#: largest |weight| accepted in a model file (trained weights are O(1); 1e30 would overflow float32 products)
MAX_WEIGHT = 1e6
UNITS = {"energy": "eV", "length": "Å", "charge": "e"}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


#: models shipped inside the package, by name: (file in lesmd/pretrained, one-line description)
SHIPPED_MODELS: dict[str, tuple[str, str]] = {
    "water": ("water_les.pt", "liquid water, RPBE-D3, periodic (the default model; stable in MD)"),
    "water-nearfield": ("water_nearfield_les.pt", "liquid water, RPBE-D3, retrained with the near-field "
                        "recipe: more accurate, but not stable in long NVE (see docs/models.md)"),
    "dipeptides": ("dipeptides_les.pt", "polar dipeptides (H C N O), ωB97M-D3(BJ) SPICE, open boundaries; single "
                   "points and dipoles (not stable in MD beyond ~0.1 ps at 300 K, see docs/models.md)"),
}


def default_model_path() -> Path:
    """Path of the embedded default water model (``lesmd/pretrained/water_les.pt``)."""
    return shipped_model_path("water")


def shipped_model_path(name: str) -> Path:
    """Path of the shipped model ``name`` (see :data:`SHIPPED_MODELS`); ValueError naming the known ones."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"unknown shipped model {name!r}; shipped: {', '.join(SHIPPED_MODELS)} (or give a file path)")
    return Path(__file__).resolve().parents[1] / "pretrained" / SHIPPED_MODELS[name][0]


def resolve_model_path(model: str | Path | None) -> Path:
    """A model argument → file path: None is the default model, a shipped model's name (``"water"``,
    ``"dipeptides"``) its file in the package, anything else a path."""
    if model is None:
        return default_model_path()
    if isinstance(model, str) and model in SHIPPED_MODELS and not Path(model).exists():
        return shipped_model_path(model)
    return Path(model)


def list_shipped_models() -> str:
    """One line per shipped model: name, file, description and validation figures from its metadata."""
    lines = []
    for name, (file, text) in SHIPPED_MODELS.items():
        path = shipped_model_path(name)
        if not path.is_file():
            lines.append(f"{name:<11} {file:<18} {text} [missing from this installation]")
            continue
        validation = read_model_file(path).get("provenance", {}).get("validation", {})
        figures = ", ".join(f"{label} {validation[key]:.3g}" for key, label in (
            ("energy_rmse_mev_per_atom", "E meV/atom"), ("forces_rmse_mev_per_a", "F meV/Å")) if key in validation)
        lines.append(f"{name:<11} {file:<18} {text}" + (f" (held-out: {figures})" if figures else ""))
    return "\n".join(lines)


def build_model(architecture: dict) -> LESModel:
    """A freshly initialised :class:`LESModel` from an ``architecture`` dict (see :meth:`LESModel.architecture`)."""
    cls = short_range_class(architecture["short_range_type"])
    short_range = cls(**architecture["short_range"])
    return LESModel(
        short_range, sigma=architecture["sigma"], charge_hidden=architecture["charge_hidden"],
        use_les=architecture["use_les"], charge_descriptor=architecture.get("charge_descriptor"),
        les_options=architecture.get("les_options"), core_repulsion=architecture.get("core_repulsion"),
        charge_bound=architecture.get("charge_bound"), data_walls=architecture.get("data_walls"),
        near_field_cutoff=architecture.get("near_field_cutoff"),
    )  # fmt: skip


def content_hash(data: dict) -> str:
    """"sha256:<hex>" over every entry of a model-file dict except ``content_hash``: the metadata as canonical
    JSON, then each tensor's name, dtype, shape and bytes in name order."""
    digest = hashlib.sha256()
    meta = {k: v for k, v in data.items() if k not in ("state_dict", "content_hash")}
    digest.update(json.dumps(meta, sort_keys=True, default=str, ensure_ascii=True).encode())
    for name in sorted(data["state_dict"]):
        tensor = data["state_dict"][name]
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def model_to_dict(model: LESModel, provenance: dict | None = None) -> dict:
    """The plain dict written to a model file (with its :func:`content_hash`)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    dtype = next(iter(state.values())).dtype
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lesmd_version": lesmd.__version__,
        "units": dict(UNITS),
        "species": list(model.species),
        "cutoff": float(model.cutoff),
        "sigma": float(model.sigma),
        "reference_energies": {str(z): e for z, e in model.reference_energy_dict().items()},
        "dtype": str(dtype).replace("torch.", ""),
        "architecture": model.architecture(),
        "provenance": _plain(dict(provenance or {})),
        "state_dict": state,
    }
    data["content_hash"] = content_hash(data)
    return data


def _plain(value):
    """Provenance reduced to JSON-like plain values (anything else becomes its string), so the file stays
    loadable with ``weights_only=True``."""
    return json.loads(json.dumps(value, default=str))


def save_model(model: LESModel, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``model`` (weights + metadata + ``provenance``) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(model_to_dict(model, provenance), tmp)
    tmp.replace(path)
    return path


def _load_error_detail(text: str) -> str:
    """The informative line of a torch.load error: after torch's weights-only preamble ("Weights only load
    failed…") the unpickler's own reason, e.g. "Unsupported operand 110"; else the first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for k, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            reason = line.split("WeightsUnpickler error:", 1)[-1].strip()
            return reason or (lines[k + 1] if k + 1 < len(lines) else line)
    return lines[0] if lines else ""


def read_model_file(path: str | Path) -> dict:
    """The validated dict of a model file (safe: no code runs). ValueError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises several types; all mean "not loadable"
        text = str(error)
        if "GLOBAL" in text or "Unsupported global" in text:  # a pickled class or function: code would run
            raise ValueError(
                f"{path} is not a safe lesmd model file: it contains Python objects beyond tensors and plain "
                "values (refused without running them)"
            ) from None
        first = _load_error_detail(text) or type(error).__name__
        raise ValueError(f"{path} is not a readable lesmd model file (corrupt or truncated?): {first}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a lesmd model file (no 'format: {FORMAT}' entry)")
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{path} has model format version {version!r}; this lesmd ({lesmd.__version__}) reads version "
            f"{FORMAT_VERSION}: upgrade lesmd or re-save the model"
        )
    for key in ("architecture", "state_dict", "species"):
        if key not in data:
            raise ValueError(f"{path} is an incomplete lesmd model file: missing '{key}'")
    depth = _depth(data)
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"{path}: metadata nested {depth} levels deep (limit {MAX_METADATA_DEPTH}): not a lesmd model")
    if not isinstance(data["state_dict"], dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data["state_dict"].items()
    ):
        raise ValueError(f"{path}: 'state_dict' must map parameter names to tensors")
    if version >= 2:
        stored = data.get("content_hash")
        if not isinstance(stored, str):
            raise ValueError(f"{path}: the content hash is missing (format version {version} requires one)")
        if stored != content_hash(data):
            raise ValueError(f"{path}: content hash mismatch: the file was changed or corrupted after it was saved "
                             "(weights, species order or metadata); use the original file or re-save the model")
    else:
        warnings.warn(f"{path}: format version 1 has no content hash, its integrity cannot be checked; re-save it "
                      "with save_model", stacklevel=3)
    _check_metadata(data, str(path))
    return data


def _depth(value, limit: int = MAX_METADATA_DEPTH + 1) -> int:
    """Nesting depth of dicts/lists/tuples (iterative, stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def _finite_number(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and low <= value <= high


def _check_metadata(data: dict, source: str) -> None:
    """ValueError naming the first metadata field of a model file with a wrong type or an out-of-range value."""
    species = data["species"]
    if not (isinstance(species, list) and species and all(isinstance(z, int) and not isinstance(z, bool)
                                                         and 1 <= z <= 118 for z in species)):
        raise ValueError(f"{source}: 'species' must be a non-empty list of atomic numbers 1-118, got {species!r}")
    if len(set(species)) != len(species):
        raise ValueError(f"{source}: 'species' lists an element twice: {species}")
    arch = data["architecture"]
    if not isinstance(arch, dict) or not isinstance(arch.get("short_range"), dict):
        raise ValueError(f"{source}: 'architecture' must be a dict with a 'short_range' dict")
    if arch["short_range"].get("species") not in (None, species):
        raise ValueError(f"{source}: the architecture's species {arch['short_range'].get('species')} differ from "
                         f"the file's species {species}")
    for name, value in (("cutoff", data.get("cutoff")), ("short_range cutoff", arch["short_range"].get("cutoff"))):
        if value is not None and not _finite_number(value, 1e-3, MAX_CUTOFF):
            raise ValueError(f"{source}: {name} must be a number in (0, {MAX_CUTOFF}] Å, got {value!r}")
    descriptor = arch.get("charge_descriptor")
    if isinstance(descriptor, dict) and not _finite_number(descriptor.get("cutoff", 1.0), 1e-3, MAX_CUTOFF):
        raise ValueError(f"{source}: charge descriptor cutoff must be in (0, {MAX_CUTOFF}] Å")
    for name, value in (("sigma", data.get("sigma")), ("architecture sigma", arch.get("sigma"))):
        if value is not None and not _finite_number(value, 1e-3, 10.0):
            raise ValueError(f"{source}: {name} must be a number in (0, 10] Å, got {value!r}")
    options = arch.get("les_options") or {}
    if not isinstance(options, dict) or not set(options) <= {"accuracy", "method"}:
        raise ValueError(f"{source}: les_options may hold 'accuracy' and 'method' only, got {options!r}")
    if "accuracy" in options and not _finite_number(options["accuracy"], 1e-14, 1e-2):
        raise ValueError(f"{source}: Ewald accuracy must be a number in [1e-14, 1e-2], got {options['accuracy']!r}")
    if options.get("method", "auto") not in ("auto", "direct", "mesh"):
        raise ValueError(f"{source}: les_options method must be auto, direct or mesh, got {options['method']!r}")
    if data.get("dtype", "float32") not in _DTYPES:
        raise ValueError(f"{source}: dtype must be float32 or float64, got {data.get('dtype')!r}")
    refs = data.get("reference_energies", {})
    if not isinstance(refs, dict) or any(not _finite_number(e, -1e7, 1e7) for e in refs.values()):
        raise ValueError(f"{source}: reference_energies must map elements to finite energies (eV)")
    for name, tensor in data["state_dict"].items():
        if not tensor.is_floating_point() and not name.endswith(("species_index",)):
            raise ValueError(f"{source}: parameter {name} has dtype {tensor.dtype}; model weights are floating point")
        if tensor.is_floating_point():
            if not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{source}: parameter {name} contains NaN or infinite values")
            if tensor.numel() and float(tensor.abs().max()) > MAX_WEIGHT:
                raise ValueError(f"{source}: parameter {name} holds |values| up to {float(tensor.abs().max()):.3g} "
                                 f"(> {MAX_WEIGHT:g}): not trained weights")


def model_from_dict(data: dict, source: str = "model") -> LESModel:
    """Rebuild an :class:`LESModel` from the dict of a model file."""
    try:
        model = build_model(data["architecture"])
        model.to(_DTYPES.get(data.get("dtype", "float32"), torch.float32))
        model.load_state_dict(data["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{source}: weights do not match the stored architecture: {first}") from None
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{source}: parameter {name} contains NaN or infinite values")
    model.provenance = data.get("provenance", {})
    return model


def load_model(
    path: str | Path | None = None, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> LESModel:
    """Load a model file safely (``path=None``: the embedded default water model).

    Args:
        path: model file, or the name of a shipped model (:data:`SHIPPED_MODELS`: "water", "dipeptides").
        dtype: torch.float32 or torch.float64 (default: the stored one).
        device: torch device.

    Returns:
        The :class:`LESModel` in eval mode with ``model.provenance`` holding the training provenance.
    """
    path = resolve_model_path(path)
    model = model_from_dict(read_model_file(path), str(path))
    if dtype is not None:
        model.to(dtype)
    return model.to(device).eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(math.prod(p.shape) for p in model.parameters() if p.requires_grad)


def describe_model(path: str | Path | None = None) -> str:
    """Human-readable summary of a model file (``None``: the embedded default): species, cutoff, σ, reference
    energies, architecture, validation metrics and provenance. Reads the file safely."""
    from ase.data import chemical_symbols

    path = resolve_model_path(path)
    data = read_model_file(path)
    arch = data["architecture"]
    prov = data.get("provenance", {})
    n_params = sum(v.numel() for k, v in data["state_dict"].items() if v.is_floating_point())
    refs = ", ".join(f"{chemical_symbols[int(z)]} {e:.6f}" for z, e in data.get("reference_energies", {}).items())
    lines = [
        f"model file: {path}",
        f"format: {data['format']} v{data['format_version']} (lesmd {data.get('lesmd_version')}), "
        f"dtype {data.get('dtype')}",
        f"species: {' '.join(chemical_symbols[z] for z in data['species'])}",
        f"cutoff: {data.get('cutoff')} Å, LES σ: {data.get('sigma')} Å, long range: {arch.get('use_les')}",
        f"reference energies (eV): {refs}",
        f"short range: {arch['short_range_type']} {arch['short_range']}",
        f"weights: {n_params} numbers",
    ]
    for key, label in (("core_repulsion", "core repulsion (ZBL) cutoffs, Å"), ("data_walls", "data walls"),
                       ("charge_bound", "latent-charge bound, e")):
        if arch.get(key):
            lines.append(f"{label}: {arch[key]}")
    if prov.get("validation"):
        v = prov["validation"]
        parts = [f"{k} {v[k]:.4g}" for k in ("energy_rmse_mev_per_atom", "forces_rmse_mev_per_a") if k in v]
        lines.append("validation: " + ", ".join(parts))
    for key in ("training_data", "argv", "date", "training_minutes"):
        if prov.get(key) is not None:
            lines.append(f"{key}: {prov[key]}")
    return "\n".join(lines)
