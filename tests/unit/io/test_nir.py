"""NIR exchange (pynn_brainscales2.io.nir): round trips snn <-> NIR <-> snn (mock mode and the
ideal chip), PyNN <-> NIR <-> PyNN (ideal chip), files, the unit convention and the errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import pynn_brainscales2 as sim
from cysim import VirtualChip
from pynn_brainscales2 import snn
from pynn_brainscales2.errors import ChipFeatureError, NIRError, ParameterRangeError
from pynn_brainscales2.io.nir import (
    SUPPORTED_NODES,
    NIRModel,
    NIRUnits,
    NIRWarning,
    export_nir,
    import_nir,
    normalise_norse_graph,
)

nir = pytest.importorskip("nir")

RUNTIME_US = 38.0
DT_US = 0.1


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Net(torch.nn.Module):
    """5 inputs -> 20 LIF (refractory) -> 3 LI, signed weights."""

    def __init__(self, mock=True, chip=None, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.exp = snn.Experiment(mock=mock, dt=DT_US, chip=chip)
        self.inp = snn.InputNeuron(5, self.exp, name="input")
        self.s1 = snn.Synapse(5, 20, self.exp, mean=0.3, std=0.3, name="input->hidden")
        self.hidden = snn.LIF(
            20,
            self.exp,
            name="hidden",
            tau_mem_us=6.0,
            tau_syn_exc_us=5.0,
            tau_syn_inh_us=5.0,
            refractory_us=1.0,
        )
        self.s2 = snn.Synapse(20, 3, self.exp, mean=0.05, std=0.1, name="hidden->out")
        self.out = snn.LI(3, self.exp, name="out", tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0)

    def forward(self, x):
        h = self.hidden(self.s1(self.inp(x)))
        o = self.out(self.s2(h))
        snn.run(self.exp, RUNTIME_US)
        return h, o


def spikes_in(batch=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(int(RUNTIME_US / DT_US), batch, 5)
    for b in range(batch):
        for k in range(5):
            x[int(20 + 200 * torch.rand(1, generator=g)), b, k] = 1.0
    return x


def exported(model, x, tmp_path=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRWarning)  # the refractory time goes into node metadata
        graph = export_nir(model, x[:, :1])
    if tmp_path is not None:
        nir.write(tmp_path / "net.nir", graph)
        graph = nir.read(tmp_path / "net.nir")
    return graph


def imported_outputs(model: NIRModel, x):
    out = model(x, runtime_us=RUNTIME_US)
    return model.handles["hidden"], next(iter(out.values()))


# --- unit convention ----------------------------------------------------------------------
def test_units_time_potential_and_weights():
    u = NIRUnits(dt=1e-4, speedup=1000.0, v_offset=-65.0, v_scale=15.0)
    assert float(u.to_us(6e-3)) == pytest.approx(6.0)
    assert float(u.from_us(6.0)) == pytest.approx(6e-3)
    assert float(u.to_ms(6e-3)) == pytest.approx(6.0)
    assert float(NIRUnits(dt=1e-4, speedup=500.0).to_us(6e-3)) == pytest.approx(12.0)
    assert float(u.to_potential(1.0)) == -50.0 and float(u.from_potential(-50.0)) == 1.0
    # a CubaLIF written with w_in = tau_syn / dt: the current jumps by W per spike
    assert float(u.current_jump(0.7, 5e-3 / 1e-4, 5e-3)) == 0.7
    # the membrane slope per unit current: v_scale r / tau_mem [pu/us]
    assert float(u.slope_us(2.0, 6e-3)) == pytest.approx(15.0 * 2.0 / 6.0)


def test_supported_nodes_are_listed():
    assert set(SUPPORTED_NODES) == {
        "Input",
        "Output",
        "Affine",
        "Linear",
        "Scale",
        "LIF",
        "CubaLIF",
        "LI",
        "CubaLI",
        "IF",
    }


# --- snn round trips ------------------------------------------------------------------------
def test_snn_round_trip_mock_is_identical(tmp_path):
    x = spikes_in()
    model = Net(mock=True)
    h, o = model(x)
    assert h.spikes.sum() > 50
    graph = exported(model, x, tmp_path)
    assert graph.metadata["dt"] == pytest.approx(DT_US * 1e-3)
    assert {type(n).__name__ for n in graph.nodes.values()} == {
        "Input",
        "CubaLIF",
        "Linear",
        "CubaLI",
        "Output",
    }
    again = import_nir(graph, "mock")
    h2, o2 = imported_outputs(again, x)
    assert again.experiment.mock and again.experiment.dt == pytest.approx(DT_US)
    assert torch.equal(h.spikes, h2.spikes)
    assert torch.equal(h.v, h2.v)
    assert torch.equal(o.v, o2.v)
    assert again.population("hidden").params.refractory_us == pytest.approx(1.0)  # from node metadata


def test_snn_round_trip_on_the_ideal_chip_is_identical():
    x = spikes_in()
    chip = VirtualChip.ideal()
    model = Net(mock=False, chip=chip)
    h, o = model(x)
    assert h.spikes.sum() > 50
    graph = exported(model, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sim.QuantisationWarning)
        again = import_nir(graph, "chip", chip=chip)
    h2, o2 = imported_outputs(again, x)
    assert not again.experiment.mock
    assert torch.equal(h.spikes, h2.spikes)
    assert torch.equal(o.v, o2.v)


def test_export_of_a_recorded_pass_and_of_an_imported_model():
    x = spikes_in(batch=2)
    model = Net()
    model.hidden(model.s1(model.inp(x)))  # a pass without the read-out, not yet run
    with pytest.warns(NIRWarning, match="refractory"):
        graph = export_nir(model.exp)
    assert set(graph.nodes) == {"input", "hidden", "input__hidden", "output_hidden"}
    model.exp.clear()
    with pytest.raises(NIRError, match="no pass is recorded"):
        export_nir(model.exp)
    with pytest.raises(NIRError, match="sample input"):
        export_nir(model)
    full = import_nir(exported(model, x), "mock")
    with pytest.warns(NIRWarning, match="refractory"):
        graph2 = export_nir(full)
    w1 = exported(model, x).nodes["input__hidden"].weight
    np.testing.assert_allclose(graph2.nodes["input__hidden"].weight, w1, rtol=1e-12)
    assert graph2.nodes["hidden"].metadata["refractory"] == pytest.approx(1e-3)


def test_file_round_trip_keeps_every_parameter(tmp_path):
    x = spikes_in(batch=1)
    graph = exported(Net(), x)
    nir.write(tmp_path / "g.nir", graph)
    back = nir.read(tmp_path / "g.nir")
    assert set(back.nodes) == set(graph.nodes)
    assert sorted(back.edges) == sorted(graph.edges)
    for name, node in graph.nodes.items():
        for key in ("tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in", "weight"):
            if hasattr(node, key):
                np.testing.assert_array_equal(getattr(back.nodes[name], key), getattr(node, key))
    assert float(back.metadata["dt"]) == graph.metadata["dt"]
    model = import_nir(tmp_path / "g.nir", "mock")  # a file name works too
    assert isinstance(model, NIRModel)


# --- reading NIR written elsewhere ----------------------------------------------------------
def _graph(neuron, weight, **meta):
    n_out, n_in = weight.shape
    nodes = {
        "in": nir.Input(input_type={"input": np.array([n_in])}),
        "w": nir.Linear(weight=weight),
        "n": neuron,
        "out": nir.Output(output_type={"output": np.array([n_out])}),
    }
    return nir.NIRGraph(nodes=nodes, edges=[("in", "w"), ("w", "n"), ("n", "out")], metadata=meta)


def _one_spike(n_steps=400, at=10):
    x = torch.zeros(n_steps, 1, 1)
    x[at, 0, 0] = 1.0
    return x


def test_synapse_less_li_node_jumps_as_nir_says():
    """NIR LI: tau dv/dt = v_leak - v + r I; a spike (height 1 over dt) through W moves v by
    r W dt / tau, then v decays with tau. Realised with a 0.3 us synapse whose weight makes
    the tail exactly that."""
    dt, tau, r, w = 1e-4, 6e-3, 2.0, 3.0
    n = 1
    graph = _graph(nir.LI(tau=np.full(n, tau), r=np.full(n, r), v_leak=np.zeros(n)), np.array([[w]]), dt=dt)
    model = import_nir(graph, "mock")
    assert model.population("n").params.tau_syn_exc_us == pytest.approx(0.3)
    v = next(iter(model(_one_spike()).values())).v[:, 0, 0].double()
    jump = r * w * dt / tau
    arrival = (10 + 1) * 0.1  # sent at step 10, routing latency 0.1 us
    t = torch.arange(v.shape[0], dtype=torch.float64) * 0.1
    late = t > arrival + 5.0  # the 0.3 us current has decayed
    expected = jump * torch.exp(-(t[late] - arrival) / 6.0)
    torch.testing.assert_close(v[late], expected, rtol=1e-4, atol=1e-7)


def test_cuba_lif_reads_w_in_and_r():
    """CubaLIF with w_in and r: the current jumps by w_in W dt / tau_syn, the membrane sees
    r I / tau_mem: the snn weight is v_scale r w_in W (dt / tau_syn) / tau_mem_us."""
    dt, n = 1e-4, 2
    node = nir.CubaLIF(
        tau_syn=np.full(n, 5e-3),
        tau_mem=np.full(n, 8e-3),
        r=np.array([1.0, 2.0]),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
        v_reset=np.zeros(n),
        w_in=np.array([50.0, 25.0]),
    )
    model = import_nir(_graph(node, np.array([[0.4], [0.4]]), dt=dt), "mock", potential=(0.0, 2.0))
    w = model.synapses["w"].weight.detach().double().numpy().ravel()
    np.testing.assert_allclose(
        w, 2.0 * np.array([1.0, 2.0]) * np.array([50.0, 25.0]) * 0.4 * (dt / 5e-3) / 8.0
    )
    params = model.population("n").params
    assert (
        params.v_th == 2.0
        and params.tau_mem_us == pytest.approx(8.0)
        and params.tau_syn_exc_us == pytest.approx(5.0)
    )


def test_scale_and_affine_fold_into_the_synapse_and_a_bias():
    dt, n = 1e-4, 2
    node = nir.CubaLI(
        tau_syn=np.full(n, 5e-3),
        tau_mem=np.full(n, 5e-3),
        r=np.ones(n),
        v_leak=np.zeros(n),
        w_in=np.full(n, 50.0),
    )
    nodes = {
        "in": nir.Input(input_type={"input": np.array([3])}),
        "s": nir.Scale(scale=np.array([1.0, 2.0, 3.0])),
        "a": nir.Affine(weight=np.ones((n, 3)), bias=np.array([0.0, 0.01])),
        "n": node,
        "out": nir.Output(output_type={"output": np.array([n])}),
    }
    graph = nir.NIRGraph(
        nodes=nodes, edges=[("in", "s"), ("s", "a"), ("a", "n"), ("n", "out")], metadata={"dt": dt}
    )
    model = import_nir(graph, "mock")
    w = model.synapses["s_a"].weight.detach().double().numpy()
    np.testing.assert_allclose(w, np.array([[1.0, 2.0, 3.0]] * 2) / 5.0)  # W jump / tau_mem_us
    bias = model.population("n").params.i_bias
    np.testing.assert_allclose(bias.double().numpy(), [0.0, 50.0 * 0.01 / 5.0])
    with pytest.raises(ChipFeatureError, match="constant input current"):
        import_nir(graph, "chip", chip=VirtualChip.ideal())


def test_norse_graphs_are_normalised():
    """Norse 1.1 writes tau = dt * tau_true, 0-d torch tensors, a batch dimension and w_in = 1
    for a current that jumps by W per spike."""
    dt = 5e-4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, 4])}),
        "0": nir.Affine(torch.full((3, 4), 0.5), torch.zeros(3)),
        "1": nir.CubaLIF(
            tau_syn=torch.tensor(dt * 5e-3),
            tau_mem=torch.tensor(dt * 6e-3),
            r=torch.tensor(1.0),
            v_leak=torch.tensor(0.0),
            v_threshold=torch.tensor(1.0),
        ),
        "output": nir.Output(output_type={"output": np.array([1, 3])}),
    }
    raw = nir.NIRGraph(nodes=nodes, edges=[("input", "0"), ("0", "1"), ("1", "output")], type_check=False)
    with pytest.raises(NIRError, match="time step"):
        import_nir(raw, "mock")
    graph = normalise_norse_graph(raw, dt)
    lif = graph.nodes["1"]
    np.testing.assert_allclose(lif.tau_mem, np.full(3, 6e-3))
    np.testing.assert_allclose(lif.w_in, np.full(3, 5e-3 / dt))
    assert list(graph.nodes["input"].input_type["input"]) == [4]
    model = import_nir(graph, "mock")
    w = model.synapses["n0"].weight.detach().double().numpy()
    np.testing.assert_allclose(w, np.full((3, 4), 0.5 / 6.0), rtol=1e-6)  # jump 0.5 [pu] / tau_mem_us


def test_euler_reading_of_norse_time_constants():
    """tau' = -dt / ln(1 - dt/tau) decays per step as Norse's Euler step; the current gain is
    continuous at tau_mem = tau_syn and tends to tau_syn / dt (the ODE reading) as dt -> 0."""
    u = NIRUnits(dt=5e-4)
    tau = np.array([0.6e-3, 6e-3, 12e-3, 1.0])
    np.testing.assert_allclose(np.exp(-u.dt / u.euler_tau(tau)), 1.0 - u.dt / tau, rtol=1e-12)
    equal = u.euler_current_gain(6e-3, 6e-3)
    np.testing.assert_allclose(u.euler_current_gain(6e-3, 6e-3 * (1 + 1e-7)), equal, rtol=1e-6)
    fine = NIRUnits(dt=1e-9)
    np.testing.assert_allclose(fine.euler_current_gain(6e-3, 5e-3), 5e-3 / 1e-9, rtol=1e-5)
    assert u.euler_detection_lag == pytest.approx(2.5e-4)
    with pytest.raises(NIRError, match="dt must be < tau"):
        u.euler_tau(4e-4)
    raw = _norse_raw_graph(5e-4, np.ones((2, 3)), np.ones((1, 2)), 6e-3, 5e-3, 12e-3)
    with pytest.raises(NIRError, match="discretisation 'rk4'"):
        normalise_norse_graph(raw, 5e-4, discretisation="rk4")


def _norse_raw_graph(dt, w1, w2, tau_mem, tau_syn, tau_out):
    """A graph as Norse 1.1's to_nir writes it: LIFCell -> CubaLIF, LIBoxCell -> LI (tau * dt)."""
    n_in, n_hid, n_out = w1.shape[1], w1.shape[0], w2.shape[0]
    nodes = {
        "input": nir.Input(input_type={"input": np.array([1, n_in])}),
        "0": nir.Affine(torch.as_tensor(w1), torch.zeros(n_hid)),
        "1": nir.CubaLIF(
            tau_syn=torch.tensor(dt * tau_syn),
            tau_mem=torch.tensor(dt * tau_mem),
            r=torch.tensor(1.0),
            v_leak=torch.tensor(0.0),
            v_threshold=torch.tensor(1.0),
        ),
        "2": nir.Affine(torch.as_tensor(w2), torch.zeros(n_out)),
        "3": nir.LI(tau=torch.tensor(dt * tau_out), r=torch.tensor(1.0), v_leak=torch.tensor(0.0)),
        "output": nir.Output(output_type={"output": np.array([1, n_out])}),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_norse_euler_graph_runs_as_norse_in_mock_mode():
    """normalise_norse_graph(..., "euler") in mock mode on Norse's grid: the hidden membranes
    equal Norse's Euler steps (``LIFCell``: current jump, membrane step, current decay,
    threshold at the step's end) one step later, the same spikes, and the read-out
    (``LIBoxCell``) decays by 1 - dt/tau per step with Norse's amplitude once its box synapse
    has settled; the ODE reading differs by several per cent."""
    dt, tau_mem, tau_syn, tau_out = 5e-4, 6e-3, 5e-3, 12e-3
    rng = np.random.default_rng(3)
    w1 = rng.normal(0.9, 1.2, (8, 4))
    w2 = rng.normal(1.0, 1.0, (2, 8))
    steps, batch = 100, 3
    x = (rng.random((steps, batch, 4)) < 0.08).astype(np.float64)
    x[20:] = 0.0  # a quiet tail for the read-out
    # Norse 1.1, lif_feed_forward_step and li_box_feed_forward_step, in numpy
    i = np.zeros((batch, 8))
    v = np.zeros((batch, 8))
    ro = np.zeros((batch, 2))
    vs, zs, ros = [], [], []
    for n in range(steps):
        i = i + x[n] @ w1.T
        v = v + dt / tau_mem * (-v + i)
        i = i * (1.0 - dt / tau_syn)
        z = (v > 1.0).astype(float)
        v = np.where(z > 0, 0.0, v)
        ro = ro + dt / tau_out * (-ro + z @ w2.T)
        vs.append(v)
        zs.append(z)
        ros.append(ro)
    v_norse, z_norse, ro_norse = np.stack(vs), np.stack(zs), np.stack(ros)
    last = int(np.nonzero(z_norse.any(axis=(1, 2)))[0].max())  # the last step with a spike
    assert z_norse.sum() >= 20 and last < steps - 30
    raw = _norse_raw_graph(dt, w1, w2, tau_mem, tau_syn, tau_out)
    graph = normalise_norse_graph(raw, dt, discretisation="euler")
    assert graph.metadata["discretisation"] == "euler"
    hid, out = graph.nodes["1"], graph.nodes["3"]
    np.testing.assert_allclose(hid.tau_mem, np.full(8, NIRUnits(dt=dt).euler_tau(tau_mem)))
    np.testing.assert_allclose(hid.metadata["refractory"], np.full(8, dt / 2))
    np.testing.assert_allclose(out.r, NIRUnits(dt=dt).euler_tau(tau_out) / tau_out)
    spikes = torch.as_tensor(x, dtype=torch.float32)

    def run(g):
        model = import_nir(g, "mock")
        assert model.experiment.dt == pytest.approx(0.5)
        with torch.no_grad():
            o = model(spikes, runtime_us=steps * 0.5)
        h = model.handles["1"]
        return h.v.double().numpy(), h.spikes.double().numpy(), next(iter(o.values())).v.double().numpy()

    v_ours, z_ours, ro_ours = run(graph)
    np.testing.assert_array_equal(z_ours, z_norse)
    np.testing.assert_allclose(v_ours[1:], v_norse[:-1], atol=2e-5)
    # read-out: the hidden spikes of step n arrive at step n + 1 and rise through the box synapse
    # (0.3 us); 5 us after the last spike it is Norse's membrane of the step before
    np.testing.assert_allclose(ro_ours[last + 11 :], ro_norse[last + 10 : -1], rtol=1e-4, atol=1e-6)
    # the ODE reading (tau as named): a weaker, slower membrane
    v_ode, _, _ = run(normalise_norse_graph(raw, dt))
    assert np.abs(v_ode[1:] - v_norse[:-1]).max() > 0.02


# --- errors -----------------------------------------------------------------------------------
def test_unsupported_node_is_named_with_the_supported_ones():
    nodes = {
        "in": nir.Input(input_type={"input": np.array([2])}),
        "thr": nir.Threshold(threshold=np.ones(2)),
        "out": nir.Output(output_type={"output": np.array([2])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "thr"), ("thr", "out")], metadata={"dt": 1e-4})
    with pytest.raises(NIRError, match=r"'thr' \(Threshold\).*supported nodes: Input, Output, Affine"):
        import_nir(graph, "mock")


def test_output_after_a_linear_node_is_refused():
    nodes = {
        "in": nir.Input(input_type={"input": np.array([2])}),
        "w": nir.Linear(weight=np.ones((3, 2))),
        "out": nir.Output(output_type={"output": np.array([3])}),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "w"), ("w", "out")], metadata={"dt": 1e-4})
    with pytest.raises(NIRError, match="needs a neuron node"):
        import_nir(graph, "mock")


