"""E(t) of lesmd.fields against i-PI's own ElectricField (the same parameterisation, one description for both)."""

import math
import warnings

import numpy as np
import pytest
from ipi.inputs.motion.driven_dynamics import InputElectricField
from ipi.utils.io.inputs.io_xml import xml_parse_string

from lesmd.fields import ElectricField, parse_field_vector, thz_to_angular_frequency
from lesmd.units import AU_FIELD, AU_TIME_FS

FIELDS = {
    "static": ElectricField.static([0.01, -0.02, 0.05]),
    "ac": ElectricField.ac([0.0, 0.0, 0.1], angular_frequency=thz_to_angular_frequency(2.0), phase=0.4),
    "pulse": ElectricField.pulse([0.03, 0.0, 0.04], peak=300.0, sigma=60.0),
    "thz_pulse": ElectricField.pulse([0.0, 0.0, 0.1], peak=500.0, sigma=100.0,
                                     angular_frequency=thz_to_angular_frequency(1.0), phase=-0.7),
}


def _ipi_field(xml: str):
    """i-PI's own ElectricField object parsed from an <efield> block, switched on as in eda-nve."""
    reader = InputElectricField()
    reader.parse(xml_parse_string(xml).fields[0][1])
    ipi_field = reader.fetch()
    ipi_field.enabled = True
    return ipi_field


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_field_profile_equals_ipi_efield_in_atomic_units(name):
    field = FIELDS[name]
    ipi_field = _ipi_field(field.to_ipi_xml())
    times_fs = np.linspace(0.0, 1000.0, 41)
    ipi_values = np.array([ipi_field.Efield(t / AU_TIME_FS) for t in times_fs]) * AU_FIELD
    np.testing.assert_allclose(field(times_fs), ipi_values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(field(times_fs[7]), ipi_values[7], rtol=1e-12, atol=1e-15)


def test_from_ipi_xml_honours_ipi_units():
    xml = """<simulation><system><motion mode='driven_dynamics'><driven_dynamics mode='eda-nve'>
      <efield>
        <amp units='v/ang'> [ 0.0, 0.0, 0.1 ] </amp>
        <freq units='thz'> 1.0 </freq>
        <phase> 0.3 </phase>
        <peak units='femtosecond'> 500 </peak>
        <sigma units='femtosecond'> 100 </sigma>
      </efield></driven_dynamics></motion></system></simulation>"""
    field = ElectricField.from_ipi_xml(xml)
    np.testing.assert_allclose(field.amplitude, [0.0, 0.0, 0.1], rtol=1e-8)
    # i-PI's "thz" is an ordinary frequency: ω = 2π × 1 THz = 2π × 1e-3 rad/fs
    assert field.angular_frequency == pytest.approx(2 * math.pi * 1e-3, rel=1e-6)
    assert field.phase == 0.3
    assert field.peak == pytest.approx(500.0, rel=1e-6)
    assert field.sigma == pytest.approx(100.0, rel=1e-6)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_ipi_xml_round_trip_reproduces_the_field(name):
    field = FIELDS[name]
    back = ElectricField.from_ipi_xml(field.to_ipi_xml())
    times = np.linspace(0.0, 900.0, 19)
    np.testing.assert_allclose(back(times), field(times), rtol=1e-12, atol=1e-16)
    assert back.has_envelope == field.has_envelope


def test_gaussian_pulse_peaks_at_peak_time_and_halves_at_half_width():
    field = ElectricField.pulse([0.0, 0.0, 0.2], peak=400.0, sigma=50.0)
    np.testing.assert_allclose(field(400.0), [0.0, 0.0, 0.2], rtol=1e-15)
    half_width = 50.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM/2
    assert field.envelope(400.0 + half_width) == pytest.approx(0.5, rel=1e-12)
    assert field.envelope(400.0 - half_width) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_time_derivative_equals_finite_difference(name):
    field = FIELDS[name]
    h = 1e-3
    for t in (0.0, 123.4, 300.0, 517.0):
        numeric = (field(t + h) - field(t - h)) / (2 * h)
        np.testing.assert_allclose(field.time_derivative(t), numeric, rtol=1e-6, atol=1e-12)


def test_static_field_is_constant_and_writes_no_envelope():
    field = FIELDS["static"]
    assert field.is_static and not FIELDS["ac"].is_static and not FIELDS["pulse"].is_static
    np.testing.assert_array_equal(field(np.array([0.0, 1e4])), [field.amplitude, field.amplitude])
    assert "<peak" not in field.to_ipi_xml() and "<sigma" not in field.to_ipi_xml()


def test_ipi_envelope_with_nonpositive_peak_is_ignored_like_ipi():
    xml = "<efield><amp> [0, 0, 0.001] </amp><peak> 0 </peak><sigma> 100 </sigma></efield>"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        field = ElectricField.from_ipi_xml(xml)
    assert any("ignores the envelope" in str(w.message) for w in caught)
    ipi_field = _ipi_field(xml)
    for t in (0.0, 2.0, 10.0):
        np.testing.assert_allclose(field(t), ipi_field.Efield(t / AU_TIME_FS) * AU_FIELD, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amplitude": [0.0, 0.1]}, "three finite numbers"),
        ({"amplitude": [0.0, 0.0, float("nan")]}, "three finite numbers"),
        ({"amplitude": [0, 0, 0.1], "sigma": 0.0}, "sigma must be > 0"),
        ({"amplitude": [0, 0, 0.1], "sigma": 10.0, "peak": 0.0}, "peak time > 0"),
        ({"amplitude": [0, 0, 0.1], "angular_frequency": float("inf")}, "must be finite"),
    ],
)
def test_bad_field_parameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ElectricField(**kwargs)


def test_bad_field_text_and_xml_raise_clear_errors():
    np.testing.assert_array_equal(parse_field_vector("0, 0 ,0.05"), [0.0, 0.0, 0.05])
    with pytest.raises(ValueError, match="three"):
        parse_field_vector("0,0.05")
    with pytest.raises(ValueError, match="three"):
        parse_field_vector("0,x,0.05")
    with pytest.raises(ValueError, match="no <efield>"):
        ElectricField.from_ipi_xml("<simulation><total_steps>3</total_steps></simulation>")
    with pytest.raises(ValueError, match="finite width"):
        ElectricField.pulse([0, 0, 1], peak=10.0, sigma=math.inf)
