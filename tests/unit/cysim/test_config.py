"""Validation on write of ChipConfig: every invalid value raises a clear ConfigError."""

import numpy as np
import pytest

from cysim import ChipConfig, ConfigError, ConfigIndexError


@pytest.fixture
def cfg():
    return ChipConfig()


def test_valid_writes_are_stored(cfg):
    cfg.synapse_weights[1, 200, 17] = 63
    cfg.v_leak[511] = 1022
    cfg.synapse_labels[0, :, 3] = np.arange(256) % 64
    assert cfg.synapse_weights[1, 200, 17] == 63
    assert cfg.v_leak[511] == 1022
    assert np.array_equal(np.asarray(cfg.synapse_labels)[0, :, 3], np.arange(256) % 64)


@pytest.mark.parametrize(
    "field, index, value, words",
    [
        ("synapse_weights", (0, 3, 5), 64, ["synapse_weights[0, 3, 5]", "64", "0..63"]),
        ("synapse_weights", (1, 0, 0), -1, ["synapse_weights[1, 0, 0]", "-1", "0..63"]),
        ("v_leak", 12, 1023, ["v_leak[12]", "1023", "0..1022"]),
        ("i_bias_leak", 0, 5000, ["i_bias_leak[0]", "5000", "0..1022"]),
        ("synapse_labels", (0, 1, 2), 64, ["synapse_labels[0, 1, 2]", "64", "0..63"]),
        ("driver_row_select", (1, 5), 32, ["driver_row_select[1, 5]", "32", "0..31"]),
        ("row_modes", (0, 7), 3, ["row_modes[0, 7]", "3", "0..2"]),
        ("bg_period_cycles", 2, 0, ["bg_period_cycles[2]", "0", "1..65535"]),
    ],
)
def test_out_of_range_value(cfg, field, index, value, words):
    before = np.asarray(getattr(cfg, field)).copy()
    with pytest.raises(ConfigError) as info:
        getattr(cfg, field)[index] = value
    for w in words:
        assert w in str(info.value)
    assert np.array_equal(np.asarray(getattr(cfg, field)), before), "a failed write changed the config"


@pytest.mark.parametrize(
    "field, index, words",
    [
        ("v_leak", 512, ["v_leak", "circuit index 512", "0..511"]),
        ("enable_spiking", -600, ["enable_spiking", "-600", "0..511"]),
        ("synapse_weights", (2, 0, 0), ["synapse_weights", "hemisphere index 2", "0..1"]),
        ("synapse_weights", (0, 256, 0), ["row index 256", "0..255"]),
        ("driver_row_select", (0, 128), ["driver index 128", "0..127"]),
    ],
)
def test_index_out_of_range(cfg, field, index, words):
    with pytest.raises(ConfigIndexError) as info:
        getattr(cfg, field)[index] = 1
    for w in words:
        assert w in str(info.value)
    assert isinstance(info.value, IndexError)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected(cfg, bad):
    with pytest.raises(ConfigError, match="v_threshold"):
        cfg.v_threshold[3] = bad
    values = np.full(512, 400.0)
    values[100] = bad
    with pytest.raises(ConfigError, match=r"element \(100,\)"):
        cfg.v_leak = values
    assert np.all(np.asarray(cfg.v_leak) == 400)  # the default stays


def test_whole_field_assignment_and_broadcast(cfg):
    cfg.i_bias_leak = 100
    assert np.all(np.asarray(cfg.i_bias_leak) == 100)
    with pytest.raises(ConfigError, match="synapse_weights"):
        cfg.synapse_weights = np.full((2, 256, 256), 64)


def test_non_integer_and_unknown_field(cfg):
    with pytest.raises(ConfigError, match="integers"):
        cfg.v_leak[0] = 10.5
    with pytest.raises(ConfigError, match="no field 'v_leek'"):
        cfg.v_leek = 3
    with pytest.raises(AttributeError, match="no field"):
        _ = cfg.v_leek


def test_reads_cannot_bypass_validation(cfg):
    view = np.asarray(cfg.synapse_weights)
    with pytest.raises(ValueError):
        view[0, 0, 0] = 200
    copy = cfg.synapse_weights[0]
    copy[0, 0] = 200  # a copy: the config is untouched
    assert cfg.synapse_weights[0, 0, 0] == 0


def test_readout_settings(cfg):
    cfg.cadc_period_us = 2.0
    assert cfg.cadc_period_us == 2.0
    with pytest.raises(ConfigError, match="1.7"):
        cfg.cadc_period_us = 0.5
    with pytest.raises(ConfigError, match="nan"):
        cfg.cadc_period_us = float("nan")
    cfg.madc_circuits = (4, 7)
    with pytest.raises(ConfigError, match="even and one odd"):
        cfg.madc_circuits = (4, 6)
    with pytest.raises(ConfigError, match="at most 2"):
        cfg.madc_circuits = (1, 2, 3)
    with pytest.raises(ConfigIndexError, match="circuit index 600"):
        cfg.madc_circuits = (600,)
    assert cfg.madc_circuits == (4, 7)


def test_copy_and_equality(cfg):
    cfg.synapse_weights[0, 1, 2] = 5
    other = cfg.copy()
    assert other == cfg
    other.synapse_weights[0, 1, 2] = 6
    assert other != cfg
    assert cfg.synapse_weights[0, 1, 2] == 5
    assert other.revision != cfg.revision


def test_revision_changes_on_write(cfg):
    r0 = cfg.revision
    cfg.v_leak[3] = 10
    assert cfg.revision != r0
