"""Networks and an independent reference router for the mapping tests."""

from collections import defaultdict

import numpy as np
import pytest

from cysim import constants as C
from pynn_brainscales2.mapping import (
    EXCITATORY,
    EXTERNAL,
    INHIBITORY,
    NetworkSpec,
    PopulationSpec,
    ProjectionSpec,
)


def random_projection(rng, label, pre, post, n_pre, n_post, p, receptor, low=1, high=64):
    i, j = np.nonzero(rng.random((n_pre, n_post)) < p)
    return ProjectionSpec(label, pre, post, i, j, rng.integers(low, high, i.size), receptor)


def balanced_spec(seed=0, n_exc=400, n_inh=100, n_ext=100, p=0.1):
    """A 500-neuron balanced random network with external Poisson input."""
    rng = np.random.default_rng(seed)
    pops = (
        PopulationSpec("exc", n_exc),
        PopulationSpec("inh", n_inh),
        PopulationSpec("noise", n_ext, EXTERNAL),
    )
    projs = tuple(
        random_projection(rng, f"{pre}->{post}", pre, post, sizes[pre], sizes[post], p, receptor)
        for sizes in [{"exc": n_exc, "inh": n_inh, "noise": n_ext}]
        for pre, receptor in (("exc", EXCITATORY), ("inh", INHIBITORY), ("noise", EXCITATORY))
        for post in ("exc", "inh")
    )
    return NetworkSpec(pops, projs)


@pytest.fixture(scope="module")
def balanced():
    return balanced_spec()


def expected_delivery(spec, mapping):
    """{(population, source index, circuit, inhibitory): total steps} the spec asks for."""
    out = defaultdict(int)
    for proj in spec.projections:
        circuits = mapping.circuits(proj.post)[proj.post_idx]
        inh = proj.receptor == INHIBITORY
        for i, c, s in zip(proj.pre_idx.tolist(), circuits.tolist(), proj.steps.tolist(), strict=True):
            if s:
                out[(proj.pre, i, c, inh)] += s
    return dict(out)


def delivered(spec, mapping, config=None):
    """What the chip would deliver, read from the ChipConfig like the silicon routes events.

    Event keys of on-chip neurons and background generators come from the config's
    output fields, those of external sources from the mapping's source labels.
    """
    cfg = mapping.config if config is None else config
    w = cfg.array("synapse_weights")
    modes = cfg.array("row_modes")
    h, r, c = np.nonzero(w > 0)
    d = r // 2
    on = (modes[h, r] != C.ROW_OFF) & cfg.array("driver_enable")[h, d]
    h, r, c, d = h[on], r[on], c[on], d[on]
    keys = ((h * 4 + d % 4) << 11) | (cfg.array("driver_row_select")[h, d].astype(np.int64) << 6)
    keys |= cfg.array("synapse_labels")[h, r, c]
    table = defaultdict(list)
    for k, circuit, inh, weight in zip(
        keys.tolist(),
        (h * 256 + c).tolist(),
        (modes[h, r] == C.ROW_INH).tolist(),
        w[h, r, c].tolist(),
        strict=True,
    ):
        table[k].append((circuit, inh, weight))

    def event_keys(masks, addresses):
        for bus in range(C.N_BUSES):
            for slot in np.flatnonzero((masks.astype(np.int64) >> bus) & 1):
                yield int(slot), (bus << 11) | int(addresses[slot])

    out = defaultdict(int)
    for pop in spec.populations:
        if pop.kind == "neuron":
            circuits = mapping.circuits(pop.label)
            masks = np.where(cfg.array("enable_output"), cfg.array("output_buses"), 0)[circuits]
            sources = event_keys(masks, cfg.array("output_address")[circuits])
        elif pop.kind == "background":
            gens = mapping.placement.generators[pop.label]
            sources = event_keys(cfg.array("bg_buses")[gens], cfg.array("bg_address")[gens])
        else:
            sources = zip(*mapping.source_labels(pop.label), strict=True)
        for idx, key in sources:
            for circuit, inh, weight in table.get(int(key), ()):
                out[(pop.label, int(idx), circuit, inh)] += weight
    return dict(out)
