"""Plasticity processors of the virtual chip: timers, kernel context, sensors, counters,
weight and CapMem writes, records and errors (``VirtualChip.run(..., plasticity=...)``)."""

import numpy as np
import pytest

from cysim import (
    ROW_EXC,
    ChipConfig,
    KernelError,
    PlasticityError,
    PPUProgram,
    RunError,
    Stimulus,
    VirtualChip,
    event_label,
)
from cysim import constants as C
from tests.conftest import connect_input

DT = 0.01
ETA_CAPMEM = 800  # sensor amplitude cell: 199.6 LSB per pair at zero delay (nominal)


def nominal_tau(capmem):
    return C.CORR_TAU_MAX_US * (C.CORR_TAU_MIN_US / C.CORR_TAU_MAX_US) ** (capmem / C.CAPMEM_MAX)


def pair_config():
    """Circuit 0 spikes once when event ``drive`` arrives; ``probe`` reaches it through a
    weight-0 synapse (row 2) that a program tracks. Returns (config, drive, probe, mask)."""
    cfg = ChipConfig()
    cfg.enable_spiking[0] = True
    cfg.v_threshold[0] = 500
    cfg.i_syn_gm_exc[0] = 1022
    drive = connect_input(cfg, 0, 0, 30, label=1)
    probe = connect_input(cfg, 0, 2, 0, label=2)
    cfg.corr_amp_causal = ETA_CAPMEM
    cfg.corr_amp_acausal = ETA_CAPMEM
    mask = np.zeros((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), dtype=bool)
    mask[0, 2, 0] = True
    return cfg, drive, probe, mask


def arrival(t_send):
    """Time at which an event sent at ``t_send`` reaches its synapses (grid DT)."""
    return np.floor((t_send + C.ROUTING_LATENCY_US) / DT + 0.5) * DT


def read_sensors(chip, cfg, stim, mask, at_us, duration_us=150.0, trials=1):
    out = {}

    def read(ctx):
        i = ctx.synapse_index(0, 2, 0)
        out["causal"] = ctx.causal[:, i].astype(int)
        out["acausal"] = ctx.acausal[:, i].astype(int)

    result = chip.run(
        cfg, stim, duration_us=duration_us, trials=trials, plasticity=PPUProgram(read, at_us, synapses=mask)
    )
    return out, result


# --- timers ---------------------------------------------------------------------------------


def test_ticks_at_the_right_times():
    times = {}

    def make(name):
        def kernel(ctx):
            times.setdefault(name, []).append(ctx.time_us)
            ctx.record("tick", ctx.tick)

        return kernel

    programs = [
        PPUProgram(make("a"), start_us=1.5, period_us=2.5, num_periods=4, name="a"),
        PPUProgram(make("b"), start_us=2.0, period_us=3.0, num_periods=None, name="b"),
        PPUProgram(make("c"), start_us=7.0, name="c"),
        PPUProgram(make("late"), start_us=50.0, name="late"),
    ]
    result = VirtualChip.ideal().run(ChipConfig(), duration_us=10.0, plasticity=programs)
    np.testing.assert_allclose(times["a"], [1.5, 4.0, 6.5, 9.0])
    np.testing.assert_allclose(times["b"], [2.0, 5.0, 8.0])  # 11 lies after the end
    np.testing.assert_allclose(times["c"], [7.0])
    assert "late" not in times
    log = result.plasticity
    assert np.all(np.diff(log.tick_times_us) >= 0)
    assert log.tick_programs == ("a", "b", "a", "b", "a", "c", "b", "a")
    np.testing.assert_array_equal(result.plasticity_records["a"]["tick"].values, [0, 1, 2, 3])
    np.testing.assert_allclose(result.plasticity_records["b"]["tick"].times_us, [2.0, 5.0, 8.0])


