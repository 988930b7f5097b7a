"""The compiled engine and the plain-NumPy reference (:mod:`cysim.reference`) agree.

Random small networks on the ideal chip (no mismatch, no noise) exercise every path of
the integrator: external stimulus over several trials, excitatory and inhibitory rows
behind drivers with row-select addresses, recurrent outputs onto several buses, a regular
background generator, AdEx exponential term and adaptation, conductance-based input, bias
currents (source and sink), CADC and MADC readout. The reference recomputes routing and
propagators itself, so agreement checks the routing tables and propagators of
:func:`cysim.engine.prepare` as well as the compiled step loop.
"""

from __future__ import annotations

import numpy as np
import pytest

from cysim import ChipConfig, Stimulus, VirtualChip, engine, reference
from cysim import constants as C
from cysim.physics import NOISE

DURATION_US = 100.0
TRIALS = 3


def random_network(seed: int) -> tuple[ChipConfig, Stimulus, dict]:
    """A random small network using every feature of the chip; returns its circuit groups."""
    rng = np.random.default_rng(seed)
    n_used = int(rng.integers(20, 61))
    used = np.sort(rng.choice(C.N_CIRCUITS, n_used, replace=False))
    cfg = ChipConfig()

    def per_circuit(low, high, default):
        values = np.full(C.N_CIRCUITS, default)
        values[used] = rng.integers(low, high + 1, n_used)
        return values

    cfg.v_leak = per_circuit(370, 430, 400)
    cfg.v_reset = per_circuit(320, 370, 350)
    cfg.v_threshold = per_circuit(520, 640, 700)
    cfg.i_bias_leak = per_circuit(400, 620, 500)
    cfg.i_bias_syn_exc = per_circuit(400, 700, 500)
    cfg.i_bias_syn_inh = per_circuit(400, 700, 500)
    cfg.i_syn_gm_exc = per_circuit(300, 700, 500)
    cfg.i_syn_gm_inh = per_circuit(300, 700, 500)
    cfg.refractory_time = per_circuit(10, 90, 60)

    def pick(fraction):
        mask = np.zeros(C.N_CIRCUITS, dtype=bool)
        mask[used[rng.random(n_used) < fraction]] = True
        return mask

    groups = {"used": used}
    cfg.enable_spiking = pick(0.85)
    # AdEx: exponential run-away below a high comparator threshold, adaptation
    exp_on = pick(0.25)
    cfg.enable_exponential = exp_on
    v_exp, v_th, i_exp = cfg.v_exp[:], cfg.v_threshold[:], cfg.i_exp[:]
    v_exp[exp_on] = rng.integers(530, 600, exp_on.sum())
    v_th[exp_on] = 800
    i_exp[exp_on] = rng.integers(150, 400, exp_on.sum())
    cfg.v_exp, cfg.v_threshold, cfg.i_exp = v_exp, v_th, i_exp
    adapt = pick(0.25)
    cfg.enable_adaptation = adapt
    for name, low, high in (("i_adapt_a", 20, 300), ("i_adapt_b", 100, 600), ("i_adapt_tau", 300, 700)):
        values = getattr(cfg, name)[:]
        values[adapt] = rng.integers(low, high + 1, adapt.sum())
        setattr(cfg, name, values)
    coba = pick(0.25)
    cfg.enable_coba = coba
    bias = pick(0.25)
    cfg.enable_bias_current = bias
    cfg.bias_current_sink = bias & (rng.random(C.N_CIRCUITS) < 0.3)
    i_bias = cfg.i_bias_const[:]
    i_bias[bias] = rng.integers(50, 300, bias.sum())
    cfg.i_bias_const = i_bias
    groups.update(
        exp=np.flatnonzero(exp_on),
        adapt=np.flatnonzero(adapt),
        coba=np.flatnonzero(coba),
        bias=np.flatnonzero(bias),
    )

    # synapses: a few drivers per hemisphere, small address space so events hit often
    weights = np.zeros((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), dtype=np.int64)
    labels = np.zeros_like(weights)
    modes = np.zeros((C.N_HEMISPHERES, C.N_ROWS), dtype=np.int64)
    select = np.zeros((C.N_HEMISPHERES, C.N_DRIVERS), dtype=np.int64)
    enable = np.ones((C.N_HEMISPHERES, C.N_DRIVERS), dtype=bool)
    for h in range(C.N_HEMISPHERES):
        columns = used[used // C.N_COLUMNS == h] % C.N_COLUMNS
        drivers = rng.choice(C.N_DRIVERS, 16, replace=False)
        select[h, drivers] = rng.integers(0, 4, drivers.size)
        enable[h, drivers[:2]] = False  # a disabled driver must not pass events
        for d in drivers:
            for r in (2 * d, 2 * d + 1):
                modes[h, r] = rng.choice([C.ROW_OFF, C.ROW_EXC, C.ROW_EXC, C.ROW_INH])
                labels[h, r, columns] = rng.integers(0, 8, columns.size)
                hit = rng.random(columns.size) < 0.4
                top = 63 if modes[h, r] == C.ROW_EXC else 40
                weights[h, r, columns[hit]] = rng.integers(1, top + 1, hit.sum())
    cfg.synapse_weights, cfg.synapse_labels, cfg.row_modes = weights, labels, modes
    cfg.driver_row_select, cfg.driver_enable = select, enable

    def addresses(size):
        return (rng.integers(0, 4, size) << 6) | rng.integers(0, 8, size)

    # recurrent outputs of some circuits onto one or two buses
    out = pick(0.5)
    buses = np.zeros(C.N_CIRCUITS, dtype=np.int64)
    buses[out] = (1 << rng.integers(0, 8, out.sum())) | (rng.random(out.sum()) < 0.3) << rng.integers(
        0, 8, out.sum()
    )
    cfg.enable_output, cfg.output_buses = out, buses
    address = np.zeros(C.N_CIRCUITS, dtype=np.int64)
    address[out] = addresses(out.sum())
    cfg.output_address = address

    # one regular background generator
    cfg.bg_mode[0] = C.BG_REGULAR
    cfg.bg_period_cycles[0] = int(rng.integers(400, 2000))
    cfg.bg_buses[0] = int(rng.integers(1, 256))
    cfg.bg_address[0] = int(addresses(1)[0])

    # MADC: a tonic spiker (bias current far above threshold) and one other circuit
    tonic = int(rng.choice(used))
    other = int(rng.choice(used[used % 2 != tonic % 2]))
    for name, value in (
        ("enable_spiking", True),
        ("enable_bias_current", True),
        ("bias_current_sink", False),
        ("i_bias_const", 600),
        ("v_threshold", 600),
    ):
        getattr(cfg, name)[tonic] = value
    cfg.madc_circuits = [tonic, other]
    groups["tonic"] = tonic

    per_trial = []
    for _ in range(TRIALS):
        k = int(rng.integers(15, 40))
        times = np.sort(rng.uniform(0.0, 0.8 * DURATION_US, k))
        labs = (rng.integers(0, C.N_BUSES, k) << C.ADDRESS_BITS) | addresses(k)
        per_trial.append((times, labs))
    return cfg, Stimulus.from_trials(per_trial), groups


def spike_mismatch(a, b, trials=TRIALS):
    """Largest spike-time difference [FPGA ticks] of matched spikes, or inf if counts differ."""
    worst = 0.0
    for trial in range(trials):
        ca, ta = a.spike_circuits[a.spike_trials == trial], a.spike_timestamps[a.spike_trials == trial]
        cb, tb = b.spike_circuits[b.spike_trials == trial], b.spike_timestamps[b.spike_trials == trial]
        for c in np.union1d(ca, cb):
            sa, sb = np.sort(ta[ca == c]), np.sort(tb[cb == c])
            if sa.size != sb.size:
                return np.inf
            if sa.size:
                worst = max(worst, float(np.abs(sa - sb).max()))
    return worst


@pytest.mark.parametrize(("seed", "dt_us"), [(0, 0.05), (1, 0.05), (2, 0.05), (3, 0.03), (4, 0.02), (5, 0.1)])
def test_compiled_and_reference_agree(seed, dt_us):
    cfg, stim, groups = random_network(seed)
    compiled, ref = (
        VirtualChip.ideal(dt_us=dt_us, engine=name).run(cfg, stim, duration_us=DURATION_US, trials=TRIALS)
        for name in ("compiled", "reference")
    )

    # the scenario is not trivial: many spikes, among them from AdEx, COBA, biased circuits
    counts = compiled.spike_counts()
    spiking = np.flatnonzero(counts.sum(axis=0))
    assert counts.sum() >= 30
    assert spiking.size >= 5
    for group in ("exp", "coba", "bias"):
        assert np.isin(groups[group], spiking).any(), group
    assert counts[:, groups["tonic"]].min() >= 2

    # spikes: same counts per trial and circuit, times within one integration step
    np.testing.assert_array_equal(ref.spike_counts(), counts)
    assert spike_mismatch(compiled, ref) <= dt_us / C.FPGA_TICK_US + 1

    # CADC within one LSB except (rarely) right after a spike that moved by a step
    assert ref.cadc.shape == compiled.cadc.shape == (TRIALS, int(np.ceil(DURATION_US / 1.7)), C.N_CIRCUITS)
    dc = np.abs(compiled.cadc.astype(int) - ref.cadc.astype(int))
    assert np.mean(dc > 1) <= 1e-3

    # MADC (a spiking and another circuit) within 2 LSB on almost every sample
    n_madc = int(np.ceil(DURATION_US / C.MADC_PERIOD_US))
    assert ref.madc.shape == compiled.madc.shape == (TRIALS, n_madc, 2)
    dm = np.abs(compiled.madc.astype(int) - ref.madc.astype(int))
    assert np.mean(dm > 2) <= 2e-3


def reference_readout(inp, cadc_v, madc_v):
    """Reference CADC (global circuit order) and MADC values [LSB], clipped to the ADC ranges."""
    cadc = np.empty_like(cadc_v)
    cadc[:, :, inp["order"]] = cadc_v
    return np.clip(cadc, 0, C.CADC_MAX), np.clip(madc_v, 0, C.MADC_MAX)


@pytest.mark.parametrize(("seed", "dt_us"), [(0, 0.05), (6, 0.04)])
def test_unquantised_outputs_agree_to_rounding(seed, dt_us):
    """Spike times agree to rounding; compiled ADC codes are the rounded reference values."""
    cfg, stim, _ = random_network(seed)
    chip = VirtualChip.ideal(dt_us=dt_us)
    seeds = np.arange(TRIALS, dtype=np.uint64)
    inp = engine.prepare(cfg, chip._physics, stim, DURATION_US, TRIALS, seeds, dt_us)
    c_trial, c_local, c_time, c_cadc, c_madc = engine.simulate(inp, 1)
    r_trial, r_local, r_time, r_cadc, r_madc = reference.simulate(inp, cfg, chip._physics)
    assert c_trial.size >= 30
    for got, want in ((r_trial, c_trial), (r_local, c_local)):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)
    assert r_time.dtype == np.float64
    np.testing.assert_allclose(r_time, c_time, rtol=0, atol=1e-9)
    assert r_cadc.dtype == r_madc.dtype == np.float64
    assert r_cadc.shape == c_cadc.shape and r_madc.shape == c_madc.shape
    cadc, madc = reference_readout(inp, r_cadc, r_madc)
    assert np.abs(cadc - c_cadc).max() <= 0.5 + 1e-6
    assert np.abs(madc - c_madc).max() <= 0.5 + 1e-6


