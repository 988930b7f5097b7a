"""The calibration cache: round trip, corrupt and foreign files, key changes."""

import shutil
import warnings

import numpy as np
import pytest

from cysim import VirtualChip
from pynn_brainscales2.calibration import CalibrationTargets, calibrate
from pynn_brainscales2.calibration import cache as cache_module


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    directory = tmp_path_factory.mktemp("calib")
    targets = CalibrationTargets(tau_mem_us=12.0)
    first = calibrate(VirtualChip(seed=5), targets, cache=directory)
    return directory, targets, first


def _only_file(directory):
    files = list(directory.glob("*.npz"))
    assert len(files) == 1
    return files[0]


def test_round_trip(cached):
    directory, targets, first = cached
    assert not first.from_cache
    again = calibrate(VirtualChip(seed=5), targets, cache=directory)
    assert again.from_cache
    assert again.seconds < 0.5 * first.seconds
    for cell, values in first.capmem.items():
        np.testing.assert_array_equal(again.capmem[cell], values)
    for name, values in first.residual.items():
        np.testing.assert_array_equal(again.residual[name], values)


def test_file_holds_no_pickle(cached):
    directory, _, _ = cached
    with np.load(_only_file(directory), allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


@pytest.mark.parametrize("change", [{"seed": 6}, {"targets": {"tau_mem_us": 13.0}}, {"noise": False}])
def test_key_change_recalibrates(cached, tmp_path, change):
    directory, targets, _ = cached
    work = tmp_path / "c"
    shutil.copytree(directory, work)
    chip = VirtualChip(seed=change.get("seed", 5), noise=change.get("noise", True))
    t = CalibrationTargets(**change["targets"]) if "targets" in change else targets
    assert cache_module.cache_key(chip, t) != cache_module.cache_key(VirtualChip(seed=5), targets)
    result = calibrate(chip, t, cache=work)
    assert not result.from_cache
    assert len(list(work.glob("*.npz"))) == 2


def test_corrupt_file_is_detected_and_replaced(cached, tmp_path):
    directory, targets, first = cached
    work = tmp_path / "c"
    shutil.copytree(directory, work)
    path = _only_file(work)
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.warns(UserWarning, match="not usable"):
        result = calibrate(VirtualChip(seed=5), targets, cache=work)
    assert not result.from_cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert calibrate(VirtualChip(seed=5), targets, cache=work).from_cache  # rewritten


def test_foreign_file_under_the_expected_name_is_not_trusted(cached, tmp_path):
    """A valid cache file of another chip, renamed to this chip's file name."""
    directory, targets, _ = cached
    other = tmp_path / "other"
    calibrate(VirtualChip(seed=9), targets, cache=other)
    work = tmp_path / "c"
    work.mkdir()
    expected = work / _only_file(directory).name
    shutil.copy(_only_file(other), expected)
    with pytest.warns(UserWarning, match="key or version differs"):
        result = calibrate(VirtualChip(seed=5), targets, cache=work)
    assert not result.from_cache


def test_malformed_arrays_are_not_trusted(cached, tmp_path):
    directory, targets, _ = cached
    work = tmp_path / "c"
    shutil.copytree(directory, work)
    path = _only_file(work)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["capmem__v_leak"] = arrays["capmem__v_leak"][:100]
    np.savez(path, **arrays)
    with pytest.warns(UserWarning, match="malformed"):
        assert not calibrate(VirtualChip(seed=5), targets, cache=work).from_cache


def test_cache_directory_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYNN_BRAINSCALES2_CACHE", str(tmp_path))
    assert cache_module.default_cache_dir() == tmp_path / "calibration"
