"""Partition planner (seed eq. 19): per layer c, N_c, p and the chip runs."""

import pytest

from pynn_brainscales2.errors import PlacementError, RoutingError
from pynn_brainscales2.mapping import plan_feedforward
from pynn_brainscales2.mapping.partition import MAX_CIRCUITS_PER_NEURON, inputs_per_circuit


def test_mnist_stack_is_three_runs():
    plan = plan_feedforward([484, 256, 10])
    hidden, out = plan.layers
    assert (hidden.circuits_per_neuron, hidden.neurons_per_run, hidden.partitions) == (4, 128, 2)
    assert (out.circuits_per_neuron, out.neurons_per_run, out.partitions) == (2, 256, 1)
    assert plan.n_runs == 3 and plan.partitioned
    assert [(r.layer, r.start, r.stop, r.circuits) for r in plan.runs] == [
        (1, 0, 128, 512),
        (1, 128, 256, 512),
        (2, 0, 10, 20),
    ]
    assert len(plan.runs_of(1)) == 2 and len(plan.runs_of(2)) == 1


def test_table_names_every_run():
    text = str(plan_feedforward([484, 256, 10], names=["hidden", "out"]))
    assert "3 chip runs" in text
    assert "1 hidden" in text and "2 out" in text
    assert "run 1: layer 1, neurons 128:256 (512 circuits)" in text
    assert "c=4 p=2" in repr(plan_feedforward([484, 256, 10]))


def test_a_stack_that_fits_is_one_run():
    plan = plan_feedforward([5, 20, 3])
    assert plan.n_runs == 1 and not plan.partitioned
    assert plan.runs[0].layers == ((1, 0, 20, 1), (2, 0, 3, 1))
    assert [lp.partitions for lp in plan.layers] == [1, 1]
    assert "all layers share one run" in str(plan)


def test_split_true_gives_one_run_per_layer():
    plan = plan_feedforward([5, 20, 3], split=True)
    assert [(r.layer, r.start, r.stop) for r in plan.runs] == [(1, 0, 20), (2, 0, 3)]


def test_small_budget_splits_into_near_equal_parts():
    plan = plan_feedforward([5, 20, 3], max_circuits=8)
    assert plan.layers[0].ranges == ((0, 6), (6, 13), (13, 20))
    assert plan.n_runs == 4
    assert all(r.circuits <= 8 for r in plan.runs)


def test_more_neurons_than_circuits_without_compartments():
    plan = plan_feedforward([100, 600, 10])
    assert [(lp.circuits_per_neuron, lp.partitions) for lp in plan.layers] == [(1, 2), (5, 1)]
    assert plan.layers[0].ranges == ((0, 300), (300, 600))


def test_rows_per_weight_and_sign_set_the_fan_in_per_circuit():
    assert inputs_per_circuit() == 128
    assert inputs_per_circuit(signed=False) == 256
    assert inputs_per_circuit(rows_per_weight=4) == 32
    assert plan_feedforward([256, 10], signed=False).layers[0].circuits_per_neuron == 1
    assert plan_feedforward([256, 10]).layers[0].circuits_per_neuron == 2
    assert plan_feedforward([256, 10], rows_per_weight=2).layers[0].circuits_per_neuron == 4


def test_rows_of_a_single_run_are_estimated():
    # 120 signed inputs fill 240 rows of hemisphere 0, the next layer there another 200
    assert plan_feedforward([120, 100, 100]).n_runs == 2
    # a narrow stack fits one run
    assert plan_feedforward([60, 50, 50]).n_runs == 1


def test_too_large_fan_in_names_value_limit_and_fix():
    # 4200 inputs at 2 rows per weight: 64 per circuit, c = 66 > 64
    with pytest.raises(PlacementError) as err:
        plan_feedforward([4200, 10], rows_per_weight=2)
    msg = str(err.value)
    assert "fan-in of 4200" in msg and "c = 66" in msg
    assert f"at most {MAX_CIRCUITS_PER_NEURON} circuits" in msg and "largest fan-in is 4096" in msg
    assert "Reduce the size of the previous layer" in msg
    # more inputs than the chip can address: partitioning never splits the inputs
    with pytest.raises(RoutingError, match="fan-in of 9000.*8192 sources"):
        plan_feedforward([9000, 10], signed=False)
    assert plan_feedforward([8192, 10]).layers[0].circuits_per_neuron == 64


def test_budget_smaller_than_a_logical_neuron():
    with pytest.raises(PlacementError, match="budget is 2 circuits per run.*raise max_circuits"):
        plan_feedforward([300, 10], max_circuits=2)


def test_bad_arguments():
    with pytest.raises(PlacementError, match="at least one layer"):
        plan_feedforward([10])
    with pytest.raises(PlacementError, match="at least one neuron"):
        plan_feedforward([10, 0])
    with pytest.raises(PlacementError, match="max_circuits = 600"):
        plan_feedforward([10, 5], max_circuits=600)
    with pytest.raises(PlacementError, match="split=False"):
        plan_feedforward([5, 600], split=False)


def test_check_maps_every_run():
    plan = plan_feedforward([20, 30, 5], max_circuits=16, check=True)
    assert plan.n_runs == 3


def test_check_names_the_run_and_why_when_external_inputs_do_not_route():
    # the plan counts one row per weight; reserving two (max_steps = 126) needs 400 rows
    # for the 100 signed external inputs of every neuron, the hemisphere has 256
    plan = plan_feedforward([100, 300, 10], max_circuits=256)
    with pytest.raises(RoutingError) as err:
        plan.check(max_steps=126)
    msg = str(err.value)
    assert "run 0 (layer 1" in msg and "neurons 0:150" in msg and "100 inputs is an external source" in msg
    assert "Mapping said:" in msg and "400" in msg  # the rows one neuron needs