def _lif(n=2, tau_mem=6e-3, tau_syn=5e-3, v_threshold=1.0):
    return nir.CubaLIF(
        tau_syn=np.full(n, tau_syn),
        tau_mem=np.full(n, tau_mem),
        r=np.ones(n),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, v_threshold),
        v_reset=np.zeros(n),
        w_in=np.full(n, tau_syn / 1e-4),
    )


@pytest.mark.parametrize(
    ("node", "match"),
    [
        (_lif(tau_mem=0.1e-3), r"tau_mem = 0\.1 us is out of range on the chip: allowed 0\.5\.\.60 us"),
        (_lif(tau_syn=50e-3), r"tau_syn = 50 us is out of range on the chip: allowed 0\.3\.\.30 us"),
        (_lif(v_threshold=4.0), r"v_threshold = 4 pu is out of range on the chip: allowed -0\.4\.\.3 pu"),
    ],
)
def test_unrealisable_parameters_raise_with_value_unit_and_range(node, match):
    graph = _graph(node, np.full((2, 2), 0.5), dt=1e-4)
    with pytest.raises(ParameterRangeError, match=match):
        import_nir(graph, "chip", chip=VirtualChip.ideal())
    import_nir(graph, "mock")  # mock mode simulates anything


def test_weights_beyond_the_chip_raise_and_quantisation_warns():
    big = _graph(_lif(), np.array([[30.0, 0.1], [0.1, 0.1]]), dt=1e-4)  # 30 / 6 us = 5 pu/us
    with pytest.raises(
        ParameterRangeError, match=r"weight of 5 pu/us is out of range.*allowed \|w\| <= 2\.52 pu/us"
    ):
        import_nir(big, "chip", chip=VirtualChip.ideal())
    fine = _graph(_lif(), np.array([[1.0, 0.013], [0.5, 0.2]]), dt=1e-4)
    with pytest.warns(
        sim.QuantisationWarning, match="6-bit steps of .* pu/us on the chip; worst relative error"
    ):
        import_nir(fine, "chip", chip=VirtualChip.ideal())