def test_tick_at_the_end_of_the_run_and_on_the_grid():
    times = []
    VirtualChip.ideal().run(
        ChipConfig(),
        duration_us=3.0,
        plasticity=PPUProgram(lambda ctx: times.append(ctx.time_us), 0.04, 1.0, None),
    )
    # ticks at 0.04 + k rounded to the 0.1 us grid (0.0, 1.0, 2.0, 3.0); the last one at the end
    np.testing.assert_allclose(times, [0.0, 1.0, 2.0, 3.0], atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel": 3}, "callable"),
        ({"kernel": print, "start_us": -1.0}, "start_us"),
        ({"kernel": print, "period_us": 0.0, "num_periods": 3}, "period_us"),
        ({"kernel": print, "num_periods": 3}, "period_us"),
        ({"kernel": print, "num_periods": 0}, "num_periods"),
        ({"kernel": print, "synapses": np.zeros((2, 256), dtype=bool)}, "boolean mask"),
    ],
)
def test_invalid_programs_are_refused(kwargs, match):
    with pytest.raises(PlasticityError, match=match):
        PPUProgram(**kwargs)


def test_invalid_plasticity_arguments():
    chip = VirtualChip.ideal()
    with pytest.raises(PlasticityError, match="PPUProgram"):
        chip.run(ChipConfig(), duration_us=1.0, plasticity=[print])
    with pytest.raises(PlasticityError, match="distinct names"):
        chip.run(ChipConfig(), duration_us=1.0, plasticity=[PPUProgram(print, name="x")] * 2)
    with pytest.raises(RunError, match="reference engine"):
        VirtualChip.ideal(engine="reference").run(ChipConfig(), duration_us=1.0, plasticity=PPUProgram(print))


# --- a program that changes nothing changes nothing ----------------------------------------------


def test_noop_program_leaves_the_run_unchanged(ideal_chip):
    from tests.equivalence.test_engine_vs_reference import random_network

    cfg, stim, _ = random_network(3)
    plain = ideal_chip.run(cfg, stim, duration_us=60.0, trials=3)
    assert plain.spike_counts().sum() > 20

    def look(ctx):  # reads everything, writes nothing back changed
        ctx.weights[...] = ctx.weights
        _ = ctx.causal, ctx.spike_counts, ctx.cadc
        ctx.capmem["v_threshold"] += 0

    for program in (
        PPUProgram(lambda ctx: None, 0.0, 0.7, None),
        PPUProgram(look, 0.3, 1.9, None, per_trial=True),
    ):
        other = ideal_chip.run(cfg, stim, duration_us=60.0, trials=3, plasticity=program)
        np.testing.assert_array_equal(other.spike_circuits, plain.spike_circuits)
        np.testing.assert_array_equal(other.spike_timestamps, plain.spike_timestamps)
        np.testing.assert_array_equal(other.cadc, plain.cadc)
        np.testing.assert_array_equal(other.madc, plain.madc)


# --- correlation sensors -------------------------------------------------------------------------


@pytest.mark.parametrize("delta_us", [1.0, 3.0, 10.0, 25.0, 50.0])
def test_causal_sensor_follows_the_pair_based_trace(delta_us):
    cfg, drive, probe, mask = pair_config()
    chip = VirtualChip.ideal(dt_us=DT)
    stim = Stimulus([50.0, 50.0 - delta_us], [drive, probe])
    out, result = read_sensors(chip, cfg, stim, mask, at_us=140.0)
    post = result.spikes(0)[1]
    assert post.size == 1
    dt_eff = post[0] - arrival(50.0 - delta_us)
    assert dt_eff > 0
    eta = C.CORR_AMP_MAX_LSB * ETA_CAPMEM / C.CAPMEM_MAX
    expected = eta * np.exp(-dt_eff / nominal_tau(444))
    assert abs(out["causal"][0] - expected) <= 0.5 + 0.05  # rounding (+ 8 ns timestamps)
    assert out["acausal"][0] == 0


