"""The built-in pair-based STDP program (``cysim.ppu.STDPProgram``): the compiled path the
engine runs at its ticks against the program's Python kernel (``compiled=False``), which
must give the same weights, sensors and spikes bit for bit."""

import numpy as np
import pytest

from cysim import ROW_EXC, ROW_INH, ROW_OFF, ChipConfig, KernelError, PlasticityError, PPUProgram, VirtualChip
from cysim import constants as C
from cysim import plasticity as plastic_run
from cysim.ppu import STDPProgram

SHAPE = (C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS)


def network(rows=24, seed=1):
    """A recurrent LIF network on ``rows`` synapse rows per hemisphere (every synapse of
    them in use), driven by Poisson background generators; busy enough that sensors cross
    their first step between two ticks."""
    rng = np.random.default_rng(seed)
    cfg = ChipConfig()
    cfg.enable_spiking = True
    cfg.enable_output = True
    cfg.i_bias_leak = 560
    cfg.refractory_time = 60
    cfg.v_leak = 330
    cfg.v_reset = 300
    cfg.v_threshold = 440
    modes = np.full(C.N_ROWS, ROW_OFF)
    modes[:rows] = np.where(np.arange(rows) % 4 == 3, ROW_INH, ROW_EXC)
    cfg.row_modes = np.broadcast_to(modes, (2, C.N_ROWS))
    cfg.synapse_weights = rng.integers(1, 20, size=SHAPE)
    cfg.synapse_labels = rng.integers(0, 4, size=SHAPE)
    cfg.driver_row_select = rng.integers(0, 2, size=(2, C.N_DRIVERS))
    own = (np.arange(512) // 256) * 4 + rng.integers(0, 4, 512)
    cfg.output_buses = 1 << own
    cfg.output_address = rng.integers(0, 128, 512)
    cfg.bg_mode = C.BG_POISSON
    cfg.bg_period_cycles = 250
    cfg.bg_buses = 0xFF
    cfg.bg_address = rng.integers(0, 128, 8)
    cfg.bg_seed = np.arange(8)
    cfg.corr_amp_causal = [128, 200]
    cfg.corr_amp_acausal = [128, 160]
    return cfg


def run_both(cfg, make, chip=None, duration_us=60.0, trials=1, extra=(), **kwargs):
    """The same run with the compiled program(s) ``make(compiled)`` and with their Python
    kernels; returns both results."""
    out = []
    for compiled in (True, False):
        programs = list(extra) + list(np.atleast_1d(make(compiled)))
        c = chip or VirtualChip.ideal()
        out.append(
            c.run(
                cfg,
                duration_us=duration_us,
                trials=trials,
                plasticity=programs,
                trial_seeds=np.arange(trials),
                **kwargs,
            )
        )
    return out


def assert_same(a, b, n_changed=1):
    np.testing.assert_array_equal(a.spike_trials, b.spike_trials)
    np.testing.assert_array_equal(a.spike_circuits, b.spike_circuits)
    np.testing.assert_array_equal(a.spike_timestamps, b.spike_timestamps)
    np.testing.assert_array_equal(a.cadc, b.cadc)
    la, lb = a.plasticity, b.plasticity
    np.testing.assert_array_equal(la.weights, lb.weights)
    np.testing.assert_array_equal(la.tick_times_us, lb.tick_times_us)
    assert la.tick_programs == lb.tick_programs
    np.testing.assert_array_equal(la.weights_clipped, lb.weights_clipped)
    assert set(la.weight_history) == set(lb.weight_history)
    for name in la.weight_history:
        np.testing.assert_array_equal(la.weight_history[name].values, lb.weight_history[name].values)
    assert a.spike_counts().sum() > 100  # the comparison saw activity
    return la


def changed(log, cfg, trial=0):
    initial = np.asarray(cfg.synapse_weights)[log.hemisphere, log.row, log.column]
    return int(np.count_nonzero(log.weights[trial] != initial))


# --- compiled == Python ------------------------------------------------------------------------------


@pytest.mark.parametrize("dependence", ["additive", "multiplicative"])
@pytest.mark.parametrize("reset", [True, False])
def test_compiled_program_equals_its_python_kernel(dependence, reset):
    cfg = network()

    def make(compiled):
        return STDPProgram(
            0.0,
            1.0,
            None,
            A_plus=0.06,
            A_minus=0.05,
            w_min=2.0,
            w_max=40.0,
            dependence=dependence,
            reset_correlation=reset,
            compiled=compiled,
            record_weights=True,
        )

    a, b = run_both(cfg, make, trials=2, threads=1)
    log = assert_same(a, b)
    assert changed(log, cfg) > 50


def test_per_synapse_parameters_bounds_and_clipping_counts():
    """Per-synapse parameter arrays, a lower bound above the initial weights (all of them
    move at the first tick) and an upper bound above 63 (weights clipped and counted)."""
    cfg = network(rows=16)
    rng = np.random.default_rng(5)
    a_plus = rng.uniform(0.0, 0.3, SHAPE)
    a_minus = rng.uniform(0.0, 0.2, SHAPE)
    w_max = np.where(rng.random(SHAPE) < 0.5, 80.0, 30.5)

    def make(compiled):
        return STDPProgram(
            0.0,
            0.7,
            None,
            A_plus=a_plus,
            A_minus=a_minus,
            w_min=3.2,
            w_max=w_max,
            compiled=compiled,
            eta_causal=20.0,
        )

    a, b = run_both(cfg, make, duration_us=80.0)
    log = assert_same(a, b)
    assert log.n_clipped_weights > 0
    assert log.weights.min() >= 4  # ceil(3.2)


@pytest.mark.parametrize("dependence", ["additive", "multiplicative"])
def test_per_synapse_dependence_kept_with_each_synapse(dependence):
    """Per-synapse ``w_min``/``w_max`` and nothing else per synapse: the engine keeps them
    (and the bounds of a new weight) in each synapse's state instead of a parameter row;
    the weights are those of the Python kernel all the same, with ``w_min = w_max`` (frozen
    weights, as in ``benchmarks/plasticity.py``) as well."""
    cfg = network(rows=16)
    rng = np.random.default_rng(7)
    w_min = rng.integers(0, 8, SHAPE) + 0.5 * rng.integers(0, 2, SHAPE)
    w_max = w_min + rng.integers(5, 60, SHAPE)
    initial = np.asarray(cfg.synapse_weights, dtype=np.float64)
    for low, high in ((w_min, w_max), (initial, initial)):

        def make(compiled, low=low, high=high):
            return STDPProgram(
                0.0, 0.8, None, A_plus=0.1, A_minus=0.08, w_min=low, w_max=high,
                dependence=dependence, compiled=compiled,
            )  # fmt: skip

        a, b = run_both(cfg, make, duration_us=60.0, trials=2, threads=1)
        log = assert_same(a, b)
        assert changed(log, cfg) == 0 if high is initial else changed(log, cfg) > 20


def test_per_synapse_parameters_are_kept_in_the_state_only_where_exact():
    rows = np.tile([0.05, 0.04, 2.0, 40.0, 2.0, 40.0, 30.0, 31.0], (4, 1))
    rows[:, 2] = [1.0, 2.5, 3.0, 0.0]  # w_min per synapse
    rows[:, 4] = np.ceil(rows[:, 2] - 1e-9)
    rows[1, 0] = 0.06  # A_plus of one synapse
    block, own = plastic_run._per_position_apart(rows)
    assert own["bounds"].dtype == np.int16 and own["wdep"].dtype == np.float32
    np.testing.assert_array_equal(own["wdep"][:, 0], rows[:, 2])
    np.testing.assert_array_equal(own["bounds"], rows[:, 4:6])
    np.testing.assert_array_equal(block[own["row"]][:, (0, 1, 6, 7)], rows[:, (0, 1, 6, 7)])
    assert block.shape == (2, 8)
    other = rows.copy()
    other[1, 3] = 40.1  # not a float32
    assert plastic_run._per_position_apart(other)[1] is None
    many = np.tile(rows[:1], (40_000, 1))
    many[:, 0] = np.arange(40_000)  # more distinct rows than an int16 counts
    block, own = plastic_run._per_position_apart(many)
    assert own is None and block.shape == many.shape


def test_trace_exp_within_one_ulp_of_exp():
    """The engine's inlined exp of the correlation traces (no libm call in the sensor loops)."""
    from cysim import _engine

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-40.0, 1.0, 200_000), np.linspace(-40.0, 1.0, 4001), [0.0, -0.0, -1e-300]])
    got, want = _engine.trace_exp(x), np.exp(x)
    assert np.max(np.abs(got - want) / np.spacing(want)) <= 1.0
    assert _engine.trace_exp(np.array([0.0]))[0] == 1.0