def test_if_node_gets_the_longest_membrane_time_constant_and_a_warning():
    graph = _graph(nir.IF(r=np.ones(1), v_threshold=np.ones(1)), np.array([[1.0]]), dt=1e-4)
    with pytest.warns(NIRWarning, match="no leak"):
        model = import_nir(graph, "mock")
    assert model.population("n").params.tau_mem_us == 60.0


def test_unknown_target_and_inputs():
    graph = _graph(_lif(), np.ones((2, 2)), dt=1e-4)
    with pytest.raises(NIRError, match="unknown target"):
        import_nir(graph, "hardware")
    with pytest.raises(NIRError, match="takes spikes for its 1 input"):
        import_nir(graph, "mock")(torch.zeros(5, 1, 2), torch.zeros(5, 1, 2))


def test_adex_has_no_nir_node():
    exp = snn.Experiment(mock=True, dt=0.1)
    inp, syn, adex = snn.InputNeuron(1, exp), snn.Synapse(1, 1, exp), snn.AdEx(1, exp)
    adex(syn(inp(torch.zeros(5, 1, 1))))
    with pytest.raises(NIRError, match="AdEx"):
        export_nir(exp)


# --- PyNN round trip ---------------------------------------------------------------------------
def _pynn_network():
    rng = np.random.default_rng(0)
    times = [sorted(rng.uniform(1.0, 30.0, 6).round(1).tolist()) for _ in range(5)]
    src = sim.Population(5, sim.SpikeSourceArray(spike_times=times), label="stim")
    hidden = sim.Population(
        10,
        sim.IF_curr_exp(
            tau_m=10.0,
            tau_syn_E=5.0,
            tau_syn_I=5.0,
            v_rest=-65.0,
            v_reset=-70.0,
            v_thresh=-55.0,
            tau_refrac=2.0,
            cm=0.5,
        ),
        label="hidden",
        initial_values={"v": -65.0},
    )
    out = sim.Population(
        3,
        sim.IF_curr_exp(
            tau_m=8.0, tau_syn_E=4.0, tau_syn_I=4.0, v_rest=-65.0, v_reset=-65.0, v_thresh=-58.0, cm=0.5
        ),
        label="out",
        initial_values={"v": -65.0},
    )
    sim.Projection(
        src,
        hidden,
        sim.AllToAllConnector(),
        sim.StaticSynapse(weight=rng.uniform(0.0, 0.6, (5, 10))),
        label="in",
    )
    sim.Projection(
        hidden,
        out,
        sim.AllToAllConnector(),
        sim.StaticSynapse(weight=rng.uniform(0.0, 0.5, (10, 3))),
        label="exc",
    )
    sim.Projection(
        hidden,
        out,
        sim.AllToAllConnector(),
        sim.StaticSynapse(weight=-rng.uniform(0.0, 0.2, (10, 3))),
        receptor_type="inhibitory",
        label="inh",
    )
    return hidden, out