@pytest.mark.parametrize("delta_us", [2.0, 5.0, 20.0, 45.0])
def test_acausal_sensor_follows_the_pair_based_trace(delta_us):
    cfg, drive, probe, mask = pair_config()
    cfg.corr_tau_acausal = 300  # a different time constant for the other direction
    chip = VirtualChip.ideal(dt_us=DT)
    stim = Stimulus([50.0, 50.0 + delta_us], [drive, probe])
    out, result = read_sensors(chip, cfg, stim, mask, at_us=140.0)
    post = result.spikes(0)[1]
    assert post.size == 1
    dt_eff = arrival(50.0 + delta_us) - post[0]
    eta = C.CORR_AMP_MAX_LSB * ETA_CAPMEM / C.CAPMEM_MAX
    expected = eta * np.exp(-dt_eff / nominal_tau(300))
    assert abs(out["acausal"][0] - expected) <= 0.5 + 0.05
    assert out["causal"][0] == 0


def test_causal_sensor_after_long_silences_of_the_pre_synapse():
    """A spike visits only the synapses whose pre trace is younger than 40 tau (the engine
    drops the others from its circuit's list until their key arrives again): after
    silences of more than 40 tau, the next pairs count in full, and the nearest pre
    event is the one that counts."""
    cfg, drive, probe, mask = pair_config()
    cfg.corr_tau_causal = C.CAPMEM_MAX  # tau = 1 us: 40 tau = 40 us
    tau = nominal_tau(C.CAPMEM_MAX)
    chip = VirtualChip.ideal(dt_us=DT)
    times = [10.0, 12.0, 60.0, 100.0, 101.5, 128.0, 130.0, 131.0, 190.0, 191.0]
    ids = [probe, drive, drive, probe, drive, probe, probe, drive, probe, drive]
    seen = []

    def kernel(ctx):
        seen.append(int(ctx.causal[0, ctx.synapse_index(0, 2, 0)]))
        ctx.reset_correlation()

    ticks = [30.0, 80.0, 120.0, 150.0, 210.0]
    result = chip.run(
        cfg,
        Stimulus(times, ids),
        duration_us=220.0,
        plasticity=[PPUProgram(kernel, t, synapses=mask) for t in ticks],
    )
    post = result.spikes(0)[1]
    assert post.size == 5
    eta = C.CORR_AMP_MAX_LSB * ETA_CAPMEM / C.CAPMEM_MAX
    pre = {0: 10.0, 2: 100.0, 3: 130.0, 4: 190.0}  # post spike -> its nearest pre event
    expected = [0.0] * len(ticks)
    for k, t_pre in pre.items():
        window = int(np.searchsorted(ticks, post[k]))
        expected[window] += eta * np.exp(-(post[k] - arrival(t_pre)) / tau)
    assert expected[1] == 0.0  # the post spike at 60 us: the last pre event is 48 tau old
    assert all(x > 5 for i, x in enumerate(expected) if i != 1)
    np.testing.assert_allclose(seen, expected, atol=0.5 + 0.3)  # rounding (+ 8 ns timestamps)


def test_sensors_saturate_and_reset():
    cfg, drive, probe, mask = pair_config()
    chip = VirtualChip.ideal(dt_us=DT)
    # ten pre-post pairs 20 us apart, 1 us delay: ~180 LSB each, the sensor saturates
    pre = 10.0 + 20.0 * np.arange(10)
    stim = Stimulus(np.r_[pre, pre + 1.0], [probe] * 10 + [drive] * 10)
    seen = []

    def kernel(ctx):
        i = ctx.synapse_index(0, 2, 0)
        seen.append(int(ctx.causal[0, i]))
        if ctx.tick == 1:
            ctx.reset_correlation()
            seen.append(int(ctx.causal[0, i]))

    result = chip.run(
        cfg, stim, duration_us=250.0, plasticity=PPUProgram(kernel, 15.0, 200.0, 2, synapses=mask)
    )
    assert result.spike_counts()[0, 0] == 10
    assert 150 < seen[0] < C.CORR_MAX  # one pair before the first tick
    assert seen[1] == C.CORR_MAX  # saturated by the next pairs
    assert seen[2] == 0  # reset


