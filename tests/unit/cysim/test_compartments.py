"""Logical (multi-compartment) neurons of the virtual chip: switch validation, coupling,
spiking and reset of the joined membrane.

The membrane switches couple neighbouring membranes through a finite conductance ``g``
[1/us]; for ``c`` circuits of equal parameters the coupling term is ``-L V`` (``L`` the
chain's graph Laplacian). The mean of the compartments then follows one membrane of
``c``-fold capacitance exactly, and a compartment deviates from it only by the
differential modes (eigenvalues ``lambda_k > 0`` of ``L``, eigenvectors ``q_k``). For an
input current ``b0 exp(-t/tau_s)`` into compartment ``j`` the differential part of
compartment ``i`` is bounded by

    |V_i - mean V| <= b0 exp(-t/tau_s) sum_k |q_k[i] q_k[j]| / (lambda_k - 1/tau_s)

(the integral of ``exp(-lambda_k (t - s)) exp(-s/tau_s)``). The tests below hold the
measured traces to this bound plus the MADC's quantisation.
"""

import numpy as np
import pytest

from cysim import ROW_EXC, ChipConfig, ConfigError, Stimulus, VirtualChip, compartment_runs, event_label
from cysim import constants as C
from cysim import physics as P
from cysim.engine import compile_config

DT = 0.01
T_EVENT = 5.0
W = 40


def _config(c, columns, first=0, weight=W):
    cfg = ChipConfig()
    cfg.connect_membrane_right[first : first + c - 1] = True
    cfg.v_leak = 300
    cfg.i_bias_leak = 520  # tau_mem ~ 5.2 us
    cfg.i_bias_syn_exc = 420  # tau_syn ~ 5.5 us
    cfg.driver_row_select[0, 0] = 0
    cfg.row_modes[0, 0] = ROW_EXC
    for col in columns:
        cfg.synapse_weights[0, 0, col] = weight
    cfg.madc_circuits = (first, first + 1)
    return cfg


def _stimulus(times=(T_EVENT,)):
    return Stimulus(np.asarray(times, dtype=float), np.full(len(times), event_label(0, 0, 0)))


# --- configuration ------------------------------------------------------------------------
def test_switch_of_last_column_refused_and_config_unchanged():
    cfg = ChipConfig()
    with pytest.raises(
        ConfigError, match=r"circuit 255 is the last column of hemisphere 0.*Open this switch"
    ):
        cfg.connect_membrane_right[255] = True
    with pytest.raises(ConfigError, match="circuit 511 is the last column of hemisphere 1"):
        cfg.connect_membrane_right[300:] = True
    assert not np.asarray(cfg.connect_membrane_right).any()


def test_runs_longer_than_64_refused():
    cfg = ChipConfig()
    cfg.connect_membrane_right[0:63] = True  # 64 circuits: allowed
    assert [r.size for r in compartment_runs(cfg.connect_membrane_right)] == [64]
    with pytest.raises(
        ConfigError, match=r"circuits 0\.\.64 into one logical neuron of 65 circuits; allowed at most 64"
    ):
        cfg.connect_membrane_right[63] = True
    assert [r.size for r in compartment_runs(cfg.connect_membrane_right)] == [64]  # the write was undone
    cfg.connect_membrane_right[64:127] = True  # a second run after an open switch
    assert [r.size for r in compartment_runs(cfg.connect_membrane_right)] == [64, 64]


def test_switch_conductance_nominal_without_mismatch_spread_with():
    g_ideal = VirtualChip.ideal()._physics.switch_conductance
    assert np.allclose(g_ideal, P.SWITCH_CONDUCTANCE_PER_US)
    assert P.SWITCH_CONDUCTANCE_PER_US == pytest.approx(1.0 / (20e3 * 2.4e-12) / 1e6)  # 1/(R_on C) [1/us]
    g = VirtualChip(seed=1)._physics.switch_conductance
    assert 0.15 < np.std(np.log(g)) < 0.35  # log-normal sigma 0.25 per switch
    assert np.array_equal(g, VirtualChip(seed=1)._physics.switch_conductance)


