"""PyNN's own scenario suite (``test/system/scenarios`` of the pynn 0.13.0 sdist) against
pynn_brainscales2, on the ideal and on the realistic chip, without editing PyNN's files.

The sdist is fetched by pip into a cache directory (``$PYNN_BRAINSCALES2_SCENARIO_DIR``);
without network or pip the tests skip. Each scenario must either pass or stop with one of
this project's errors (a feature or range the chip lacks). The expected outcome of each is
listed in docs/pynn.md; ``OUTCOMES`` below holds the ones that pass.
"""

import warnings

import pytest

import pynn_brainscales2 as sim
from pynn_brainscales2.errors import BrainScaleS2Error

from ..unit.pynn.conftest import calibration_cache_dir  # noqa: F401  (session cache fixture)
from . import pynn_suite

_DIR = pynn_suite.fetch()
_TESTS = dict(pynn_suite.load_tests(_DIR)) if _DIR else {}

#: scenarios that pass on each chip (all others must raise a BrainScaleS2Error)
PASS_IDEAL = {
    "test__simulation_control::test_reset",
    "test__simulation_control::test_reset_with_clear",
    "test__simulation_control::test_reset_with_spikes",
    "test__simulation_control::test_setup",
    "test_cell_types::test_SpikeSourcePoisson",
    "test_cell_types::test_issue511",
    "test_cell_types::test_update_SpikeSourceArray",
    "test_connection_handling::test_connection_access_weight_and_delay",
    "test_connection_handling::test_connections_attribute",
    "test_connection_handling::test_issue652",
    "test_connection_handling::test_issue672",
    "test_connectors::test_all_to_all_static_no_self",
    "test_connectors::test_all_to_all_tsodyksmarkram",
    "test_connectors::test_fixed_number_post_no_replacement",
    "test_connectors::test_fixed_number_post_with_replacement",
    "test_connectors::test_fixed_number_post_with_replacement_heterogeneous_parameters",
    "test_connectors::test_fixed_number_pre_no_replacement",
    "test_connectors::test_fixed_number_pre_with_replacement",
    "test_connectors::test_fixed_number_pre_with_replacement_heterogeneous_parameters",
    "test_connectors::test_issue309",
    "test_connectors::test_issue622",
    "test_electrodes::test_issue483",
    "test_electrodes::test_issue512",
    "test_issue274::test_issue274",
    "test_parameter_handling::test_issue241",
    "test_parameter_handling::test_issue302",
    "test_parameter_handling::test_issue505",
    "test_parameter_handling::test_set_synaptic_parameters_fully_connected",
    "test_parameter_handling::test_set_synaptic_parameters_multiply_connected",
    "test_parameter_handling::test_set_synaptic_parameters_partially_connected",
    "test_recording::test_issue259",
}
#: compare repeated segments for equality; the realistic chip's temporal noise makes every
#: repetition differ (as on silicon), so these fail there by their assertion
REALISTIC_NOISE = {
    "test__simulation_control::test_reset",
    "test__simulation_control::test_reset_with_clear",
    "test__simulation_control::test_reset_with_spikes",
}
#: needs a simulator-specific optional package (morphio for multi-compartment models)
SKIPPED = {"test_scenario5::test_scenario5"}


@pytest.fixture(params=["ideal", "realistic"])
def chip_env(request, monkeypatch):
    monkeypatch.setenv("PYNN_BRAINSCALES2_CHIP", request.param)
    return request.param


@pytest.mark.skipif(not _TESTS, reason="PyNN scenario suite could not be fetched (no network or pip)")
@pytest.mark.parametrize("name", sorted(_TESTS) or ["none"])
def test_pynn_scenario(name, chip_env):
    if name in SKIPPED:
        pytest.skip("needs morphio (multi-compartment models)")
    fn = _TESTS[name]
    outcome = "pass"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fn(sim)
        except BrainScaleS2Error as exc:
            outcome = f"chip: {exc}"
        except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001  (recorded, asserted below)
            outcome = f"other: {type(exc).__name__}: {exc}"
    if chip_env == "realistic" and name in REALISTIC_NOISE:
        assert outcome != "pass"  # identical repetitions would mean the noise is missing
    elif chip_env == "ideal" and name in PASS_IDEAL:
        assert outcome == "pass"
    else:
        assert outcome == "pass" or outcome.startswith("chip:"), outcome