def test_reset_of_some_synapses_only():
    cfg, drive, probe, mask = pair_config()
    other = connect_input(cfg, 0, 4, 0, label=3)
    mask[0, 4, 0] = True
    stim = Stimulus([40.0, 40.0, 41.0], [probe, other, drive])
    values = []

    def kernel(ctx):
        i = ctx.synapse_index([0, 0], [2, 4], [0, 0])
        values.append(ctx.causal[0, i].astype(int))
        if ctx.tick == 0:
            ctx.reset_correlation(index=i[:1])

    VirtualChip.ideal(dt_us=DT).run(
        cfg, stim, duration_us=80.0, plasticity=PPUProgram(kernel, 60.0, 10.0, 2, synapses=mask)
    )
    assert values[0][0] == values[0][1] > 100
    assert values[1][0] == 0 and values[1][1] == values[0][1]


def test_sensor_mismatch_on_a_realistic_chip():
    """Every synapse has its own sensor gain, time constant and offset: one pre event on
    31 synapses of one circuit, then one post spike, reads differently per synapse on a
    realistic chip and identically on the ideal one."""
    cfg = ChipConfig()
    cfg.enable_spiking[0] = True
    cfg.v_threshold[0] = 480
    cfg.i_syn_gm_exc[0] = 1022
    cfg.corr_amp_causal = 400  # 99.8 LSB per pair at zero delay (nominal)
    drive = connect_input(cfg, 0, 0, 22, label=1)
    mask = np.zeros((2, 256, 256), dtype=bool)
    rows = 2 * np.arange(4, 128, 4)  # drivers on bus 0, row select 0
    cfg.row_modes[0, rows] = ROW_EXC
    cfg.synapse_labels[0, rows, 0] = 2
    mask[0, rows, 0] = True
    stim = Stimulus([10.0, 12.0], [event_label(0, 0, 2), drive])
    readouts = {}
    for name, chip in (("ideal", VirtualChip.ideal()), ("real", VirtualChip(seed=4, noise=False))):

        def kernel(ctx, name=name):
            readouts[name] = ctx.causal[0, ctx.synapse_index(0, rows, 0)].astype(int)

        result = chip.run(cfg, stim, duration_us=40.0, plasticity=PPUProgram(kernel, 39.0, synapses=mask))
        assert result.spike_counts()[0, 0] == 1
        readouts[name + "_post"] = result.spikes(0)[1][0]
    nominal = 255 * 400 / 1022 * np.exp(-(readouts["ideal_post"] - arrival(10.0)) / nominal_tau(444))
    assert np.all(np.abs(readouts["ideal"] - nominal) <= 0.55)
    assert readouts["real"].std() > 3.0
    assert readouts["real"].mean() == pytest.approx(nominal, rel=0.15)


# --- spike counters ------------------------------------------------------------------------------


def tonic_config(circuits=(0, 300), bias=300):
    cfg = ChipConfig()
    circuits = list(circuits)
    cfg.enable_spiking[circuits] = True
    cfg.enable_bias_current[circuits] = True
    cfg.i_bias_const[circuits] = bias
    cfg.v_threshold[circuits] = 560
    cfg.refractory_time[circuits] = 0
    return cfg


def test_spike_counters_count_saturate_and_reset():
    cfg = tonic_config()
    counts, windows = [], []

    def kernel(ctx):
        counts.append(ctx.spike_counts[0].astype(int))
        windows.append(ctx.time_us)
        if ctx.tick < 2:
            ctx.reset_spike_counts()
        elif ctx.tick == 2:
            ctx.reset_spike_counts(circuits=[300])

    chip = VirtualChip.ideal()
    result = chip.run(cfg, duration_us=400.0, plasticity=PPUProgram(kernel, 10.0, 20.0, 3))
    circuits, times = result.spikes(0)
    for k, (lo, hi) in enumerate([(0.0, 10.0), (10.0, 30.0), (30.0, 50.0)]):
        for c in (0, 300):
            expected = np.count_nonzero((circuits == c) & (times >= lo) & (times < hi))
            assert counts[k][c] == expected > 0
    # after the third tick only circuit 300 was reset; run on and read the end state
    last = []
    long = chip.run(
        cfg,
        duration_us=3000.0,
        plasticity=[
            PPUProgram(kernel, 10.0, 20.0, 3, name="a"),
            PPUProgram(lambda ctx: last.append(ctx.spike_counts[0].astype(int)), 3000.0, name="b"),
        ],
    )
    circuits, times = long.spikes(0)
    assert np.count_nonzero((circuits == 0) & (times >= 30.0)) > 255
    assert last[0][0] == C.SPIKE_COUNTER_MAX  # 8-bit saturating
    assert counts[0][1] == 0  # a circuit that never spikes