@pytest.mark.parametrize(("seed", "dt_us"), [(20, 0.05), (21, 0.013), (22, 0.1)])
def test_extreme_settings_agree(seed, dt_us):
    """Corner cases: no refractory step, many background events per step, membranes above
    threshold at rest, reset above threshold, a vanishing exponential slope (clamped
    exponent), maximal synaptic gain."""
    cfg, stim, groups = random_network(seed)
    used = groups["used"]
    cfg.refractory_time = 0  # 0.035 us: 1 step at dt 0.05, none at dt 0.1
    cfg.bg_mode[1], cfg.bg_period_cycles[1], cfg.bg_buses[1], cfg.bg_address[1] = C.BG_REGULAR, 1, 0b10001, 0
    cfg.bg_mode[2], cfg.bg_period_cycles[2], cfg.bg_buses[2], cfg.bg_address[2] = (
        C.BG_REGULAR,
        7,
        0b100010,
        65,
    )
    for name, sel, value in (
        ("v_leak", used[:3], 800),
        ("v_reset", used[3:5], 900),
        ("i_exp", used, 0),
        ("i_syn_gm_exc", used, 1022),
    ):
        values = getattr(cfg, name)[:]
        values[sel] = value
        setattr(cfg, name, values)
    chip = VirtualChip.ideal(dt_us=dt_us)
    inp = engine.prepare(cfg, chip._physics, stim.trial(0), 40.0, 2, np.arange(2, dtype=np.uint64), dt_us)
    c_trial, c_local, c_time, c_cadc, c_madc = engine.simulate(inp, 2)
    r_trial, r_local, r_time, r_cadc, r_madc = reference.simulate(inp, cfg, chip._physics)
    assert c_trial.size > 1000
    np.testing.assert_array_equal(r_trial, c_trial)
    np.testing.assert_array_equal(r_local, c_local)
    np.testing.assert_allclose(r_time, c_time, rtol=0, atol=1e-9)
    cadc, madc = reference_readout(inp, r_cadc, r_madc)
    assert np.abs(cadc - c_cadc).max() <= 0.5 + 1e-6
    assert np.abs(madc - c_madc).max() <= 0.5 + 1e-6