def test_same_with_noise_and_mismatch():
    cfg = network()
    chip_a, chip_b = VirtualChip(seed=3), VirtualChip(seed=3)
    out = []
    for chip, compiled in ((chip_a, True), (chip_b, False)):
        program = STDPProgram(0.0, 1.0, None, A_plus=0.05, A_minus=0.05, compiled=compiled)
        out.append(chip.run(cfg, duration_us=60.0, trials=2, trial_seeds=[11, 12], plasticity=program))
    log = assert_same(*out)
    assert changed(log, cfg) > 20


def test_python_programs_between_compiled_ticks():
    """A Python program that reads sensors, writes weights and empties some sensors at
    the same ticks (before and after the compiled one) sees and leaves the same state."""
    cfg = network(rows=16)

    def meddle(ctx):
        ctx.record("causal", ctx.causal.copy())
        ctx.record("acausal", ctx.acausal.copy())
        if ctx.tick % 3 == 1:
            w = ctx.weights
            w[:, ::7] = np.where(w[:, ::7] > 10, 70, w[:, ::7] + 1)  # > 63: clipped and counted
        if ctx.tick % 4 == 2:
            ctx.reset_correlation(np.arange(0, ctx.weights.shape[1], 5))

    def make(compiled):
        return STDPProgram(0.0, 1.0, None, A_plus=0.08, A_minus=0.06, compiled=compiled, name="stdp")

    for before in (True, False):
        python = PPUProgram(meddle, 0.0, 2.0, None, name="meddle")
        out = []
        for compiled in (True, False):
            programs = [python, make(compiled)] if before else [make(compiled), python]
            out.append(VirtualChip.ideal().run(cfg, duration_us=40.0, plasticity=programs))
        log = assert_same(*out)
        for name in ("causal", "acausal"):
            np.testing.assert_array_equal(
                out[0].plasticity_records["meddle"][name].values,
                out[1].plasticity_records["meddle"][name].values,
            )
        assert log.n_clipped_weights > 0


