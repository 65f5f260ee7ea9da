"""Electrode TOML config: parsing, defaults, and one-line errors for bad input."""

import numpy as np
import pytest

from lesmd.electrode import ElectrodeCalculator, config_from_dict, load_config

GOOD = """
boundary = "finite_field"
solver = "cg"
electrolyte_width = 0.0

[[electrode]]
name = "bottom"
indices = "0:4"
potential = -0.5

[[electrode]]
name = "top"
indices = [4, 5, 6, 7]
potential = 0.5
eta = 2.0

[lennard_jones]
cutoff = 6.0
Au = { epsilon = 0.2, sigma = 2.6 }
O = { epsilon = 0.008, sigma = 3.2 }
pairs = { "Au-H" = { epsilon = 0.001, sigma = 2.0 } }
"""


def test_config_file_is_parsed(tmp_path):
    path = tmp_path / "electrode.toml"
    path.write_text(GOOD)
    cfg = load_config(path)
    assert cfg.boundary == "finite_field" and cfg.solver == "cg" and cfg.electrolyte_width == 0.0
    assert np.array_equal(cfg.electrodes[0].indices, [0, 1, 2, 3])
    assert np.array_equal(cfg.electrodes[1].indices, [4, 5, 6, 7])
    assert cfg.electrodes[0].eta == 1.979 and cfg.electrodes[1].eta == 2.0
    assert abs(cfg.electrodes[1].width - 1.0 / (2.0 * np.sqrt(2.0))) < 1e-15
    eps, sig = cfg.lennard_jones.pair(79, 8)  # Lorentz–Berthelot
    assert abs(eps - np.sqrt(0.2 * 0.008)) < 1e-15 and abs(sig - 2.9) < 1e-15
    assert cfg.lennard_jones.pair(79, 1) == (0.001, 2.0)  # explicit pair
    assert cfg.lennard_jones.pair(79, 6) == (0.0, 0.0)  # unknown element: no interaction


@pytest.mark.parametrize(
    "data, message",
    [
        ({"electrode": []}, "at least one"),
        ({"electrode": [{"indices": [0], "potential": 0.0, "charge": 0.0}]}, "exactly one of 'potential'"),
        ({"electrode": [{"indices": [0], "potential": 0.0, "eta": -1.0}]}, "eta must be positive"),
        ({"electrode": [{"indices": [0, 0], "potential": 0.0}]}, "repeated atom index"),
        ({"electrode": [{"indices": [0], "potential": 0.0}, {"indices": [0], "potential": 1.0}]}, "two electrodes"),
        ({"electrode": [{"indices": "zero:3", "potential": 0.0}]}, "start:stop"),
        ({"boundary": "wall", "electrode": [{"indices": [0], "potential": 0.0}]}, "boundary must be"),
        ({"potential": 1.0, "electrode": [{"indices": [0], "potential": 0.0}]}, "unknown keys"),
        ({"boundary": "finite_field", "electrode": [{"indices": [0], "potential": 0.0}]}, "exactly two"),
        ({"electrode": [{"indices": [0], "potential": 0.0}], "lennard_jones": {"Xx": {"epsilon": 1, "sigma": 1}}},
         "unknown element"),
    ],
)
def test_bad_config_raises_one_line_value_error(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(data)


def test_invalid_toml_and_missing_file_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("boundary = \n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(bad)


def test_tag_selected_electrodes_are_resolved_by_the_ase_calculator():
    from ase import Atoms

    from lesmd.models.analytic import FixedChargeModel

    cfg = config_from_dict({"boundary": "finite_field", "electrolyte_width": 0.0,
                            "electrode": [{"tag": 1, "potential": 0.0}, {"tag": 2, "potential": 1.0}]})
    atoms = Atoms("Au2", positions=[[0, 0, 2.0], [0, 0, 8.0]], cell=[6.0, 6.0, 10.0], pbc=True, tags=[1, 2])
    atoms.calc = ElectrodeCalculator(cfg, model=FixedChargeModel([]))
    atoms.get_potential_energy()
    assert np.array_equal(cfg.electrodes[0].indices, [0]) and np.array_equal(cfg.electrodes[1].indices, [1])
    q = atoms.calc.results["electrode_total_charges"]
    assert q[1] > 0 and abs(q.sum()) < 1e-12


@pytest.mark.parametrize(("text", "message"), [
    ('[electrode]\nname = "a"\nindices = "0:4"\npotential = 0.5\n', r"\[\[electrode\]\]"),
    ('[[electrode]]\nname = "a"\nindices = "0:4"\npotential = "0.5"\n', "potential must be a number"),
    ('[[electrode]]\nname = "a"\nindices = "0:4"\npotential = true\n', "potential must be a number"),
    ('cg_max_iterations = -5\n[[electrode]]\nname = "a"\nindices = "0:4"\npotential = 0.5\n',
     "cg_max_iterations must be an integer"),
    ('accuracy = "1e-6"\n[[electrode]]\nname = "a"\nindices = "0:4"\npotential = 0.5\n', "accuracy must be a number"),
    ('[[electrode]]\nname = "a"\ntag = 1.5\npotential = 0.5\n', "tag must be an integer"),
], ids=["one-table", "string", "bool", "negative-iterations", "string-accuracy", "float-tag"])
def test_mistyped_toml_values_are_named(tmp_path, text, message):
    from lesmd.electrode.config import load_config

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_electrode_index_beyond_the_structure_names_the_electrode_and_the_count():
    from lesmd.electrode import Electrode, ElectrodeConfig, ElectrodePotential
    from lesmd.electrode.geometry import AU_ETA, au100_capacitor
    from lesmd.models.analytic import FixedChargeModel

    numbers, positions, cell = au100_capacitor()
    cfg = ElectrodeConfig([Electrode("bottom", indices=np.arange(144), potential=-0.6, eta=AU_ETA),
                           Electrode("top", indices=np.arange(144, 300), potential=0.6, eta=AU_ETA)])
    with pytest.raises(ValueError, match="electrode 'top': atom index 299 but the structure has 288 atoms"):
        ElectrodePotential(FixedChargeModel([]), cfg).compute(numbers, positions, cell, None, ["energy"])
