"""Calibration results shared by all tests of a session (and across xdist workers)."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def calibration_cache_dir(tmp_path_factory):
    if os.environ.get("PYNN_BRAINSCALES2_CACHE"):
        yield os.environ["PYNN_BRAINSCALES2_CACHE"]
        return
    path = tmp_path_factory.getbasetemp().parent / "pbs2-calibration-cache"
    path.mkdir(exist_ok=True)
    os.environ["PYNN_BRAINSCALES2_CACHE"] = str(path)
    yield str(path)
    del os.environ["PYNN_BRAINSCALES2_CACHE"]