def test_poisson_background_statistically_equivalent():
    """Poisson generators differ sample by sample (other RNG) but drive the same statistics."""
    cfg = ChipConfig()
    cfg.cadc_period_us = 5.0
    weights, modes = cfg.synapse_weights[:], cfg.row_modes[:]
    weights[0, 0, :40] = 3  # row 0 (driver 0, bus 0) excitatory onto columns 0..39
    weights[0, 1, 40:80] = 3  # row 1 inhibitory onto columns 40..79
    modes[0, :2] = [C.ROW_EXC, C.ROW_INH]
    cfg.synapse_weights, cfg.row_modes = weights, modes
    cfg.bg_mode[0], cfg.bg_period_cycles[0], cfg.bg_buses[0], cfg.bg_address[0] = C.BG_POISSON, 250, 1, 0
    # mean response to shot noise (CUBA): rate * amplitude * tau_syn * tau_mem, in LSB
    p = VirtualChip.ideal()._physics.circuit_parameters(
        {n: cfg.array(n).astype(np.float64) for n in C.CAPMEM_FIELDS},
        {n: cfg.array(n) for n in C.SWITCH_FIELDS},
    )
    exc = np.arange(80) < 40
    amp = 3 * np.where(exc, p.syn_gain_exc[:80], -p.syn_gain_inh[:80])
    tau_syn = np.where(exc, p.tau_syn_exc_us[:80], p.tau_syn_inh_us[:80])
    expected = amp / (250 * C.BG_CLOCK_US) * tau_syn * p.tau_mem_us[:80] * C.CADC_LSB_PER_V
    stats = {}
    for name in ("compiled", "reference"):
        cadc = VirtualChip.ideal(engine=name).run(cfg, duration_us=1000.0, trials=2).cadc.astype(float)
        dev = cadc[:, 10:, :80] - cadc[:, :1, :80]  # after 50 us, relative to the rest at t = 0
        stats[name] = dev.mean(axis=(0, 1)), dev.std(axis=1).mean(axis=0)
        np.testing.assert_allclose(stats[name][0], expected, rtol=0.15, err_msg=name)
        assert np.all(dev.std(axis=1) > 1.0), name  # the input is irregular
    for k in range(2):  # mean and standard deviation
        for sl in (exc, ~exc):
            got, want = stats["reference"][k][sl].mean(), stats["compiled"][k][sl].mean()
            assert got == pytest.approx(want, rel=0.1)