def test_several_compiled_programs_and_an_overlapping_one():
    cfg = network(rows=16)
    rng = np.random.default_rng(2)
    in_use = np.asarray(cfg.synapse_weights) > 0
    first = in_use & (rng.random(SHAPE) < 0.5)
    second = in_use & ~first
    overlap = first & (rng.random(SHAPE) < 0.2)  # shares synapses with "first": Python kernel

    def make(compiled):
        return [
            STDPProgram(
                0.0, 1.0, None, A_plus=0.05, A_minus=0.03, synapses=first, compiled=compiled, name="a"
            ),
            STDPProgram(
                0.5,
                1.5,
                None,
                A_plus=0.02,
                A_minus=0.06,
                dependence="multiplicative",
                synapses=second,
                compiled=compiled,
                name="b",
                record_weights=True,
            ),
            STDPProgram(
                0.0, 2.0, None, A_plus=0.01, A_minus=0.01, synapses=overlap, compiled=compiled, name="c"
            ),
        ]

    a, b = run_both(cfg, make, duration_us=50.0)
    assert_same(a, b)


def test_rarely_ticking_program_visits_every_synapse(monkeypatch):
    """When the list of sensors that crossed their first step grows too long (a program
    that ticks rarely while another empties sensors often), the next tick scans all."""
    monkeypatch.setattr(plastic_run, "FOUND_LIST_MIN", -(10**9))  # the list always overflows
    cfg = network(rows=16)
    python = PPUProgram(
        lambda ctx: ctx.reset_correlation(np.arange(0, ctx.weights.shape[1], 2)), 0.0, 0.5, None
    )

    def make(compiled):
        return STDPProgram(0.0, 10.0, None, A_plus=0.2, A_minus=0.2, compiled=compiled)

    a, b = run_both(cfg, make, duration_us=40.0, extra=[python])
    assert changed(assert_same(a, b), cfg) > 0


def test_results_do_not_depend_on_threads():
    cfg = network(rows=16)
    runs = [
        VirtualChip.ideal().run(
            cfg,
            duration_us=30.0,
            trials=3,
            threads=t,
            trial_seeds=[0, 1, 2],
            plasticity=STDPProgram(0.0, 1.0, None, A_plus=0.1, A_minus=0.1),
        )
        for t in (1, 2)
    ]
    assert_same(*runs)