def _trains(*pops):
    return [np.asarray(st) for p in pops for st in p.get_data().segments[0].spiketrains]


def test_pynn_round_trip_on_the_ideal_chip(tmp_path):
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        hidden, out = _pynn_network()
        hidden.record("spikes")
        out.record("spikes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sim.QuantisationWarning)
            sim.run(40.0)
        before = _trains(hidden, out)
        with pytest.warns(NIRWarning, match="tau_refrac"):
            graph = export_nir(sim)
    finally:
        sim.end()
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {
        "stim": "Input",
        "hidden": "CubaLIF",
        "out": "CubaLIF",
        "in": "Linear",
        "exc": "Linear",
        "inh": "Linear",
        "output_out": "Output",
    }
    np.testing.assert_allclose(graph.nodes["hidden"].r, np.full(10, 10.0 / 0.5))  # tau_m / cm [MOhm]
    nir.write(tmp_path / "pynn.nir", graph)
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        net = import_nir(tmp_path / "pynn.nir", "pynn")
        assert set(net.projections) == {"in", "exc", "inh"}
        assert net.projections["inh"].receptor_type == "inhibitory"
        for p in ("hidden", "out"):
            net.populations[p].record("spikes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sim.QuantisationWarning)
            sim.run(40.0)
        after = _trains(net.populations["hidden"], net.populations["out"])
        assert net.populations["hidden"].get("tau_refrac") == pytest.approx(2.0)
        assert net.populations["hidden"].get("cm") == pytest.approx(0.5)
    finally:
        sim.end()
    assert sum(len(t) for t in before) > 20
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pynn_export_refuses_unsupported_cells_and_import_refuses_li():
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        sim.Population(2, sim.IF_cond_exp(), label="coba")
        with pytest.raises(NIRError, match=r"'coba' has cell type IF_cond_exp; exportable: IF_curr_exp"):
            export_nir(sim)
    finally:
        sim.end()
    graph = _graph(nir.LI(tau=np.full(1, 6e-3), r=np.ones(1), v_leak=np.zeros(1)), np.ones((1, 1)), dt=1e-4)
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        with pytest.raises(NIRError, match="PyNN has no non-spiking integrator"):
            import_nir(graph, "pynn")
    finally:
        sim.end()


def test_snn_graph_into_pynn_with_a_potential_map():
    """A network written in pu (leak 0, threshold 1) runs in PyNN at -65 / -50 mV."""
    graph = _graph(_lif(n=2), np.full((2, 2), 0.5), dt=1e-4)
    graph.nodes["in"].metadata = {
        "cell_type": "SpikeSourceArray",
        "spike_counts": np.array([1, 0]),
        "spike_times": np.array([2e-3]),
    }
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        net = import_nir(graph, "pynn", potential=(-65.0, 15.0))
        p = net.populations["n"]
        assert p.get("v_rest") == -65.0 and p.get("v_thresh") == -50.0
        assert p.get("tau_m") == pytest.approx(6.0) and p.get("tau_syn_E") == pytest.approx(5.0)
        assert p.get("cm") == pytest.approx(6.0 / 15.0)  # tau_mem / (v_scale r) [nF]
        proj = next(iter(net.projections.values()))
        assert proj.get("weight", format="array")[0, 0] == pytest.approx(0.5)  # the current jump [nA]
        assert net.populations["in"].get("spike_times", simplify=False)[0].value.tolist() == [2.0]
    finally:
        sim.end()


def test_pynn_poisson_sources_and_offsets_travel_in_metadata(tmp_path):
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        noise = sim.Population(4, sim.SpikeSourcePoisson(rate=50.0, start=5.0, duration=30.0), label="noise")
        pop = sim.Population(3, sim.IF_curr_exp(i_offset=0.2), label="p")
        sim.Projection(noise, pop, sim.AllToAllConnector(), sim.StaticSynapse(weight=0.3), label="w")
        with pytest.warns(NIRWarning, match="i_offset"):
            graph = export_nir(sim)
    finally:
        sim.end()
    nir.write(tmp_path / "p.nir", graph)
    graph = nir.read(tmp_path / "p.nir")
    assert graph.nodes["noise"].metadata["cell_type"] == "SpikeSourcePoisson"
    np.testing.assert_allclose(graph.nodes["p"].metadata["bias_current"], 0.2)
    sim.setup(timestep=0.1, chip=VirtualChip.ideal())
    try:
        net = import_nir(graph, "pynn")
        assert type(net.populations["noise"].celltype).__name__ == "SpikeSourcePoisson"
        assert net.populations["noise"].get(["rate", "start", "duration"]) == pytest.approx([50.0, 5.0, 30.0])
        assert net.populations["p"].get("i_offset") == pytest.approx(0.2)
    finally:
        sim.end()