# --- weights ---------------------------------------------------------------------------------------


def psp_config():
    cfg = ChipConfig()
    cfg.i_syn_gm_exc[0] = 900
    cfg.madc_circuits = [0]
    label = connect_input(cfg, 0, 0, 20, label=1)
    return cfg, label


def psp_heights(result, times, width=20.0):
    v = result.madc[0, :, 0].astype(float)
    t = result.madc_times_us
    base = np.median(v[t < times[0]])
    return np.array([v[(t >= s) & (t < s + width)].max() - base for s in times])


def test_weights_written_by_a_kernel_take_effect_after_the_tick():
    cfg, label = psp_config()
    events = np.array([10.0, 60.0, 110.0])
    stim = Stimulus(events, [label] * 3)

    def kernel(ctx):
        i = ctx.synapse_index(0, 0, 0)
        ctx.weights[0, i] = 40 if ctx.tick == 0 else 90  # 90 is clipped to 63

    result = VirtualChip.ideal().run(
        cfg, stim, duration_us=150.0, plasticity=PPUProgram(kernel, 40.0, 50.0, 2, record_weights=True)
    )
    heights = psp_heights(result, events)
    assert heights[0] > 30
    assert heights[1] / heights[0] == pytest.approx(2.0, rel=0.02)
    assert heights[2] / heights[0] == pytest.approx(63 / 20, rel=0.02)
    log = result.plasticity
    np.testing.assert_array_equal(log.weights_clipped, [0, 1])
    assert log.n_clipped_weights == 1
    np.testing.assert_array_equal(log.weights[0, log.hemisphere == 0], [63])
    history = log.weight_history["program0"]
    np.testing.assert_allclose(history.times_us, [40.0, 90.0])
    assert history.values.shape == (2, 1, 1)
    np.testing.assert_array_equal(history.values[:, 0, 0], [40, 63])
    dense = log.dense_weights(cfg.synapse_weights)
    assert dense[0, 0, 0] == 63 and dense.sum() == 63


def test_weights_assigned_as_floats_are_rounded_and_clipped():
    cfg, label = psp_config()
    cfg.synapse_weights[0, 0, 1] = 5
    cfg.row_modes[0, 0] = ROW_EXC

    def kernel(ctx):
        ctx.weights = np.array([[-3.2, 7.6]])

    log = VirtualChip.ideal().run(cfg, duration_us=2.0, plasticity=PPUProgram(kernel)).plasticity
    np.testing.assert_array_equal(log.weights, [[0, 8]])
    assert log.n_clipped_weights == 1

    def bad(ctx):
        ctx.weights += 0.5  # float arithmetic on 6-bit weights

    with pytest.raises(KernelError) as info:
        VirtualChip.ideal().run(cfg, duration_us=2.0, plasticity=PPUProgram(bad))
    assert isinstance(info.value.__cause__, TypeError)


def test_program_tracks_synapses_that_start_at_weight_zero():
    cfg, label = psp_config()
    cfg.synapse_weights[0, 0, 0] = 0  # nothing in use: the row passes no current
    mask = np.zeros((2, 256, 256), dtype=bool)
    mask[0, 0, 0] = True
    events = np.array([10.0, 60.0])

    def kernel(ctx):
        ctx.weights[:] = 30

    result = VirtualChip.ideal().run(
        cfg,
        Stimulus(events, [label] * 2),
        duration_us=100.0,
        plasticity=PPUProgram(kernel, 40.0, synapses=mask),
    )
    heights = psp_heights(result, events)
    assert abs(heights[0]) <= 2
    assert heights[1] > 30


# --- CapMem --------------------------------------------------------------------------------------