# --- coupling -----------------------------------------------------------------------------
def _madc_trace(chip, cfg, stim, duration=30.0):
    res = chip.run(cfg, stim, duration_us=duration)
    return res.madc_times_us, res.madc[0].astype(float)


def _psp_model(chip, cfg, c, j, t):
    """Single membrane of c-fold capacitance [V above leak] and the bound on the deviation of
    compartment 0 and 1 from it, for one event into compartment j's column (private door)."""
    params, _ = compile_config(cfg, chip._physics)
    tau_m, tau_s = params.tau_mem_us[j], params.tau_syn_exc_us[j]
    b0 = W * params.syn_gain_exc[j]  # V/us into compartment j (driver and synapse gain 1)
    arrival = np.floor((T_EVENT + C.ROUTING_LATENCY_US) / DT + 0.5) * DT
    s = np.maximum(t - arrival, 0.0)
    psp = b0 / c * tau_m * tau_s / (tau_s - tau_m) * (np.exp(-s / tau_s) - np.exp(-s / tau_m))
    g = chip._physics.switch_conductance[: c - 1]
    lap = np.zeros((c, c))
    for k in range(c - 1):
        lap[k, k] += g[k]
        lap[k + 1, k + 1] += g[k]
        lap[k, k + 1] -= g[k]
        lap[k + 1, k] -= g[k]
    lam, q = np.linalg.eigh(lap)
    bounds = []
    for i in (0, 1):
        coef = sum(abs(q[i, k] * q[j, k]) / (lam[k] - 1 / tau_s) for k in range(c) if lam[k] > 1e-9)
        bounds.append(np.where(t >= arrival, b0 * np.exp(-s / tau_s) * coef, 0.0))
    return psp, bounds


@pytest.mark.parametrize("c", [2, 4])
def test_psps_of_all_compartments_add_up_like_one_membrane(c):
    """Ideal chip: the PSP of each column, read on the spiking circuit, equals that of one
    membrane of c-fold capacitance within the coupling bound (+1 MADC LSB); the joint
    response equals the sum of the single ones (linearity) within the quantisation."""
    chip = VirtualChip.ideal(dt_us=DT)
    lsb = C.MADC_LSB_PER_V
    t, base = _madc_trace(chip, _config(c, []), _stimulus())
    assert np.ptp(base) == 0
    singles = []
    worst_ratio = 0.0
    for j in range(c):
        cfg = _config(c, [j])
        t, trace = _madc_trace(chip, cfg, _stimulus())
        psp, bounds = _psp_model(chip, cfg, c, j, t)
        for ch in (0, 1):
            dev = np.abs((trace[:, ch] - base[:, ch]) - psp * lsb)
            assert np.all(dev <= bounds[ch] * lsb + 1.0), (j, ch, float((dev - bounds[ch] * lsb).max()))
            worst_ratio = max(worst_ratio, float(dev.max() / (psp.max() * lsb)))
        singles.append(trace - base)
    # peak height of one column's PSP on the spiking circuit: 1/c of the full PSP
    t, joint = _madc_trace(chip, _config(c, range(c)), _stimulus())
    # joint - base - sum(single_j - base) carries the rounding of c + 1 readings (<= 0.5 LSB
    # each) and c - 1 times that of the constant baseline: at most c LSB
    assert np.abs((joint - base) - np.sum(singles, axis=0)).max() <= c
    # the coupling is finite: a far column is seen on the spiking circuit a little late
    assert worst_ratio > 0.01  # measured: 0.08 (c=2), 0.10 (c=4) right after the event


@pytest.mark.parametrize(
    "c, nonlinear", [(2, False), (3, False), (4, False), (5, False), (4, True), (2, True)]
)  # the engine vectorises 2 and 4 compartments in consecutive local circuits
def test_compiled_and_reference_engines_agree_with_compartments(c, nonlinear):
    cfg = _config(c, range(c), first=2)
    if nonlinear:  # an adaptive compartment is integrated apart: not consecutive with the others
        cfg.enable_adaptation[3] = True
    cfg.enable_spiking[2] = True
    cfg.v_threshold = 420
    cfg.enable_output[2] = True
    cfg.synapse_weights[0, 0, 2 : 2 + c] = 63
    stim = _stimulus(T_EVENT + 0.5 * np.arange(6))
    a = VirtualChip.ideal().run(cfg, stim, duration_us=30.0)
    b = VirtualChip.ideal(engine="reference").run(cfg, stim, duration_us=30.0)
    assert a.spike_circuits.size >= 3
    assert np.array_equal(a.spike_circuits, b.spike_circuits)
    assert np.array_equal(a.spike_timestamps, b.spike_timestamps)
    assert np.array_equal(a.cadc, b.cadc) and np.array_equal(a.madc, b.madc)