def test_runs_reuse_the_buffers_of_earlier_runs_without_changing_results():
    """A chip's runs fill the engine buffers of its earlier runs (the larger of each name
    is kept): runs of other programs, sizes and trial counts in between leave the results
    of a run as on a fresh chip."""
    cfg = network(rows=16)

    def stdp():
        return STDPProgram(0.0, 1.0, None, A_plus=0.1, A_minus=0.1, record_weights=True)

    def run(chip, trials=2, program=None, duration_us=30.0):
        return chip.run(
            cfg,
            duration_us=duration_us,
            trials=trials,
            threads=1,
            trial_seeds=np.arange(trials),
            plasticity=program or stdp(),
        )

    chip = VirtualChip.ideal()
    first = run(chip)
    run(chip, trials=1, program=PPUProgram(lambda ctx: None, 0.0), duration_us=5.0)
    run(chip, trials=3)
    pool = chip._plastic_tables[1]["_session_arrays"]
    kept = pool["nat"]
    again = run(chip)
    # 3 trials of 32 bytes per synapse (4 doubles), and 64 bytes to align the state
    assert pool["nat"] is kept and kept.size == 3 * 4 * first.plasticity.weights.shape[1] + 8
    assert changed(assert_same(first, again), cfg) > 20
    assert_same(first, run(VirtualChip.ideal()))


def test_compiled_ticks_are_logged_and_kept_when_a_kernel_fails():
    cfg = network(rows=8)

    def fail(ctx):
        if ctx.tick == 2:
            raise ValueError("boom")

    programs = [STDPProgram(0.0, 1.0, None, name="stdp"), PPUProgram(fail, 0.5, 1.0, None, name="fail")]
    with pytest.raises(KernelError) as info:
        VirtualChip.ideal().run(cfg, duration_us=10.0, plasticity=programs)
    log = info.value.result.plasticity
    assert log.tick_programs == ("stdp", "fail", "stdp", "fail", "stdp", "fail")
    np.testing.assert_allclose(log.tick_times_us, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_nominal_sensor_amplitudes_by_default():
    cfg = network(rows=8)
    program = STDPProgram(0.0, 1.0, None)
    coords = (np.array([0, 1]), np.array([0, 0]), np.array([5, 5]))
    eta = program.arrays(cfg, coords)
    np.testing.assert_allclose(eta["eta_causal"], C.CORR_AMP_MAX_LSB * np.array([128, 200]) / C.CAPMEM_MAX)
    np.testing.assert_allclose(eta["eta_acausal"], C.CORR_AMP_MAX_LSB * np.array([128, 160]) / C.CAPMEM_MAX)
    a, b = run_both(cfg, lambda compiled: STDPProgram(0.0, 1.0, None, A_plus=0.1, compiled=compiled))
    assert_same(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dependence": "quadratic"}, "dependence"),
        ({"A_plus": np.inf}, "finite"),
        ({"w_max": np.zeros((2, 256))}, "shape"),
        ({"eta_causal": 0.0}, "> 0"),
        ({"A_minus": np.zeros(3), "synapses": np.zeros(SHAPE, dtype=bool)}, "0 values"),
    ],
)
def test_invalid_stdp_programs_are_refused(kwargs, match):
    with pytest.raises(PlasticityError, match=match):
        STDPProgram(0.0, 1.0, None, **kwargs)


def test_first_step_thresholds_are_exact():
    """The engine lists a sensor when its float32 accumulator reaches the threshold of
    ``first_step``: exactly when the readout exceeds the empty readout."""
    rng = np.random.default_rng(0)
    offh = np.concatenate([rng.normal(0.5, 3.0, 20000), [0.5, -0.7, 254.6, 255.5, 300.0, 1e-9, 0.9999999999]])
    thr = plastic_run.first_step(offh)

    def readout(acc):
        return np.floor(np.clip(acc.astype(np.float64) + offh, 0.0, 255.0))

    empty = readout(np.zeros(offh.size, dtype=np.float32))
    finite = np.isfinite(thr)
    assert np.all(readout(np.where(finite, thr, np.float32(0.0)))[finite] > empty[finite])
    below = np.nextafter(thr, np.float32(0.0))
    assert np.all(readout(np.where(finite, below, np.float32(0.0)))[finite] == empty[finite])
    assert np.all(readout(np.full(offh.size, np.float32(255.0)))[~finite] == empty[~finite])
