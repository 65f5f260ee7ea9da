"""Model files: round trip, safe loading (no code execution), clear errors for bad files."""

import os
import pickle
import zipfile

import ase.build
import pytest
import torch

from lesmd.models.io import (
    FORMAT_VERSION,
    content_hash,
    describe_model,
    load_model,
    model_to_dict,
    save_model,
)
from lesmd.models.les import LESModel
from lesmd.models.shortrange import MomentNetwork, PairNetwork


def _model() -> LESModel:
    torch.manual_seed(3)
    sr = MomentNetwork([1, 8], cutoff=3.5, n_channels=4, l_max=2, hidden=[8])
    model = LESModel(sr, sigma=0.9, reference_energies={1: -13.6, 8: -432.1})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _water_inputs(dtype=torch.float32):
    atoms = ase.build.molecule("H2O")
    return (torch.tensor(atoms.numbers), torch.tensor(atoms.positions, dtype=dtype),
            torch.zeros(3, 3, dtype=dtype), torch.tensor([False] * 3))  # fmt: skip


def test_save_load_round_trip_gives_identical_outputs_and_metadata(tmp_path):
    model = _model()
    path = save_model(model, tmp_path / "m.pt", provenance={"training_data": "x.xyz", "note": "test"})
    loaded = load_model(path)
    model.eval()  # load_model returns eval mode (C kernels); compare like with like, bit for bit
    a, b = model(*_water_inputs()), loaded(*_water_inputs())
    for key in ("energy", "energy_sr", "energy_lr", "charges"):
        assert torch.equal(a[key], b[key]), key
    assert loaded.species == [1, 8] and loaded.sigma == 0.9 and loaded.cutoff == 3.5
    assert loaded.reference_energy_dict() == pytest.approx({1: -13.6, 8: -432.1})
    assert loaded.provenance["note"] == "test"
    raw = torch.load(path, weights_only=True)
    assert raw["units"] == {"energy": "eV", "length": "Å", "charge": "e"}
    assert raw["format_version"] == FORMAT_VERSION and "lesmd_version" in raw
    assert "n_channels" in raw["architecture"]["short_range"]
    text = describe_model(path)
    assert "species: H O" in text and "x.xyz" in text


def test_loading_as_float64_changes_dtype_not_values(tmp_path):
    model = _model()
    path = save_model(model, tmp_path / "m.pt")
    loaded = load_model(path, dtype=torch.float64)
    e64 = loaded(*_water_inputs(torch.float64))["energy"]
    assert e64.dtype == torch.float64
    assert float(e64) == pytest.approx(float(model(*_water_inputs())["energy"]), rel=1e-5)


def test_wrapped_second_model_round_trips_through_the_registry(tmp_path):
    torch.manual_seed(0)
    model = LESModel(PairNetwork([1, 8], cutoff=3.0), charge_descriptor={"cutoff": 2.5, "n_channels": 4})
    path = save_model(model, tmp_path / "pair.pt")
    loaded = load_model(path)
    assert isinstance(loaded.short_range, PairNetwork)
    model.eval()  # as loaded models are: the same (C) descriptor kernel, so bit-identical results
    assert torch.equal(model(*_water_inputs())["energy"], loaded(*_water_inputs())["energy"])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("LESMD_EXPLOIT_MARKER", "/tmp/lesmd_exploit_marker"),))


def test_malicious_pickle_is_refused_without_running_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LESMD_EXPLOIT_MARKER", str(marker))
    data = model_to_dict(_model())
    data["provenance"] = {"payload": _Exploit()}
    path = tmp_path / "evil.pt"
    torch.save(data, path)
    with pytest.raises(ValueError, match="not a safe lesmd model file"):
        load_model(path)
    assert not marker.exists(), "loading executed code from the file"
    # the same payload with plain pickle would have run: the test payload is real
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(_Exploit(), f)
    with open(tmp_path / "evil.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_truncated_file_gives_one_line_error(tmp_path):
    path = save_model(_model(), tmp_path / "m.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated") as info:
        load_model(tmp_path / "cut.pt")
    assert "\n" not in str(info.value)


def test_non_model_files_are_rejected(tmp_path):
    (tmp_path / "text.pt").write_text("hello, I am not a model\n")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_model(tmp_path / "text.pt")
    (tmp_path / "bytes.pt").write_bytes(b"not a model")  # a byte the unpickler rejects: corrupt, not "unsafe"
    with pytest.raises(ValueError, match="corrupt or truncated") as info:
        load_model(tmp_path / "bytes.pt")
    assert "Unsupported operand" in str(info.value) and "\n" not in str(info.value)  # the reason, not the preamble
    torch.save({"weights": torch.zeros(3)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="not a lesmd model file"):
        load_model(tmp_path / "dict.pt")
    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as z:
        z.writestr("data.txt", "x")
    with pytest.raises(ValueError):
        load_model(tmp_path / "zip.pt")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing.pt")


def test_incompatible_format_version_is_named(tmp_path):
    data = model_to_dict(_model())
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}"):
        load_model(tmp_path / "future.pt")


def test_weights_that_do_not_match_the_architecture_are_reported(tmp_path):
    data = model_to_dict(_model())
    data["architecture"]["short_range"]["n_channels"] = 7
    data["content_hash"] = content_hash(data)  # a consistent file written by other means
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="weights do not match"):
        load_model(tmp_path / "mismatch.pt")
    data = model_to_dict(_model())
    data["architecture"]["short_range_type"] = "no_such_model"
    data["content_hash"] = content_hash(data)
    torch.save(data, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="unknown short-range model type"):
        load_model(tmp_path / "unknown.pt")