def test_capmem_written_at_the_start_equals_the_configuration():
    cfg = tonic_config(circuits=range(8), bias=200)
    target = cfg.copy()
    thresholds = 520 + 10 * np.arange(8)
    target.v_threshold[:8] = thresholds
    target.i_bias_const[3] = 350

    def kernel(ctx):
        ctx.capmem["v_threshold"][:, :8] = thresholds
        bias = ctx.capmem["i_bias_const"]
        bias[:, 3] = 350

    chip = VirtualChip.ideal()
    want = chip.run(target, duration_us=50.0, trials=2)
    got = chip.run(cfg, duration_us=50.0, trials=2, plasticity=PPUProgram(kernel, 0.0))
    assert want.spike_counts().sum() > 20
    np.testing.assert_array_equal(got.spike_circuits, want.spike_circuits)
    np.testing.assert_array_equal(got.spike_timestamps, want.spike_timestamps)
    np.testing.assert_array_equal(got.cadc, want.cadc)
    np.testing.assert_array_equal(got.plasticity.capmem["v_threshold"][:, :8], [thresholds] * 2)


def test_capmem_per_trial_and_clipping():
    cfg = tonic_config(circuits=[5], bias=250)

    def kernel(ctx):
        if ctx.trial == 1:
            ctx.capmem["i_bias_const"][5] = 2000  # clipped to 1022: much faster spiking
        ctx.capmem["v_reset"][6] = -4  # clipped to 0 (a circuit that does nothing)

    result = VirtualChip.ideal().run(
        cfg, duration_us=100.0, trials=2, plasticity=PPUProgram(kernel, 20.0, per_trial=True)
    )
    counts = result.spike_counts()[:, 5]
    assert counts[1] > 1.5 * counts[0] > 0
    log = result.plasticity
    np.testing.assert_array_equal(log.capmem_clipped, [3])  # v_reset in both trials
    assert log.capmem["i_bias_const"][:, 5].tolist() == [250, 1022]
    with pytest.raises(KernelError, match="no such CapMem cell"):
        VirtualChip.ideal().run(cfg, duration_us=5.0, plasticity=PPUProgram(lambda ctx: ctx.capmem["tau"]))


# --- CADC, records, errors, batches ------------------------------------------------------------------


def test_cadc_sample_of_the_tick():
    cfg = tonic_config(circuits=[2], bias=200)
    seen = []

    def kernel(ctx):
        seen.append((ctx.cadc_time_us, ctx.cadc[0].copy()))

    result = VirtualChip.ideal().run(cfg, duration_us=20.0, plasticity=PPUProgram(kernel, 1.0, 3.4, 3))
    assert [t for t, _ in seen] == pytest.approx([0.0, 3.4, 6.8])  # samples at 0, 1.7, 3.4, ...
    for t, sample in seen:
        k = int(np.argmin(np.abs(result.cadc_times_us - t)))
        np.testing.assert_array_equal(sample, result.cadc[0, k])
    cfg.cadc_enable = False
    none = []
    VirtualChip.ideal().run(
        cfg, duration_us=5.0, plasticity=PPUProgram(lambda ctx: none.append(ctx.cadc), 2.0)
    )
    assert none == [None]


