"""Projection of the BrainScaleS-2 backend.

Connections are kept as arrays (pre index, post index, weight [nA/uS/steps], delay [ms],
and the synapse type's other parameters, e.g. ``U`` of a TsodyksMarkramSynapse) and
routed onto synapse rows at ``run()``. ``get``/``set`` work on the model weights; the
chip holds them quantised to 6-bit steps (a one-time warning gives the worst relative
error per projection). After a run with a plasticity rule (``PlasticSynapse``,
``STDPMechanism``), ``get("weight")`` returns the weights at the end of the run; the next
segment after ``reset()`` starts from them (as in NEST), ``set(weight=...)`` overrides.
"""

from __future__ import annotations

import numpy as np
from pyNN import common
from pyNN.space import Space

from . import simulator
from .errors import ChipFeatureError
from .standardmodels.synapses import (
    SUPPORTED_SYNAPSE_TYPES,
    PlasticSynapse,
    StaticSynapse,
    STDPMechanism,
    TsodyksMarkramSynapse,
    check_weight_sign,
)

_SYNAPSE_CLASSES = (StaticSynapse, STDPMechanism, TsodyksMarkramSynapse)


class Connection(common.Connection):
    """One connection: indices within the projection's pre/post, weight and delay."""

    def __init__(self, projection, k):
        self._projection = projection
        self._k = k

    @property
    def presynaptic_index(self):
        return int(self._projection._pre[self._k])

    @property
    def postsynaptic_index(self):
        return int(self._projection._post[self._k])

    @property
    def presynaptic_cell(self):
        return self._projection.pre[self.presynaptic_index]

    @property
    def postsynaptic_cell(self):
        return self._projection.post[self.postsynaptic_index]

    def _get_weight(self):
        return float(self._projection._current_weight()[self._k])

    def _set_weight(self, value):
        check_weight_sign(np.asarray([value]), self._projection)
        self._projection._adopt_learned()
        self._projection._weight[self._k] = value
        simulator.state.touch()

    weight = property(_get_weight, _set_weight)

    def _get_delay(self):
        return float(self._projection._delay[self._k])

    def _set_delay(self, value):
        self._projection._delay[self._k] = value
        simulator.state.touch()

    delay = property(_get_delay, _set_delay)

    def as_tuple(self, *attribute_names):
        return tuple(getattr(self, name) for name in attribute_names)


