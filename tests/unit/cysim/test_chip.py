"""Behaviour of VirtualChip.run: trials, seeds, noise, routing, readout, errors."""

import numpy as np
import pytest

from cysim import (
    ROW_EXC,
    ChipConfig,
    RunError,
    Stimulus,
    StimulusError,
    VirtualChip,
    event_label,
)
from cysim import constants as C
from tests.conftest import connect_input


def _busy_config():
    """A small recurrent network with a Poisson background and bias currents."""
    rng = np.random.default_rng(5)
    cfg = ChipConfig()
    circuits = np.r_[0:20, 256:270]
    cfg.enable_spiking[circuits] = True
    cfg.enable_output[circuits] = True
    cfg.output_buses[circuits] = 1 << (circuits // 256 * 4 + circuits % 4)
    cfg.output_address[circuits] = (circuits % 32) << 6 | 7
    cfg.v_threshold = 560
    for c in circuits:
        h, col = divmod(int(c), 256)
        for _ in range(6):
            row = int(rng.integers(0, 256))
            cfg.row_modes[h, row] = ROW_EXC
            cfg.driver_row_select[h, row // 2] = int(rng.integers(0, 32))
            cfg.synapse_weights[h, row, col] = int(rng.integers(20, 64))
            cfg.synapse_labels[h, row, col] = int(rng.integers(0, 8))
    cfg.bg_mode[0] = C.BG_POISSON
    cfg.bg_period_cycles[0] = 100
    cfg.bg_buses[0] = 0xFF
    cfg.bg_address[0] = 3
    for h in range(2):
        for d in range(0, 128, 4):
            cfg.driver_row_select[h, d] = 0
            cfg.row_modes[h, 2 * d] = ROW_EXC
            cfg.synapse_labels[h, 2 * d, :] = 3
            cfg.synapse_weights[h, 2 * d, circuits[circuits // 256 == h] % 256] = 30
    cfg.enable_bias_current[circuits[::3]] = True
    cfg.i_bias_const[circuits[::3]] = 60
    cfg.madc_circuits = (3,)
    return cfg


def _stimulus(trials):
    rng = np.random.default_rng(11)
    per_trial = []
    for _ in range(trials):
        n = 30
        per_trial.append((np.sort(rng.uniform(0, 40, n)), [event_label(0, 0, 3)] * n))
    return Stimulus.from_trials(per_trial)


def _assert_results_equal(a, b):
    assert np.array_equal(a.spike_circuits, b.spike_circuits)
    assert np.array_equal(a.spike_timestamps, b.spike_timestamps)
    assert np.array_equal(a.cadc, b.cadc)
    assert np.array_equal(a.madc, b.madc)


def test_batched_trials_equal_single_runs():
    chip = VirtualChip(seed=2)
    cfg = _busy_config()
    stim = _stimulus(4)
    seeds = np.array([11, 12, 13, 14])
    batch = chip.run(cfg, stim, duration_us=50.0, trials=4, trial_seeds=seeds)
    assert batch.spike_counts().sum() > 100, "the network must be active"
    for k in range(4):
        single = chip.run(cfg, stim.trial(k), duration_us=50.0, trial_seeds=[seeds[k]])
        sel = batch.spike_trials == k
        assert np.array_equal(single.spike_circuits, batch.spike_circuits[sel])
        assert np.array_equal(single.spike_timestamps, batch.spike_timestamps[sel])
        assert np.array_equal(single.cadc[0], batch.cadc[k])
        assert np.array_equal(single.madc[0], batch.madc[k])


def test_threads_do_not_change_results():
    chip = VirtualChip(seed=2)
    cfg = _busy_config()
    a = chip.run(cfg, _stimulus(6), duration_us=30.0, trials=6, trial_seeds=np.arange(6), threads=1)
    b = chip.run(cfg, _stimulus(6), duration_us=30.0, trials=6, trial_seeds=np.arange(6), threads=2)
    _assert_results_equal(a, b)


def test_noise_off_is_bit_identical():
    chip = VirtualChip(seed=4, noise=False)
    cfg = _busy_config()
    a = chip.run(cfg, _stimulus(1), duration_us=50.0)
    b = chip.run(cfg, _stimulus(1), duration_us=50.0)
    assert a.spike_counts().sum() > 0
    _assert_results_equal(a, b)


def test_noise_on_repeated_runs_differ_and_seeds_reproduce():
    chip = VirtualChip(seed=4)
    cfg = _busy_config()
    a = chip.run(cfg, _stimulus(1), duration_us=50.0)
    b = chip.run(cfg, _stimulus(1), duration_us=50.0)
    assert not np.array_equal(a.cadc, b.cadc)
    c = chip.run(cfg, _stimulus(1), duration_us=50.0, trial_seeds=a.trial_seeds)
    _assert_results_equal(a, c)


def test_trials_differ_in_noise():
    """Thirty repetitions of one stimulus give different traces (as on silicon)."""
    chip = VirtualChip(seed=1)
    cfg = ChipConfig()
    label = connect_input(cfg, 0, 0, 63, label=2)
    cfg.enable_spiking[0] = True
    cfg.v_threshold[0] = 700
    res = chip.run(cfg, Stimulus([1.0], [label]), duration_us=20.0, trials=30)
    traces = res.cadc[:, :, 0].astype(float)
    assert np.std(traces, axis=0).max() > 0.5


def test_same_seed_same_mismatch_other_seed_other_mismatch():
    cfg = ChipConfig()
    seeds = [0]
    rest = [
        VirtualChip(seed=s, noise=False).run(cfg, duration_us=5.0, trial_seeds=seeds).cadc[0, 0]
        for s in (3, 3, 4)
    ]
    assert np.array_equal(rest[0], rest[1])
    assert not np.array_equal(rest[0], rest[2])
    assert np.std(rest[0].astype(float)) > 2.0  # circuits differ by several LSB uncalibrated
    ideal = VirtualChip.ideal().run(cfg, duration_us=5.0).cadc[0, 0]
    assert np.ptp(ideal) == 0
    assert np.array_equal(
        VirtualChip(3)._physics.tau_scale["i_bias_leak"], VirtualChip(3)._physics.tau_scale["i_bias_leak"]
    )


def test_label_mismatch_gives_no_psp(single_input):
    cfg, label = single_input
    chip = VirtualChip.ideal()
    match = chip.run(cfg, Stimulus([1.0], [label]), duration_us=10.0).cadc[0, :, 0]
    wrong = chip.run(cfg, Stimulus([1.0], [label + 1]), duration_us=10.0).cadc[0, :, 0]
    other_rows = chip.run(cfg, Stimulus([1.0], [label | (1 << 6)]), duration_us=10.0).cadc[0, :, 0]
    assert match.max() > match[0] + 10
    assert np.ptp(wrong) == 0
    assert np.ptp(other_rows) == 0  # a row-select address no driver answers to


def test_disabled_row_and_driver_give_no_psp(single_input):
    cfg, label = single_input
    chip = VirtualChip.ideal()
    cfg.driver_enable[0, 0] = False
    assert np.ptp(chip.run(cfg, Stimulus([1.0], [label]), duration_us=10.0).cadc[0, :, 0]) == 0
    cfg.driver_enable[0, 0] = True
    cfg.row_modes[0, 0] = C.ROW_OFF
    assert np.ptp(chip.run(cfg, Stimulus([1.0], [label]), duration_us=10.0).cadc[0, :, 0]) == 0


def test_inhibitory_row_lowers_membrane():
    cfg = ChipConfig()
    label = connect_input(cfg, 5, 10, 63, label=4, inhibitory=True)
    trace = VirtualChip.ideal().run(cfg, Stimulus([1.0], [label]), duration_us=10.0).cadc[0, :, 5]
    assert trace.min() < trace[0] - 10


def test_cadc_saturates_at_both_ends():
    cfg = ChipConfig()
    cfg.v_leak[0] = 1022  # leak at the top rail
    cfg.v_leak[1] = 0
    label = connect_input(cfg, 2, 0, 63, label=1)
    cfg.i_syn_gm_exc[2] = 1022
    cfg.enable_bias_current[3] = True
    cfg.i_bias_const[3] = 1022
    res = VirtualChip(seed=0).run(cfg, Stimulus([1.0, 1.5, 2.0, 2.5], [label] * 4), duration_us=10.0)
    cadc = res.cadc[0]
    assert cadc.dtype == np.uint8
    assert cadc[:, 0].max() == 255
    assert cadc[:, 1].min() == 0
    assert cadc[:, 2].max() == 255  # strong input drives the membrane into saturation
    assert cadc[-1, 3] == 255


def test_cadc_period_and_disable():
    cfg = ChipConfig()
    cfg.cadc_period_us = 2.0
    res = VirtualChip.ideal().run(cfg, duration_us=20.0)
    assert np.allclose(res.cadc_times_us, np.arange(0, 20, 2.0))
    cfg.cadc_enable = False
    assert VirtualChip.ideal().run(cfg, duration_us=20.0).cadc is None


def test_recurrent_event_arrives_after_latency():
    """Circuit 0 spikes; its event reaches circuit 1 through the routing, latency later."""
    cfg = ChipConfig()
    cfg.enable_spiking[0] = True
    cfg.enable_output[0] = True
    cfg.output_buses[0] = 1 << 1  # bus 1 of hemisphere 0
    cfg.output_address[0] = (2 << 6) | 9  # row select 2, label 9
    cfg.enable_bias_current[0] = True
    cfg.i_bias_const[0] = 1022
    # driver 5 listens to bus 1 (5 % 4), rows 10 and 11
    cfg.driver_row_select[0, 5] = 2
    cfg.row_modes[0, 10] = ROW_EXC
    cfg.synapse_labels[0, 10, 1] = 9
    cfg.synapse_weights[0, 10, 1] = 63
    cfg.madc_circuits = (1,)
    res = VirtualChip.ideal(dt_us=0.01).run(cfg, duration_us=30.0)
    circ, times = res.spikes()
    t0 = times[circ == 0][0]
    trace = res.madc[0, :, 0].astype(int)
    rise = res.madc_times_us[np.flatnonzero(trace > trace[0] + 1)[0]]
    assert rise == pytest.approx(t0 + C.ROUTING_LATENCY_US, abs=0.05)


def _event_counter(cfg, circuit=7, address=4):
    """Circuit ``circuit`` spikes exactly once per event with ``address`` on bus 0: a fast
    membrane whose PSP barely crosses the threshold and resets far below the leak."""
    cfg.row_modes[0, 0] = ROW_EXC
    cfg.synapse_labels[0, 0, circuit] = address & 63
    cfg.synapse_weights[0, 0, circuit] = 63
    cfg.i_syn_gm_exc[circuit] = 1022
    cfg.i_bias_leak[circuit] = 900
    cfg.i_bias_syn_exc[circuit] = 900
    cfg.enable_spiking[circuit] = True
    cfg.v_threshold[circuit] = 420
    cfg.v_reset[circuit] = 0
    cfg.refractory_time[circuit] = 2


def test_regular_background_generator_rate():
    cfg = ChipConfig()
    cfg.bg_mode[2] = C.BG_REGULAR
    cfg.bg_period_cycles[2] = 500  # 2 us
    cfg.bg_buses[2] = 1
    cfg.bg_address[2] = 4
    _event_counter(cfg)
    res = VirtualChip.ideal().run(cfg, duration_us=100.0)
    circuits, times = res.spikes()
    assert np.count_nonzero(circuits == 7) == 49  # events at 2, 4, ..., 98 us
    assert np.allclose(np.diff(times)[1:], 2.0, atol=0.01)  # the first starts from rest


def test_poisson_background_rate():
    cfg = ChipConfig()
    cfg.bg_mode[0] = C.BG_POISSON
    cfg.bg_period_cycles[0] = 10000  # 40 us mean interval
    cfg.bg_buses[0] = 1
    cfg.bg_address[0] = 4
    _event_counter(cfg)
    res = VirtualChip.ideal().run(cfg, duration_us=40000.0)
    intervals = np.diff(res.spikes()[1])
    # 1000 events expected (std ~32); ~4 % of intervals are too short to be told apart
    assert 900 < intervals.size + 1 < 1070
    assert np.mean(intervals[intervals > 2]) == pytest.approx(42.0, rel=0.08)  # memoryless
    assert np.std(intervals) / np.mean(intervals) == pytest.approx(1.0, abs=0.1)


def test_background_seed_register():
    cfg = ChipConfig()
    cfg.bg_mode[0] = C.BG_POISSON
    cfg.bg_period_cycles[0] = 1000
    cfg.bg_buses[0] = 1
    cfg.bg_address[0] = 4
    _event_counter(cfg)
    chip = VirtualChip.ideal()
    a = chip.run(cfg, duration_us=400.0).spikes()[1]
    b = chip.run(cfg, duration_us=400.0).spikes()[1]
    cfg.bg_seed[0] = 99
    c = chip.run(cfg, duration_us=400.0).spikes()[1]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_spike_timestamps_on_fpga_clock(single_input):
    cfg, label = single_input
    cfg.v_threshold[0] = 420
    res = VirtualChip.ideal(dt_us=0.013).run(cfg, Stimulus([1.0], [label]), duration_us=10.0)
    assert res.spike_timestamps.dtype == np.int64
    assert len(res.spike_timestamps) > 0
    assert np.allclose(res.spike_times_us / C.FPGA_TICK_US, np.round(res.spike_times_us / C.FPGA_TICK_US))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"duration_us": -1.0}, ["duration_us", "-1"]),
        ({"duration_us": float("nan")}, ["duration_us", "nan"]),
        ({"trials": 0}, ["trials", "0"]),
        ({"trials": 2, "trial_seeds": [1]}, ["trial_seeds", "1 entries", "2 trials"]),
        ({"dt_us": 0.5}, ["dt_us", "0.5", "0.001..0.1"]),
        ({"threads": 0}, ["threads"]),
    ],
)
def test_run_argument_errors(kwargs, words):
    chip = VirtualChip.ideal()
    with pytest.raises(RunError) as info:
        chip.run(ChipConfig(), **kwargs)
    for w in words:
        assert w in str(info.value)
    assert chip.run(ChipConfig(), duration_us=5.0).cadc is not None  # still usable


def test_stimulus_errors():
    with pytest.raises(StimulusError, match="time -1.0 us"):
        Stimulus([-1.0], [3])
    with pytest.raises(StimulusError, match="nan"):
        Stimulus([np.nan], [3])
    with pytest.raises(StimulusError, match="label 16384"):
        Stimulus([1.0], [16384])
    with pytest.raises(StimulusError, match="2 times but 1 labels"):
        Stimulus([1.0, 2.0], [3])
    with pytest.raises(RunError, match="3 trials"):
        VirtualChip.ideal().run(ChipConfig(), Stimulus.from_trials([([1.0], [1])] * 3), trials=2)


def test_unsorted_stimulus_is_sorted_per_trial():
    s = Stimulus([3.0, 1.0, 2.0], [1, 2, 3])
    assert np.array_equal(s.times_us, [1.0, 2.0, 3.0])
    assert np.array_equal(s.labels, [2, 3, 1])


def test_chip_constructor_errors():
    with pytest.raises(RunError, match="seed"):
        VirtualChip(seed=-1)
    with pytest.raises(RunError, match="engine"):
        VirtualChip(engine="gpu")
    with pytest.raises(RunError, match="dt_us"):
        VirtualChip(dt_us=0.0)