def test_records_are_kept_per_program_and_name():
    def kernel(ctx):
        ctx.record("time", ctx.time_us)
        ctx.record("vector", np.arange(3) * ctx.tick)
        if ctx.tick == 1:
            ctx.record("ragged", np.arange(2))
        else:
            ctx.record("ragged", np.arange(ctx.tick + 3))

    result = VirtualChip.ideal().run(
        ChipConfig(), duration_us=5.0, plasticity=PPUProgram(kernel, 0.0, 2.0, 3)
    )
    rec = result.plasticity_records["program0"]
    np.testing.assert_allclose(rec["time"].values, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(rec["vector"].values, [[0, 0, 0], [0, 1, 2], [0, 2, 4]])
    assert isinstance(rec["ragged"].values, list) and len(rec["ragged"].values) == 3
    np.testing.assert_array_equal(rec["time"].trials, [-1, -1, -1])


def test_kernel_exception_propagates_with_the_result_so_far():
    cfg = tonic_config()

    def kernel(ctx):
        ctx.record("t", ctx.time_us)
        if ctx.tick == 3:
            raise ValueError("boom")

    with pytest.raises(KernelError, match="boom") as info:
        VirtualChip.ideal().run(
            cfg, duration_us=100.0, plasticity=PPUProgram(kernel, 5.0, 10.0, None, name="rule")
        )
    err = info.value
    assert isinstance(err.__cause__, ValueError)
    assert (err.program, err.tick, err.time_us, err.trial) == ("rule", 3, pytest.approx(35.0), None)
    partial = err.result
    assert partial.duration_us == pytest.approx(35.0)
    assert partial.spike_counts().sum() > 0
    assert partial.spike_times_us.max() < 35.0
    assert partial.cadc.shape[1] == partial.cadc_times_us.size == 21  # samples at 0 .. 34 us
    np.testing.assert_allclose(partial.plasticity_records["rule"]["t"].values, [5.0, 15.0, 25.0, 35.0])
    full = VirtualChip.ideal().run(cfg, duration_us=100.0)
    before = full.spike_times_us < 35.0
    np.testing.assert_array_equal(partial.spike_timestamps, full.spike_timestamps[before])


def test_batched_trials_see_their_own_state():
    """Trials with different pre-post delays: a batched kernel sees each trial's sensors,
    equal to single-trial runs; a per-trial kernel sees the same."""
    cfg, drive, probe, mask = pair_config()
    deltas = [2.0, 8.0, -4.0]
    stim = Stimulus.from_trials([([50.0, 50.0 - d], [drive, probe]) for d in deltas])
    chip = VirtualChip.ideal(dt_us=DT)
    batched, _ = read_sensors(chip, cfg, stim, mask, 140.0, trials=3)
    singles = [read_sensors(chip, cfg, stim.trial(k), mask, 140.0)[0] for k in range(3)]
    for k in range(3):
        assert batched["causal"][k] == singles[k]["causal"][0]
        assert batched["acausal"][k] == singles[k]["acausal"][0]
    assert batched["causal"][0] > batched["causal"][1] > 0 == batched["causal"][2]
    assert batched["acausal"][2] > 0

    per_trial = {}

    def kernel(ctx):
        per_trial[ctx.trial] = int(ctx.causal[ctx.synapse_index(0, 2, 0)])
        assert ctx.weights.ndim == 1 and ctx.spike_counts.shape == (512,)

    result = chip.run(
        cfg,
        stim,
        duration_us=150.0,
        trials=3,
        threads=2,
        plasticity=PPUProgram(kernel, 140.0, synapses=mask, per_trial=True),
    )
    assert [per_trial[k] for k in range(3)] == batched["causal"].tolist()
    assert result.plasticity_records == {"program0": {}}
    err_trials = []

    def failing(ctx):
        err_trials.append(ctx.trial)
        if ctx.trial == 1:
            raise RuntimeError("trial 1")

    with pytest.raises(KernelError) as info:
        chip.run(cfg, stim, duration_us=20.0, trials=3, plasticity=PPUProgram(failing, 5.0, per_trial=True))
    assert info.value.trial == 1 and err_trials == [0, 1]


def test_results_do_not_depend_on_threads():
    cfg, drive, probe, mask = pair_config()
    stim = Stimulus.from_trials([([50.0, 50.0 - d], [drive, probe]) for d in (1.0, 3.0, 5.0, -2.0)])

    def kernel(ctx):
        ctx.record("c", ctx.causal.copy())
        ctx.weights += 1

    runs = [
        VirtualChip.ideal(dt_us=DT).run(
            cfg,
            stim,
            duration_us=100.0,
            trials=4,
            threads=t,
            plasticity=PPUProgram(kernel, 0.0, 5.0, None, synapses=mask),
        )
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(runs[0].spike_timestamps, runs[1].spike_timestamps)
    np.testing.assert_array_equal(
        runs[0].plasticity_records["program0"]["c"].values, runs[1].plasticity_records["program0"]["c"].values
    )
