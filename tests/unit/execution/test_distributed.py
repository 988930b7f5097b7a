"""Chip runs on worker processes: bit-identical to in-process runs, dead workers handled."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from cysim import ROW_EXC, ChipConfig, Stimulus, VirtualChip, event_label
from pynn_brainscales2.errors import ExecutionError, SetupError
from pynn_brainscales2.execution import run_distributed
from pynn_brainscales2.execution.distributed import merge_results


def network():
    """Eight circuits on two rows, realistic enough: noise on, Poisson-like input per trial."""
    cfg = ChipConfig()
    cfg.enable_spiking[:8] = True
    cfg.v_threshold[:8] = 520
    cfg.row_modes[0, 0] = ROW_EXC
    cfg.synapse_weights[0, 0, :8] = 40
    cfg.synapse_labels[0, 0, :8] = 3
    rng = np.random.default_rng(0)
    per_trial = []
    for _ in range(6):
        t = np.sort(rng.uniform(1.0, 90.0, 30))
        per_trial.append((t, np.full(t.size, event_label(0, 0, 3))))
    return cfg, Stimulus.from_trials(per_trial)


def assert_identical(a, b):
    assert a.trials == b.trials
    np.testing.assert_array_equal(a.trial_seeds, b.trial_seeds)
    np.testing.assert_array_equal(a.spike_trials, b.spike_trials)
    np.testing.assert_array_equal(a.spike_circuits, b.spike_circuits)
    np.testing.assert_array_equal(a.spike_timestamps, b.spike_timestamps)
    np.testing.assert_array_equal(a.cadc, b.cadc)
    np.testing.assert_array_equal(a.madc, b.madc)


@pytest.fixture(scope="module")
def pool():
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        yield ex


def test_process_pool_is_bit_identical_to_in_process(pool):
    cfg, stim = network()
    local = VirtualChip(seed=5).run(cfg, stim, duration_us=100.0, trials=6)
    remote = run_distributed(pool, VirtualChip(seed=5), cfg, stim, 100.0, 6)
    assert local.spike_trials.size > 20  # the network does spike
    assert_identical(local, remote)
    # chunking does not matter either
    assert_identical(local, run_distributed(pool, VirtualChip(seed=5), cfg, stim, 100.0, 6, chunks=5))


def test_same_stimulus_for_all_trials_and_explicit_seeds(pool):
    cfg, stim = network()
    one = stim.trial(0)
    seeds = [11, 12, 13]
    local = VirtualChip(seed=2).run(cfg, one, duration_us=60.0, trials=3, trial_seeds=seeds)
    remote = run_distributed(pool, VirtualChip(seed=2), cfg, one, 60.0, 3, trial_seeds=seeds)
    assert_identical(local, remote)


def test_merge_renumbers_trials():
    cfg, stim = network()
    chip = VirtualChip.ideal()
    a = chip.run(cfg, stim.trial(0), duration_us=50.0, trials=2, trial_seeds=[0, 1])
    b = chip.run(cfg, stim.trial(0), duration_us=50.0, trials=1, trial_seeds=[2])
    m = merge_results([a, b], np.array([0, 1, 2]))
    assert m.trials == 3 and m.cadc.shape[0] == 3
    assert set(np.unique(m.spike_trials)) <= {0, 1, 2}


def _sleepy_chunk_killer(pid_file):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)


def test_dead_process_pool_worker_gives_clear_error(tmp_path):
    cfg, stim = network()
    ctx = multiprocessing.get_context("spawn")
    ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx)
    try:
        # kill one worker while a long batch runs
        pids = list(ex.map(os.getpid, [None] * 0)) or None  # noqa: F841  (start the pool lazily)
        ex.submit(int, 0).result()
        victims = list(ex._processes)

        def kill_soon():
            time.sleep(1.0)
            os.kill(victims[0], signal.SIGKILL)

        threading.Thread(target=kill_soon, daemon=True).start()
        # each task integrates one trial of 5 s hardware time (several seconds of work),
        # so the kill lands while the workers compute, however fast the machine
        with pytest.raises(ExecutionError, match="worker process died"):
            run_distributed(ex, VirtualChip(seed=1), cfg, stim, 5_000_000.0, 6, chunks=6)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def test_process_pool_broken_before_a_batch_gives_clear_error():
    cfg, stim = network()
    ctx = multiprocessing.get_context("spawn")
    ex = concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx)
    try:
        ex.submit(int, 0).result()
        os.kill(next(iter(ex._processes)), signal.SIGKILL)
        deadline = time.monotonic() + 30.0
        while not ex._broken and time.monotonic() < deadline:  # the pool notices the death
            time.sleep(0.05)
        assert ex._broken
        with pytest.raises(ExecutionError, match="worker process died"):
            run_distributed(ex, VirtualChip(seed=1), cfg, stim, 50.0, 6)
        import pynn_brainscales2 as sim

        with pytest.raises(ExecutionError, match="process pool is broken"):
            sim.parameter_sweep(rate_script(), [{"i_offset": 1.0}], executor=ex, progress=False)
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def test_bad_executor_is_refused():
    import pynn_brainscales2 as sim

    cfg, stim = network()
    with pytest.raises(ExecutionError, match="concurrent.futures.Executor"):
        run_distributed(object(), VirtualChip(seed=1), cfg, stim, 10.0, 6)
    with pytest.raises(SetupError, match="executor"):
        sim.setup(executor="localhost:8786")
    sim.setup(chip=sim.VirtualChip.ideal())  # still usable afterwards
    sim.end()


# --- Dask -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_is_bit_identical_to_in_process(dask_client):
    cfg, stim = network()
    local = VirtualChip(seed=9).run(cfg, stim, duration_us=100.0, trials=6)
    remote = run_distributed(dask_client, VirtualChip(seed=9), cfg, stim, 100.0, 6)
    assert_identical(local, remote)


def test_dask_reschedules_the_tasks_of_a_killed_worker(dask_client):
    cfg, stim = network()
    stim = Stimulus.from_trials([(stim.trial(k).times_us, stim.trial(k).labels) for k in range(4)])
    duration = 300000.0  # two tasks of two trials each
    local = VirtualChip(seed=4).run(cfg, stim, duration_us=duration, trials=4)
    addr, victim = next(iter(dask_client.run(os.getpid).items()))
    killed_at = []

    def kill_when_busy():
        # the kill is triggered by the scheduler's own view: the victim holds a task of the batch
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if dask_client.processing([addr]).get(addr):
                os.kill(victim, signal.SIGKILL)
                killed_at.append(time.perf_counter())
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    remote = run_distributed(dask_client, VirtualChip(seed=4), cfg, stim, duration, 4, chunks=2)
    returned_at = time.perf_counter()
    killer.join()
    assert killed_at and killed_at[0] < returned_at  # the worker died while the batch was running
    dask_client.wait_for_workers(2, timeout=60)
    assert victim not in dask_client.run(os.getpid).values()  # the worker was really replaced
    assert_identical(local, remote)  # its task ran again elsewhere: same result, nothing lost


def test_pynn_runs_on_dask_workers_identically(dask_client):
    import pynn_brainscales2 as sim

    def experiment(executor):
        sim.setup(chip=sim.VirtualChip(seed=3), executor=executor)
        src = sim.Population(5, sim.SpikeSourcePoisson(rate=80.0))
        p = sim.Population(4, sim.IF_curr_exp(tau_m=10.0))
        sim.Projection(src, p, sim.AllToAllConnector(), sim.StaticSynapse(weight=1.2))
        p.record("spikes")
        p[0:2].record("v")  # MADC: two neurons at full resolution
        sim.run(200.0)
        seg = p.get_data().segments[0]
        sim.end()
        return [np.asarray(t) for t in seg.spiketrains], np.asarray(seg.analogsignals[0])

    local, remote = experiment(None), experiment(dask_client)
    for a, b in zip(local[0], remote[0], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(local[1], remote[1])
    assert sum(len(t) for t in local[0]) > 0


def rate_script():
    """A PyNN experiment as a closure: Dask ships it by value (test modules are not
    importable on the workers)."""

    def script(i_offset):
        import pynn_brainscales2 as sim

        sim.setup(chip=sim.VirtualChip.ideal())
        p = sim.Population(2, sim.IF_curr_exp(i_offset=i_offset))
        p.record("spikes")
        sim.run(100.0)
        block = p.get_data()
        sim.end()
        return block

    return script


def test_parameter_sweep_gathers_neo_blocks_in_order(dask_client):
    import pynn_brainscales2 as sim

    params = [{"i_offset": x} for x in (0.5, 1.0, 2.0)]
    remote = sim.parameter_sweep(rate_script(), params, executor=dask_client, progress=False)
    local = sim.parameter_sweep(rate_script(), params, progress=False)
    counts = [sum(len(t) for t in b.segments[0].spiketrains) for b in remote]
    assert counts == [sum(len(t) for t in b.segments[0].spiketrains) for b in local]
    assert counts[0] < counts[1] < counts[2]


def test_parameter_sweep_names_the_failing_set(dask_client):
    import pynn_brainscales2 as sim

    with pytest.raises(ExecutionError, match=r"parameter set #1 \{'i_offset': 'x'\}"):
        sim.parameter_sweep(
            rate_script(), [{"i_offset": 1.0}, {"i_offset": "x"}], executor=dask_client, progress=False
        )


def test_snn_chip_mode_with_an_executor_is_bit_identical(pool):
    import torch

    from pynn_brainscales2 import snn

    def forward(executor):
        torch.manual_seed(0)
        exp = snn.Experiment(mock=False, dt=0.1, chip=VirtualChip(seed=6), executor=executor)
        inp = snn.InputNeuron(5, exp)
        s1 = snn.Synapse(5, 12, exp, mean=0.3, std=0.3)
        lif = snn.LIF(12, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0, refractory_us=1.0)
        s2 = snn.Synapse(12, 3, exp, mean=0.05, std=0.1)
        li = snn.LI(3, exp, tau_mem_us=6.0, tau_syn_exc_us=5.0, tau_syn_inh_us=5.0)
        g = torch.Generator().manual_seed(1)
        x = (torch.rand(300, 4, 5, generator=g) < 0.01).float()
        h = lif(s1(inp(x)))
        o = li(s2(h))
        snn.run(exp, 30.0)
        o.v.max(0).values.sum().backward()
        return h.spikes.detach(), o.v.detach(), s1.weight.grad.clone()

    local, remote = forward(None), forward(pool)
    assert local[0].sum() > 0
    for a, b in zip(local, remote, strict=True):
        assert torch.equal(a, b)


def test_snn_experiment_refuses_a_non_executor():
    from pynn_brainscales2 import snn

    with pytest.raises(ExecutionError, match="concurrent.futures.Executor"):
        snn.Experiment(mock=False, executor="tcp://scheduler:8786")


def test_scale_out_benchmark_sweep_matches_in_process(dask_client):
    """The workload of benchmarks/scale_out.py: whole chip-mode trainings on workers."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "scale_out.py"
    spec = importlib.util.spec_from_file_location("scale_out_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    local = [bench.train(s, 2, 16, 0.1)[0] for s in (0, 1)]  # calibrates once, into the shared cache
    seconds, remote = bench.sweep(dask_client, [0, 1], steps=2, batch=16, dt=0.1)
    assert seconds > 0
    assert remote == local and remote[0] != remote[1]