def _edited(tmp_path, name, edit, rehash=False):
    data = model_to_dict(_model())
    edit(data)
    if rehash:  # a file edited and re-hashed: the field checks must still name the problem
        data["content_hash"] = content_hash(data)
    torch.save(data, tmp_path / name)
    return tmp_path / name


def _swap_species(data):
    data["species"] = data["species"][::-1]
    data["architecture"]["short_range"]["species"] = data["species"]


def _scale_weight(value):
    def edit(data):
        key = next(k for k, v in data["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
        data["state_dict"][key] = data["state_dict"][key] * 0 + value
    return edit


def _integer_weight(data):
    key = next(k for k, v in data["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    data["state_dict"][key] = data["state_dict"][key].round().long()


def _accuracy(data):
    data["architecture"]["les_options"] = {"accuracy": 0.9}


def _cutoff(data):
    data["architecture"]["short_range"]["cutoff"] = 1e6
    data["cutoff"] = 1e6


@pytest.mark.parametrize("edit", [_swap_species, _scale_weight(float("nan")), _scale_weight(1e30), _integer_weight,
                                  _accuracy, _cutoff], ids=["species", "nan", "1e30", "int", "accuracy", "cutoff"])
def test_edited_model_file_is_refused_by_its_content_hash(tmp_path, edit):
    path = _edited(tmp_path, "edited.pt", edit)
    with pytest.raises(ValueError, match="content hash mismatch") as info:
        load_model(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("edit", "message"), [
    (_swap_species, None), (_scale_weight(float("nan")), "NaN"), (_scale_weight(1e30), "not trained weights"),
    (_integer_weight, "floating point"), (_accuracy, "Ewald accuracy"), (_cutoff, "cutoff must be"),
], ids=["species", "nan", "1e30", "int", "accuracy", "cutoff"])
def test_rehashed_bad_fields_are_named(tmp_path, edit, message):
    path = _edited(tmp_path, "edited.pt", edit, rehash=True)
    if message is None:  # a consistent species swap is a different model, not a corrupt file: it loads
        assert load_model(path).species == [8, 1]
        return
    with pytest.raises(ValueError, match=message):
        load_model(path)


def test_flipped_bytes_never_load_silently(tmp_path):
    path = save_model(_model(), tmp_path / "m.pt")
    original = path.read_bytes()
    rng = __import__("random").Random(0)
    refused = 0
    for trial in range(30):
        data = bytearray(original)
        k = rng.randrange(len(data) // 4, len(data))  # in the tensors' storage and the metadata
        data[k] ^= 1 << rng.randrange(8)
        bad = tmp_path / f"flip{trial}.pt"
        bad.write_bytes(bytes(data))
        try:
            loaded = load_model(bad)
        except ValueError:
            refused += 1
            continue
        # the flip hit bytes that do not matter (e.g. zip padding): the model must then be unchanged
        reference = load_model(path)
        for a, b in zip(reference.state_dict().values(), loaded.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert refused >= 20


def test_deeply_nested_metadata_is_refused_quickly(tmp_path):
    nested = {}
    for _ in range(10_000):
        nested = {"x": nested}
    path = tmp_path / "deep.pt"
    data = model_to_dict(_model())
    data["provenance"] = nested
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50_000))  # torch.save itself recurses
    try:
        torch.save(data, path)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ValueError, match="nested"):
        load_model(path)
    with pytest.raises(ValueError, match="nested"):
        describe_model(path)