class Projection(common.Projection):
    __doc__ = common.Projection.__doc__
    _simulator = simulator
    _static_synapse_class = StaticSynapse

    def __init__(
        self,
        presynaptic_population,
        postsynaptic_population,
        connector,
        synapse_type=None,
        source=None,
        receptor_type=None,
        space=None,
        label=None,
    ):
        simulator.state.check_setup("creating a Projection")
        if synapse_type is not None and not isinstance(synapse_type, _SYNAPSE_CLASSES):
            raise ChipFeatureError(
                f"Synapse type {type(synapse_type).__name__} is not available on BrainScaleS-2; supported: "
                f"{', '.join(SUPPORTED_SYNAPSE_TYPES)} (from pynn_brainscales2)."
            )
        targets = getattr(postsynaptic_population, "populations", [postsynaptic_population])
        for target in targets:
            if not target.celltype.injectable:
                raise ChipFeatureError(
                    f"Projection onto {target.label!r}: spike sources ({type(target.celltype).__name__}) cannot "
                    "receive synapses."
                )
        self._chunks = []
        self._arrays = None
        self._learned = None  # weights at the end of the last plastic run [model units]
        common.Projection.__init__(
            self,
            presynaptic_population,
            postsynaptic_population,
            connector,
            synapse_type,
            source,
            receptor_type,
            Space() if space is None else space,
            label,
        )
        connector.connect(self)
        self._finish()
        self.plasticity_rule = self._make_rule()
        simulator.state.register_projection(self)

    def _make_rule(self):
        """The plasticity rule of this projection (None for static and STP synapses)."""
        from .plasticity import STDPRule

        if isinstance(self.synapse_type, PlasticSynapse):
            return self.synapse_type.plasticity_rule
        if isinstance(self.synapse_type, STDPMechanism):
            return STDPRule.for_projection(self)
        return None

    @property
    def _param_names(self):
        names = self.synapse_type.get_native_names(*self.synapse_type.get_parameter_names())
        return [n for n in names if n not in ("weight", "delay")]

    def _current_weight(self):
        return self._weight if self._learned is None else self._learned

    def _adopt_learned(self):
        """Make the learned weights the configured ones (before a change or a new segment)."""
        if self._learned is not None:
            self._weight = self._learned.copy()
            self._learned = None

    # --- connection storage ------------------------------------------------------------
    def _finish(self):
        names = self._param_names
        if self._chunks:
            cols = [np.concatenate(x) for x in zip(*self._chunks, strict=True)]
            pre, post, w, d = cols[:4]
            extra = cols[4:]
        else:
            pre = post = np.zeros(0, np.int64)
            w = d = np.zeros(0)
            extra = [np.zeros(0) for _ in names]
        self._pre, self._post = pre.astype(np.int64), post.astype(np.int64)
        self._weight, self._delay = w.astype(float), d.astype(float)
        self._extra = {n: v.astype(float) for n, v in zip(names, extra, strict=True)}
        self._chunks = []
        check_weight_sign(self._weight, self)

    def _convergent_connect(self, presynaptic_indices, postsynaptic_index, location_selector=None, **params):
        if location_selector is not None:
            raise ChipFeatureError(
                "Multi-compartment connections (location_selector) are not available on BrainScaleS-2."
            )
        pre = np.asarray(presynaptic_indices, dtype=np.int64).reshape(-1)
        n = pre.size
        w = np.broadcast_to(np.asarray(params.get("weight", 0.0), dtype=float), (n,))
        d = np.broadcast_to(np.asarray(params.get("delay", simulator.state.min_delay), dtype=float), (n,))
        extra = [np.broadcast_to(np.asarray(params[k], dtype=float), (n,)).copy() for k in self._param_names]
        self._chunks.append((pre, np.full(n, int(postsynaptic_index)), w.copy(), d.copy(), *extra))
        if hasattr(self, "_pre"):  # connections added after construction
            self._chunks.insert(
                0,
                (
                    self._pre,
                    self._post,
                    self._weight,
                    self._delay,
                    *(self._extra[k] for k in self._param_names),
                ),
            )
            self._finish()
            simulator.state.touch()

    def __len__(self):
        return int(self._pre.size)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            if not -len(self) <= i < len(self):
                raise IndexError(
                    f"Projection {self.label!r} has {len(self)} connections; index {i} is out of range."
                )
            return Connection(self, int(i) % len(self))
        return [Connection(self, k) for k in range(len(self))[i]]

    @property
    def connections(self):
        return [Connection(self, k) for k in range(len(self))]

    # --- attributes ----------------------------------------------------------------------
    def _set_attributes(self, parameter_space):
        parameter_space.evaluate(mask=(slice(None), self.post._mask_local))
        if "weight" in parameter_space.keys():
            self._adopt_learned()
        new = {"weight": self._weight.copy(), "delay": self._delay.copy()}
        new.update({k: v.copy() for k, v in self._extra.items()})
        for j, column in enumerate(parameter_space.columns()):
            sel = self._post == j
            if not sel.any():
                continue
            for name, value in column.items():
                if name not in new:
                    raise ChipFeatureError(self._no_attribute(name))
                value = np.asarray(value, dtype=float)
                new[name][sel] = value[self._pre[sel]] if value.ndim else value
        check_weight_sign(new["weight"], self)
        self._weight, self._delay = new.pop("weight"), new.pop("delay")
        self._extra = new
        simulator.state.touch()

    def _no_attribute(self, name):
        return (
            f"{type(self.synapse_type).__name__} on BrainScaleS-2 has the attributes "
            f"{', '.join(['weight', 'delay', *self._extra])}, not {name!r}."
        )

    def _values(self, name):
        if name == "weight":
            return self._current_weight()
        if name == "delay":
            return self._delay
        if name in self._extra:
            return self._extra[name]
        return None

    def _get_attributes_as_list(self, names):
        cols = []
        for name in names:
            if name == "presynaptic_index":
                cols.append(self._pre)
            elif name == "postsynaptic_index":
                cols.append(self._post)
            elif self._values(name) is not None:
                cols.append(self._values(name))
            else:
                raise ChipFeatureError(self._no_attribute(name))
        return [
            tuple(int(v) if n.endswith("index") else float(v) for n, v in zip(names, row, strict=True))
            for row in zip(*cols, strict=True)
        ]

    def _get_attributes_as_arrays(self, names, multiple_synapses="sum"):
        op = common.Projection.MULTI_SYNAPSE_OPERATIONS[multiple_synapses]
        out = []
        for name in names:
            values = self._values(name)
            if values is None and name.endswith("s"):
                name = name[:-1]
                values = self._values(name)
            if values is None:
                raise ChipFeatureError(self._no_attribute(name))
            arr = np.full((self.pre.size, self.post.size), np.nan)
            for i, j, v in zip(self._pre, self._post, values, strict=True):
                arr[i, j] = v if np.isnan(arr[i, j]) else op(arr[i, j], v)
            out.append(arr)
        return out