def test_reference_membrane_noise_magnitude():
    """With noise on, resting membranes scatter by the OU sigma plus the CADC noise."""
    cfg = ChipConfig()
    cfg.cadc_period_us = 5.0
    weights = cfg.synapse_weights[:]
    weights[0, 0, :64] = 1  # integrated (active) circuits that never receive an event
    cfg.synapse_weights = weights
    cfg.row_modes[0, 0] = C.ROW_EXC
    chip = VirtualChip(seed=3, mismatch=False, noise=True)
    inp = engine.prepare(
        cfg, chip._physics, Stimulus(), 600.0, 2, np.array([5, 6], dtype=np.uint64), chip.dt_us
    )
    assert inp["n"] == 64
    # OU membrane noise, readout noise and the rounding to integer codes
    expected = np.sqrt((NOISE["membrane_v"] * C.CADC_LSB_PER_V) ** 2 + NOISE["cadc_lsb"] ** 2 + 1 / 12)
    stds = {}
    ref = reference.simulate(inp, cfg, chip._physics)
    active = inp["order"][:64]
    for name, cadc in (
        ("reference", np.floor(reference_readout(inp, ref[3], ref[4])[0] + 0.5)),
        ("compiled", engine.simulate(inp, 1)[3].astype(np.float64)),
    ):
        cadc = cadc[:, 10:]  # skip the first 50 us: membranes start at E_L
        for part, sl in (("active", active), ("passive", np.setdiff1d(np.arange(C.N_CIRCUITS), active))):
            x = cadc[:, :, sl]
            stds[name, part] = float(np.sqrt(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2)))
    for key, std in stds.items():
        assert std == pytest.approx(expected, rel=0.3), key
    for part in ("active", "passive"):
        assert stds["reference", part] == pytest.approx(stds["compiled", part], rel=0.1), part


@pytest.mark.parametrize("engine_name", ["reference", "compiled"])
def test_cadc_sample_rounded_to_the_end_of_the_run(engine_name):
    """A CADC sample time that rounds to the last grid point reads the final state."""
    # dt 0.03: the sample at 1.7 us lies on step rint(56.67) = 57 = n_steps of a 1.71 us run
    result = VirtualChip.ideal(dt_us=0.03, engine=engine_name).run(ChipConfig(), duration_us=1.71)
    assert result.cadc_times_us.tolist() == [0.0, 1.7]
    assert result.cadc[0, 0].min() > 50  # the resting membranes, near 100 LSB
    np.testing.assert_array_equal(result.cadc[0, 1], result.cadc[0, 0])