# --- spiking and reset ----------------------------------------------------------------------
@pytest.mark.parametrize("spiking", [0, 2])
def test_only_the_spiking_compartment_fires_and_the_whole_neuron_resets(spiking):
    cfg = _config(4, [3])  # the input enters the rightmost column only
    cfg.synapse_weights[0, 0, 3] = 63
    cfg.i_syn_gm_exc = 1000
    cfg.enable_spiking[spiking] = True
    cfg.v_threshold = 400  # ~ 0.47 V, the reset stays at the default (0.41 V)
    cfg.refractory_time = 200  # ~ 7 us: the clamp is long enough to see on the CADC
    cfg.madc_circuits = (spiking, 3) if spiking % 2 == 0 else (3, spiking)
    res = VirtualChip.ideal().run(cfg, _stimulus([5.0, 5.2, 5.4]), duration_us=40.0)
    circuits, times = res.spikes(0)
    assert circuits.size >= 1 and set(circuits.tolist()) == {spiking}
    t_spike = times[0]
    ref_us = 0.035 * 201
    during = (res.cadc_times_us > t_spike + 0.5) & (res.cadc_times_us < t_spike + ref_us - 0.5)
    assert during.sum() >= 2
    reset_lsb = 350 * C.V_RAIL_V / 1023 * C.CADC_LSB_PER_V
    for circuit in range(4):  # every compartment is clamped at the reset, also the driven one
        assert np.abs(res.cadc[0, during, circuit] - reset_lsb).max() <= 1.0, circuit
    # the circuits next to the neuron are untouched
    assert np.ptp(res.cadc[0, :, 4]) == 0


def test_logical_neuron_switches_leave_other_circuits_alone():
    """Circuits outside the joined run behave exactly as without any switch closed."""
    cfg = _config(1, [10, 11], first=10)
    cfg.madc_circuits = (10, 11)
    plain = VirtualChip.ideal().run(cfg, _stimulus(), duration_us=20.0)
    cfg.connect_membrane_right[0:3] = True
    joined = VirtualChip.ideal().run(cfg, _stimulus(), duration_us=20.0)
    assert np.array_equal(plain.madc, joined.madc)
    assert np.array_equal(plain.cadc[:, :, 4:], joined.cadc[:, :, 4:])


def test_coupling_inputs_are_cached_but_returned_as_fresh_arrays():
    from cysim.engine import coupling_inputs

    chip = VirtualChip(seed=1)
    cfg = _config(4, [0], first=8)
    local = np.arange(C.N_CIRCUITS)
    a = coupling_inputs(cfg, chip._physics, local, 0.1)
    assert a["cpl_groups"] == 1 and a["cpl_contig"].tolist() == [1]
    p = a["cpl_mat"].reshape(4, 4).T  # stored column by column
    assert np.allclose(p.sum(axis=1), 1.0) and np.allclose(p, p.T)
    a["cpl_mat"][:] = 0.0  # a caller's change does not reach the cache
    b = coupling_inputs(cfg, chip._physics, local, 0.1)
    assert np.allclose(b["cpl_mat"].reshape(4, 4).sum(axis=0), 1.0)
    assert not np.allclose(coupling_inputs(cfg, chip._physics, local, 0.2)["cpl_mat"], b["cpl_mat"])
    shuffled = local.copy()
    shuffled[[9, 40]] = shuffled[[40, 9]]  # the neuron's circuits not consecutive locally
    assert coupling_inputs(cfg, chip._physics, shuffled, 0.1)["cpl_contig"].tolist() == [0]
