"""Shared fixtures: small chip configurations built through the public ChipConfig."""

import numpy as np
import pytest

from cysim import ROW_EXC, ROW_INH, ChipConfig, Stimulus, VirtualChip, event_label


def connect_input(cfg, circuit, row, weight, label=1, row_select=0, inhibitory=False):
    """Let external events with ``event_label(bus, row_select, label)`` reach ``circuit``.

    Uses synapse row ``row`` of the circuit's hemisphere; returns the event label.
    """
    h, col = divmod(circuit, 256)
    driver = row // 2
    cfg.row_modes[h, row] = ROW_INH if inhibitory else ROW_EXC
    cfg.driver_row_select[h, driver] = row_select
    cfg.synapse_weights[h, row, col] = weight
    cfg.synapse_labels[h, row, col] = label
    return event_label(h * 4 + driver % 4, row_select, label)


@pytest.fixture
def single_input():
    """(config, label): circuit 0 spiking, fed by one excitatory synapse of weight 63."""
    cfg = ChipConfig()
    cfg.enable_spiking[0] = True
    label = connect_input(cfg, 0, 0, 63, label=5)
    return cfg, label


@pytest.fixture
def ideal_chip():
    return VirtualChip.ideal()


@pytest.fixture
def realistic_chip():
    return VirtualChip(seed=7)


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory):
    """One calibration cache for the whole session (never the user's home directory)."""
    import os

    if os.environ.get("PYNN_BRAINSCALES2_CACHE"):
        yield os.environ["PYNN_BRAINSCALES2_CACHE"]
        return
    path = tmp_path_factory.getbasetemp() / "calibration-cache"
    os.environ["PYNN_BRAINSCALES2_CACHE"] = str(path)
    yield str(path)
    del os.environ["PYNN_BRAINSCALES2_CACHE"]


def pytest_configure(config):
    np.set_printoptions(precision=4, suppress=True)


__all__ = ["connect_input", "Stimulus"]
