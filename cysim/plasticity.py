"""Runs with plasticity: engine tables for tracked synapses, STP and sensors, and the tick
loop that pauses the engine for the kernels of :mod:`cysim.ppu` (compiled programs,
:class:`~cysim.ppu.STDPProgram`, tick inside the engine instead).

The equations (correlation sensors, spike counters, driver short-term plasticity) stand
in the docstring of :mod:`cysim.engine`. A run takes this path when it has a plasticity
program or a synapse driver with short-term plasticity on; every other run keeps the
one-pass path of :func:`cysim.engine.simulate`.
"""

from __future__ import annotations

import numpy as np

from . import _engine, engine
from . import constants as C
from .errors import KernelError, PlasticityError
from .ppu import PlasticityContext, STDPProgram
from .result import PlasticityLog, PlasticityRecord

_CORR_CELLS = ("corr_tau_causal", "corr_tau_acausal", "corr_amp_causal", "corr_amp_acausal")
_STP_CELLS = ("stp_utilization", "stp_tau_rec", "stp_tau_fac")
_MAX_TICKS = 10_000_000
#: the engine lists sensors that cross their first step for the compiled programs' next
#: ticks; beyond 2 * (routed synapses) + FOUND_LIST_MIN entries it drops the list and the
#: programs' next ticks scan every sensor instead
FOUND_LIST_MIN = 1024


def rows_on(config) -> np.ndarray:
    """Synapse rows that pass events, shape (2, 256): row mode set and driver enabled."""
    rows = np.arange(C.N_ROWS)
    return (config.array("row_modes") != C.ROW_OFF) & config.array("driver_enable")[:, rows // 2]


def tracked_synapses(config, programs) -> np.ndarray:
    """Mask (2, 256, 256) of the synapses a plastic run tracks: those in use (non-zero
    weight on an enabled row) and those the programs ask for."""
    mask = (config.array("synapse_weights") > 0) & rows_on(config)[:, :, None]
    for program in programs:
        if program.synapses is not None:
            mask = mask | program.synapses
    return mask


def extra_active(config, tracked) -> np.ndarray:
    """Circuits a plastic run integrates step by step although they may look passive: a
    kernel can change their parameters or give their synapses a weight."""
    routed = tracked & rows_on(config)[:, :, None]
    active = np.zeros(C.N_CIRCUITS, dtype=bool)
    active[np.flatnonzero(routed.any(axis=1).reshape(-1))] = True
    for name in ("enable_spiking", "enable_bias_current", "enable_exponential", "enable_adaptation"):
        active |= config.array(name)
    return active


def _csr(groups, size, values):
    """CSR pointer over ``size`` groups and ``values`` sorted stably by group."""
    srt = np.argsort(groups, kind="stable")
    ptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=size), out=ptr[1:])
    return ptr, values[srt], srt


def plastic_tables(config, physics, inp, tracked, sensors: bool) -> dict:
    """Engine input of the event path (see ``_engine.Session``) for ``inp`` from
    :func:`cysim.engine.prepare`.

    Tracked synapses come in three orders: ``s`` (row-major; what kernels see), ``k``
    (routing entries: the synapses on enabled rows sorted stably by routing key, as in the
    static table) and ``j`` (the same synapses grouped by local circuit, for the sensor
    sweep at a spike).
    """
    n = int(inp["n"])
    order = np.asarray(inp["order"])
    local = np.empty(C.N_CIRCUITS, dtype=np.int64)
    local[order] = np.arange(C.N_CIRCUITS)
    h, r, c = np.nonzero(tracked)
    n_syn = h.size
    on = rows_on(config)[h, r]
    d = r // C.ROWS_PER_DRIVER
    loc = local[h * C.N_COLUMNS + c]
    if np.any(loc[on] >= n):
        raise PlasticityError("internal: a tracked synapse targets a circuit that is not integrated")
    channel = (config.array("row_modes")[h, r] == C.ROW_INH).astype(np.int64)

    # k: routing entries, grouped by key like the static table
    e = np.flatnonzero(on)
    bus = h[e] * C.N_PADI_BUSES + d[e] % C.N_PADI_BUSES
    select = config.array("driver_row_select")[h[e], d[e]].astype(np.int64)
    key = (
        (bus.astype(np.int64) << C.ADDRESS_BITS)
        | (select << 6)
        | config.array("synapse_labels")[h[e], r[e], c[e]]
    )
    key_ptr, entry_syn, _ = _csr(key, engine.N_KEYS, e)
    # j: the same synapses grouped by their (local) circuit
    post_ptr, post_syn, _ = _csr(loc[e], max(n, 1), e)
    syn_entry = np.full(n_syn, -1, dtype=np.int64)
    syn_entry[entry_syn] = np.arange(e.size)
    syn_post = np.full(n_syn, -1, dtype=np.int64)
    syn_post[post_syn] = np.arange(e.size)
    corr = physics.correlation_parameters({k: config.array(k) for k in _CORR_CELLS}, h, r, c)

    # driver short-term plasticity: the drivers each key passes
    stp_on = config.array("stp_enable") & config.array("driver_enable")
    stp = physics.stp_parameters({k: config.array(k) for k in _STP_CELLS})
    hd, dd = np.nonzero(stp_on)
    dbus = hd * C.N_PADI_BUSES + dd % C.N_PADI_BUSES
    dsel = config.array("driver_row_select")[hd, dd].astype(np.int64)
    dkeys = ((dbus.astype(np.int64) << C.ADDRESS_BITS) | (dsel << 6))[:, None] + np.arange(C.LABEL_MAX + 1)
    ddrv = np.repeat(hd * C.N_DRIVERS + dd, C.LABEL_MAX + 1)
    stp_key_ptr, stp_key_drv, _ = _csr(dkeys.reshape(-1), engine.N_KEYS, ddrv)
    fac = config.array("stp_facilitation")

    # per-circuit synaptic gains (local order), as in engine.synapse_targets
    params = inp["params"]
    coba = config.array("enable_coba")[order[:n]]
    gexc, ginh = params["syn_gain_exc"][:n], params["syn_gain_inh"][:n]
    gain = np.concatenate(
        [
            np.where(coba, gexc / engine.COBA_REFERENCE_V, gexc),
            np.where(coba, ginh / engine.COBA_REFERENCE_V, ginh),
        ]
    )
    i32 = np.int32
    zero = {
        x: np.clip(corr[f"offset_{x}"] + 0.5, 0.0, float(C.CORR_MAX)).astype(np.uint8)
        for x in ("causal", "acausal")
    }
    syn_key = np.full(n_syn, -1, dtype=np.int64)
    syn_key[e] = key
    weights = config.array("synapse_weights")[h, r, c]
    syn_dg, syn_sg = physics.driver_gain[h, d], physics.synapse_gain[h, r, c]
    syn_gidx = np.where(on, channel * n + loc, -1)
    # amplitudes of the routing entries at the configured weights (what the engine computes
    # when it applies them all, operation by operation)
    amp0 = None
    if weights.size == 0 or (weights.min() >= 0 and weights.max() <= C.WEIGHT_MAX):
        k_syn = entry_syn
        amp0 = ((weights[k_syn].astype(np.float64) * syn_dg[k_syn]) * syn_sg[k_syn]) * gain[syn_gidx[k_syn]]
    return {
        "n_syn": n_syn,
        "n_entries": e.size,
        "sensors": sensors,
        "any_stp": bool(stp_on.any()),
        "key_ptr": key_ptr,
        "key_target": (channel * n + loc)[entry_syn].astype(i32),
        "entry_syn": entry_syn.astype(i32),
        "entry_drv": (h * C.N_DRIVERS + d)[entry_syn].astype(i32),
        "entry_circ": loc[entry_syn].astype(i32),
        "eta_a": corr["eta_acausal"][entry_syn],
        "inv_tau_a": 1.0 / corr["tau_acausal_us"][entry_syn],
        "offh_a": corr["offset_acausal"][entry_syn] + 0.5,
        "post_ptr": post_ptr,
        "post_syn": post_syn.astype(i32),
        "eta_c": corr["eta_causal"][post_syn],
        "inv_tau_c": 1.0 / corr["tau_causal_us"][post_syn],
        "offh_c": corr["offset_causal"][post_syn] + 0.5,
        "syn_entry": syn_entry.astype(i32),
        "syn_post": syn_post.astype(i32),
        "syn_dg": syn_dg,
        "syn_sg": syn_sg,
        "syn_gidx": syn_gidx.astype(i32),
        "amp0": amp0,
        "zero_c": zero["causal"],
        "zero_a": zero["acausal"],
        "zero_cj": zero["causal"][post_syn],
        "zero_ak": zero["acausal"][entry_syn],
        "zero_aj": zero["acausal"][post_syn],
        "zero_ck": zero["causal"][entry_syn],
        "thr_c": first_step(corr["offset_causal"][post_syn] + 0.5),
        "thr_a": first_step(corr["offset_acausal"][entry_syn] + 0.5),
        "corr_sat": float(C.CORR_MAX),
        "n_keys": engine.N_KEYS,
        "j_key": syn_key[post_syn].astype(i32),
        "k_j": np.asarray(syn_post)[entry_syn].astype(i32),
        "key_live_us": _key_live_us(key_ptr, 1.0 / corr["tau_causal_us"][entry_syn]),
        "entry_key": np.repeat(np.arange(engine.N_KEYS, dtype=np.int64), np.diff(key_ptr)),
        "j_circ": np.repeat(np.arange(max(n, 1), dtype=np.int64), np.diff(post_ptr)),
        "stp_key_ptr": stp_key_ptr,
        "stp_key_drv": stp_key_drv.astype(i32),
        "n_drivers": C.N_HEMISPHERES * C.N_DRIVERS,
        "stp_U": stp["utilization"].reshape(-1),
        "stp_inv_rec": 1.0 / stp["tau_rec_us"].reshape(-1),
        "stp_inv_fac": np.where(fac, 1.0 / stp["tau_fac_us"], 0.0).reshape(-1),
        "weights": weights,
        "gain": gain,
        "coords": (h, r, c),
    }


KDIV_ROWS_MAX = 64  # parameter rows up to which the engine looks up K = readout / eta


def _quotients(q_par) -> np.ndarray:
    """Per parameter row: ``k / eta_causal`` and ``k / eta_acausal`` for the readout
    differences k = 0..255 (the divisions of an update, done once; flat, 512 per row)."""
    k = np.arange(256.0)
    return np.ascontiguousarray(k[None, None, :] / q_par[:, 6:8, None]).reshape(-1)


def _per_position_apart(block):
    """``(block, own)``: compiled-program parameter rows whose ``w_min``, ``w_max`` (columns
    2, 3) are float32 numbers and whose bounds of a new weight (4, 5, whole) are int16 numbers
    become the distinct rows of the other columns (at most 32,767 of them), and ``own``
    holds per position what the engine keeps next to each position's weight: those four
    (``"wdep"``: float32, ``"bounds"``: int16) and the position's row (``"row"``: int16);
    otherwise the rows as they are and ``None``."""
    if block.shape[0] < 2:
        return block, None
    wdep, bounds = block[:, 2:4], block[:, 4:6]
    with np.errstate(over="ignore", invalid="ignore"):
        if not (np.isfinite(wdep).all() and (wdep.astype(np.float32) == wdep).all()):
            return block, None
    if not np.isfinite(bounds).all():  # (whole numbers, see _native_tables)
        return block, None
    if bounds.min() < np.iinfo(np.int16).min or bounds.max() > np.iinfo(np.int16).max:
        return block, None
    keys = np.ascontiguousarray(block[:, (0, 1, 6, 7)]).view(np.int64)  # bit for bit
    if (keys == keys[:1]).all():
        rows, row = keys[:1], np.zeros(keys.shape[0], dtype=np.int64)
    else:  # the distinct rows, in lexicographic order of their bits
        order = np.lexsort(keys.T[::-1])
        ordered = keys[order]
        first = np.ones(keys.shape[0], dtype=bool)
        first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
        rows = ordered[first]
        row = np.empty(keys.shape[0], dtype=np.int64)
        row[order] = np.cumsum(first) - 1
    if rows.shape[0] > np.iinfo(np.int16).max:
        return block, None
    out = np.zeros((rows.shape[0], 8))
    out[:, (0, 1, 6, 7)] = rows.view(np.float64)
    own = {
        "wdep": np.ascontiguousarray(wdep, dtype=np.float32),
        "bounds": np.ascontiguousarray(bounds, dtype=np.int16),
        "row": np.ascontiguousarray(row.reshape(-1), dtype=np.int16),
    }
    return out, own


def _initial_state(w0, own) -> np.ndarray:
    """A compiled program's state per position at the start of a run (``NAT_STATE``): the
    configured weights ``w0`` and, where it keeps them there (``own``, see
    :func:`_per_position_apart`), its per-position parameters; no carry."""
    state = np.zeros(w0.size, dtype=NAT_STATE)
    state["w"] = w0
    if own is not None:
        state["w_min"], state["w_max"] = own["wdep"][:, 0], own["wdep"][:, 1]
        state["lo"], state["hi"] = own["bounds"][:, 0], own["bounds"][:, 1]
        state["row"] = own["row"]
    return state


def _key_live_us(key_ptr, inv_tau_k) -> np.ndarray:
    """Per routing key: a time within which a new arrival finds all of the key's synapses
    still among the live causal entries of their circuits (the engine drops an entry whose
    pre trace is 40 tau old; this is 40 of the key's shortest tau, less 0.1 %)."""
    n_keys = key_ptr.size - 1
    fastest = np.zeros(n_keys)
    if inv_tau_k.size:
        np.maximum.at(fastest, np.repeat(np.arange(n_keys), np.diff(key_ptr)), inv_tau_k)
    with np.errstate(divide="ignore"):
        return np.where(fastest > 0, 0.999 * 40.0 / fastest, 0.0)


def first_step(offh) -> np.ndarray:
    """Per sensor with readout ``clip(floor(acc + offh), 0, 255)`` (``offh``: offset +
    0.5): the smallest float32 accumulated value ``acc`` that reads more than the empty
    sensor (the engine's float32 accumulator added in float64, as the readout does);
    inf where none does."""
    offh = np.asarray(offh, dtype=np.float64)
    empty = np.floor(np.clip(offh, 0.0, float(C.CORR_MAX)))
    target = np.where(empty < C.CORR_MAX, empty + 1.0, np.inf)
    thr = np.maximum(target - offh, 0.0).astype(np.float32)
    finite = np.isfinite(target)
    inf32, zero32 = np.float32(np.inf), np.float32(0.0)
    for _ in range(64):  # a few ulp from the rounded guess
        low = finite & (thr.astype(np.float64) + offh < target)
        prev = np.nextafter(thr, zero32)
        high = finite & (thr > 0) & (prev.astype(np.float64) + offh >= target)
        if not (low.any() or high.any()):
            break
        thr = np.where(low, np.nextafter(thr, inf32), np.where(high, prev, thr))
    else:  # pragma: no cover - the guess is within a few ulp
        raise PlasticityError("internal: sensor thresholds did not converge")
    return np.where(finite, thr, inf32).astype(np.float32)


def cached_tables(chip, config, inp, tracked, sensors: bool) -> dict:
    """:func:`plastic_tables`, reused while the configuration, the tracked synapses and
    the circuit order stay the same (repeated runs of one configuration)."""
    order = np.asarray(inp["order"])
    key = (
        config.revision,
        hash(np.packbits(tracked).tobytes()),
        bool(sensors),
        int(inp["n"]),
        hash(order.tobytes()),
    )
    cache = chip._plastic_tables
    if cache is None or cache[0] != key:
        cache = (key, plastic_tables(config, chip._physics, inp, tracked, sensors))
        chip._plastic_tables = cache
    return cache[1]


def _consumers(size, pairs):
    """CSR ``(ptr, consumers)`` over ``size`` keys or circuits from ``[(group ids, consumer)]``."""
    groups = np.concatenate([g for g, _ in pairs]) if pairs else np.zeros(0, dtype=np.int64)
    cons = np.concatenate([np.full(g.size, c, dtype=np.int64) for g, c in pairs]) if pairs else groups
    srt = np.lexsort((cons, groups))
    ptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=size), out=ptr[1:])
    return ptr, cons[srt].astype(np.int32)


_ENTRY_INFO = np.dtype(
    [("offh", "<f8"), ("q", "<i4"), ("s", "<i4"), ("zero", "u1"), ("zero_other", "u1")], align=True
)  # EntryInfo of the engine (24 bytes)
NAT_STATE = np.dtype(
    [
        ("carry", "<f8"),
        ("mark", "<u4"),
        ("slot", "<i4"),
        ("w_min", "<f4"),
        ("w_max", "<f4"),
        ("w", "<i2"),
        ("lo", "<i2"),
        ("hi", "<i2"),
        ("row", "<i2"),
    ]
)  # NatState of the engine (32 bytes): a compiled program's state per position


def _sole_owner(entry_ptr, owner, q_prog) -> np.ndarray:
    """Per group of entries (CSR ``entry_ptr``): the program that owns all of them
    (``owner``: entry -> position, -1 for none), or -2."""
    size = entry_ptr.size - 1
    counts = np.diff(entry_ptr)
    n_e = int(entry_ptr[-1])
    if q_prog.size == 0 or n_e == 0:
        return np.full(size, -2, dtype=np.int64)
    q = owner[:n_e]
    prog = np.where(q >= 0, q_prog[np.maximum(q, 0)], -1).astype(np.int64)
    group = np.repeat(np.arange(size), counts)
    nonempty = counts > 0
    first = np.full(size, -1, dtype=np.int64)
    first[nonempty] = prog[entry_ptr[:-1][nonempty]]
    differs = np.bincount(group, weights=prog != first[group], minlength=size) > 0
    return np.where(nonempty & ~differs & (first >= 0), first, -2)


def native_layout(tables, positions) -> dict:
    """Engine tables of compiled programs owning the tracked synapses ``positions`` (one
    int array per program, disjoint): positions ``q``, the synapses' owners in k and j
    order, and which keys and circuits concern which consumer (0: readouts, 1 + g:
    program g); per entry what a tick needs (``jinfo``, ``kinfo``) and the threshold of the
    first readout step (inf where no program owns the synapse: the engine lists nothing
    there). Cached in ``tables`` (a few layouts)."""
    key = tuple(None if p is None else hash(p.tobytes()) for p in positions)
    cache = tables.setdefault("_native_layouts", {})
    if key in cache:
        return cache[key]
    n_syn = int(tables["n_syn"])
    syns = [np.arange(n_syn, dtype=np.int64) if p is None else p for p in positions]
    syn_entry, syn_post = tables["syn_entry"], tables["syn_post"]
    # a program's positions in the order of the routing entries (by key), so that the state
    # of the synapses that one event reaches lies together (row j of a program's
    # parameters is its synapse q_order[g][j] in the order given)
    q_order = []
    for g, s in enumerate(syns):
        k = syn_entry[s]
        q_order.append(np.argsort(np.where(k >= 0, k, np.iinfo(np.int64).max), kind="stable"))
        syns[g] = s[q_order[-1]]
    off = np.zeros(len(syns) + 1, dtype=np.int64)
    np.cumsum([s.size for s in syns], out=off[1:])
    q_syn = np.concatenate(syns) if syns else np.zeros(0, dtype=np.int64)
    n_entries = max(int(tables["n_entries"]), 1)
    k_q = np.full(n_entries, -1, dtype=np.int32)
    j_q = np.full(n_entries, -1, dtype=np.int32)
    q = np.arange(q_syn.size, dtype=np.int32)
    routed = syn_entry[q_syn] >= 0
    k_q[syn_entry[q_syn[routed]]] = q[routed]
    j_q[syn_post[q_syn[routed]]] = q[routed]
    n_keys = int(tables["n_keys"])
    n_circ = tables["post_ptr"].size - 1
    all_keys = np.flatnonzero(np.diff(tables["key_ptr"]))
    all_circuits = np.flatnonzero(np.diff(tables["post_ptr"]))
    key_pairs = [(all_keys, 0)]
    circ_pairs = [(all_circuits, 0)]
    for g, (p, s) in enumerate(zip(positions, syns, strict=True)):
        if p is None:  # every tracked synapse
            key_pairs.append((all_keys, g + 1))
            circ_pairs.append((all_circuits, g + 1))
            continue
        s = s[syn_entry[s] >= 0]
        key_pairs.append((np.unique(tables["entry_key"][syn_entry[s]]), g + 1))
        circ_pairs.append((np.unique(tables["j_circ"][syn_post[s]]), g + 1))
    kc_ptr, kc_cons = _consumers(n_keys, key_pairs)
    cc_ptr, cc_cons = _consumers(n_circ, circ_pairs)
    q_prog = np.repeat(np.arange(len(syns), dtype=np.int32), np.diff(off))
    info = {}
    for name, owner, syn, offh, zero, other, thr in (
        ("j", j_q, tables["post_syn"], "offh_c", "zero_cj", "zero_aj", "thr_c"),
        ("k", k_q, tables["entry_syn"], "offh_a", "zero_ak", "zero_ck", "thr_a"),
    ):
        rec = np.zeros(n_entries, dtype=_ENTRY_INFO)
        e = int(tables["n_entries"])
        rec["offh"][:e] = tables[offh]
        rec["q"] = owner
        rec["s"][:e] = syn
        rec["zero"][:e] = tables[zero]
        rec["zero_other"][:e] = tables[other]
        info[name + "info"] = rec.view(np.uint8)
        thr_run = np.full(n_entries, np.inf, dtype=np.float32)
        thr_run[:e] = np.where(owner[:e] >= 0, tables[thr], np.float32(np.inf))
        info[thr] = thr_run
    # bit 30 of a consumer entry: every entry of the key (circuit) is its program's
    for entry_ptr, owner, ptr, cons in (
        (tables["key_ptr"], k_q, kc_ptr, kc_cons),
        (tables["post_ptr"], j_q, cc_ptr, cc_cons),
    ):
        sole = _sole_owner(entry_ptr, owner, q_prog)
        group = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
        full = (cons >= 1) & (sole[group] == cons.astype(np.int64) - 1)
        cons |= np.where(full, 1 << 30, 0).astype(np.int32)
    layout = {
        "n_native": len(syns),
        "nat_off": off,
        **info,
        "q_syn": q_syn.astype(np.int32),
        "_q_order": q_order,
        "k_q": k_q,
        "j_q": j_q,
        "kc_ptr": kc_ptr,
        "kc_cons": kc_cons,
        "cc_ptr": cc_ptr,
        "cc_cons": cc_cons,
    }
    if len(cache) >= 8:
        cache.clear()
    cache[key] = layout
    return layout


class PlasticRun:
    """One batched run with plasticity programs: the engine session and the tick loop.

    Compiled programs (:class:`~cysim.ppu.STDPProgram`) tick inside the engine: the tick
    loop hands the engine the ticks between two Python ticks at once (``ticks`` of
    ``Session.advance``). A compiled program that records weight snapshots ticks from the
    loop (``Session.native_tick``), so the snapshot follows its tick.
    """

    def __init__(self, chip, config, inp, programs, tracked, threads):
        self.chip = chip
        self.config = config
        self.inp = inp
        self.programs = programs
        self.names = [p.name or f"program{k}" for k, p in enumerate(programs)]
        self.n_trials = int(inp["n_trials"])
        sensors = any(p.correlation for p in programs)
        self.tables = cached_tables(chip, config, inp, tracked, sensors)
        self.n_syn = int(self.tables["n_syn"])
        self.synapses = self.tables["coords"]
        self._index = None
        self._zero = None
        self.native = self._native_programs()  # program index -> compiled program number
        self._schedule = self.schedule()
        in_engine = np.full(len(programs) + 1, -1, dtype=np.int32)  # program -> g of engine ticks
        for k, g in self.native.items():
            if not programs[k].record_weights:
                in_engine[k] = g
        engine_prog = in_engine[self._schedule[:, 1]]
        engine_rows = engine_prog >= 0
        self._engine_rows = engine_rows
        native = self._native_tables()
        native["ntk_step"] = self._schedule[engine_rows, 0]
        native["found_cap"] = 2 * int(self.tables["n_entries"]) + FOUND_LIST_MIN
        native["ntk_prog"] = engine_prog[engine_rows]
        # the arrays of the last finished run of these tables, refilled (fresh pages cost more)
        native["_pool"] = self.tables.pop("_session_arrays", None)
        self.session = _engine.Session(inp, {**self.tables, **native}, threads)
        self.arrays = self.session.arrays
        self.n = int(inp["n"])
        self.order = np.asarray(inp["order"])
        # kernel-facing state
        self._weights_touched = False
        self._corr = None  # readout buffers of the current tick
        self._capmem = {}  # name -> (trials, 512) int16 written by kernels
        self._capmem_applied = {}
        self._capmem_touched = set()
        self._records = {name: {} for name in self.names}
        self._history = {
            name: ([], []) for name, p in zip(self.names, programs, strict=True) if p.record_weights
        }
        self._ticks = []  # (schedule row, time_us, program, weights_clipped, capmem_clipped)
        self._weights_view = self.arrays["weights"][:, : self.n_syn]  # the same objects every tick
        self._weights_rows = list(self._weights_view)

    # --- compiled programs ------------------------------------------------------------------
    def _native_programs(self) -> dict:
        """``{program index: g}`` of the programs the engine runs (compiled ones whose
        synapses no earlier compiled program owns)."""
        out = {}
        if not self.tables["sensors"]:
            return out
        owned = None
        self._positions = []
        for k, program in enumerate(self.programs):
            if not (isinstance(program, STDPProgram) and program.compiled):
                continue
            pos = None if program.synapses is None else program.positions(self)
            if owned is None:
                owned = np.zeros(self.n_syn, dtype=bool)
            elif pos is None or owned[pos].any():
                continue  # overlaps: runs its Python kernel
            owned[slice(None) if pos is None else pos] = True
            out[k] = len(out)
            self._positions.append(pos)
        return out

    def _native_tables(self) -> dict:
        layout = native_layout(self.tables, self._positions if self.native else [])
        rows, mult, reset, uniform, settled, par_off = [], [], [], [], [], [0]
        in_state, states = [], []  # per program: parameters kept per position; initial state
        # parameter rows per program, kept with the tables (the configuration's revision):
        # a program's parameters are fixed when it is made
        blocks = self.tables.setdefault("_native_params", {})
        for k in self.native:
            program = self.programs[k]
            cached = blocks.get(id(program))
            if cached is not None and cached[0] is program:
                block, inside, kept, state = cached[1:]
            else:
                coords = (
                    self.synapses
                    if program.synapses is None
                    else tuple(c[program.positions(self)] for c in self.synapses)
                )
                arrays = program.arrays(self.config, coords, uniform=True)
                block = np.stack([np.atleast_1d(arrays[key]) for key in STDPProgram.PARAMETERS], axis=1)
                if block.shape[0] > 1:  # rows in the order of the positions
                    block = np.ascontiguousarray(block[layout["_q_order"][len(rows)]])
                # whether the configured weights lie within the bounds of a new weight: then
                # the first tick has no weight to bring into them
                g = len(rows)
                w0 = self.tables["weights"][layout["q_syn"][layout["nat_off"][g] : layout["nat_off"][g + 1]]]
                inside = bool(np.all((block[:, 4] <= w0) & (w0 <= block[:, 5])))
                if not np.all(block[:, 4:6] == np.floor(block[:, 4:6])):  # (the engine relies on it)
                    raise RuntimeError("internal: the bounds of a new weight are not whole numbers")
                block, own = _per_position_apart(block)
                state = _initial_state(w0, own)
                kept = own is not None  # parameters kept per position
                if len(blocks) >= 8:
                    blocks.clear()
                blocks[id(program)] = (program, block, inside, kept, state)
            rows.append(block)
            par_off.append(par_off[-1] + block.shape[0])
            uniform.append(block.shape[0] == 1)
            in_state.append(kept)
            states.append(state)
            settled.append(inside)
            mult.append(program.multiplicative)
            reset.append(program.reset)
        nat0 = (states[0] if len(states) == 1 else np.concatenate(states)) if states else np.zeros(0, NAT_STATE)
        q_par = (rows[0] if len(rows) == 1 else np.concatenate(rows)) if rows else np.zeros((0, 8))
        return {
            **{key: value for key, value in layout.items() if key != "_q_order"},
            "nat_mult": np.array(mult, dtype=np.int32),
            "nat_reset": np.array(reset, dtype=np.uint8),
            "nat_uniform": np.array(uniform, dtype=np.uint8),
            "nat_in_state": np.array(in_state, dtype=np.uint8),
            "nat0": nat0,
            "nat_settled": np.array(settled, dtype=np.uint8),
            "nat_par": np.array(par_off, dtype=np.int64),
            "q_par": q_par,
            # the quotients of the updates where there are few rows (one per program mostly)
            "q_kdiv": _quotients(q_par) if 0 < q_par.shape[0] <= KDIV_ROWS_MAX else np.zeros(0),
        }

    # --- access for the context ----------------------------------------------------------
    def weights_for_kernel(self, trial=None):
        self._weights_touched = True
        return self._weights_view if trial is None else self._weights_rows[trial]

    def zero_readouts(self):
        if self._zero is None:
            self._zero = (self.tables["zero_c"].view(), self.tables["zero_a"].view())
            for view in self._zero:
                view.flags.writeable = False
        return self._zero

    def correlation(self):
        if self._corr is None:
            self.session.refresh_readouts()
            causal = self.arrays["read_c"][:, : self.n_syn].copy()
            acausal = self.arrays["read_a"][:, : self.n_syn].copy()
            causal.flags.writeable = False
            acausal.flags.writeable = False
            self._corr = (causal, acausal)
        return self._corr

    def reset_correlation(self, trial, index, causal, acausal):
        self._corr = None
        if index is None:
            self.session.reset_correlation(-1 if trial is None else trial, causal, acausal)
            return
        rows = slice(None) if trial is None else trial
        idx = np.asarray(index)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64).reshape(-1)
        t = self.tables
        for on, acc, pos, read, zero in (
            (causal, "acc_c", t["syn_post"], "read_c", t["zero_c"]),
            (acausal, "acc_a", t["syn_entry"], "read_a", t["zero_a"]),
        ):
            if on:
                p = pos[idx]
                self.arrays[acc][rows, p[p >= 0]] = 0.0
                self.arrays[read][rows, idx] = zero[idx]

    def spike_counts(self):
        out = np.zeros((self.n_trials, C.N_CIRCUITS), dtype=np.uint8)
        out[:, self.order[: self.n]] = self.arrays["counts"][:, : self.n]
        out.flags.writeable = False
        return out

    def reset_spike_counts(self, trial, circuits):
        rows = slice(None) if trial is None else trial
        if circuits is None:
            self.arrays["counts"][rows] = 0
            return
        local = np.empty(C.N_CIRCUITS, dtype=np.int64)
        local[self.order] = np.arange(C.N_CIRCUITS)
        loc = local[np.asarray(circuits, dtype=np.int64).reshape(-1)]
        self.arrays["counts"][rows, loc[loc < self.n]] = 0

    def last_cadc(self):
        k = self.session.cadc_count
        if k == 0:
            return None
        sample = self.session.cadc[:, k - 1]
        sample.flags.writeable = False
        return sample

    def last_cadc_time(self):
        k = self.session.cadc_count
        return None if k == 0 else float(self.inp["cadc_times"][k - 1])

    def capmem_array(self, name):
        if name not in self._capmem:
            values = np.repeat(self.config.array(name)[None, :].astype(np.int16), self.n_trials, axis=0)
            self._capmem[name] = values
            self._capmem_applied[name] = values.copy()
        self._capmem_touched.add(name)
        return self._capmem[name]

    def synapse_index(self, hemisphere, row, column):
        if self._index is None:
            self._index = np.full((C.N_HEMISPHERES, C.N_ROWS, C.N_COLUMNS), -1, dtype=np.int64)
            self._index[self.synapses] = np.arange(self.n_syn)
        return self._index[hemisphere, row, column]

    def record(self, program, name, time_us, trial, value):
        entries = self._records[program].setdefault(name, ([], [], []))
        entries[0].append(time_us)
        entries[1].append(-1 if trial is None else trial)
        entries[2].append(np.array(value, copy=True))

    # --- applying what a kernel wrote --------------------------------------------------------
    def _apply(self):
        clipped_w = 0
        if self._weights_touched:
            clipped_w = int(self.session.apply_weights())
            self._weights_touched = False
        clipped_c = 0
        if self._capmem_touched:
            changed = np.zeros(self.n_trials, dtype=bool)
            for name in self._capmem_touched:
                values = self._capmem[name]
                bad = (values < 0) | (values > C.CAPMEM_MAX)
                if bad.any():
                    clipped_c += int(bad.sum())
                    np.clip(values, 0, C.CAPMEM_MAX, out=values)
                diff = (values != self._capmem_applied[name]).any(axis=1)
                if diff.any():
                    changed |= diff
                    self._capmem_applied[name][diff] = values[diff]
            self._capmem_touched.clear()
            for trial in np.flatnonzero(changed):
                self._set_trial_capmem(int(trial))
        return clipped_w, clipped_c

    def _set_trial_capmem(self, trial):
        cfg = self.config
        capmem = {
            n: (self._capmem_applied[n][trial] if n in self._capmem_applied else cfg.array(n)).astype(
                np.float64
            )
            for n in C.CAPMEM_FIELDS
        }
        params = self.chip._physics.circuit_parameters(capmem, {n: cfg.array(n) for n in C.SWITCH_FIELDS})
        p = {name: getattr(params, name)[self.order] for name in params.__dataclass_fields__}
        flags = engine.switch_flags(cfg)[self.order]
        arrays = engine.circuit_inputs(p, flags, float(self.inp["dt"]), cfg.cadc_period_us)
        n = self.n
        coba = cfg.array("enable_coba")[self.order[:n]]
        gexc, ginh = p["syn_gain_exc"][:n], p["syn_gain_inh"][:n]
        gain = np.concatenate(
            [
                np.where(coba, gexc / engine.COBA_REFERENCE_V, gexc),
                np.where(coba, ginh / engine.COBA_REFERENCE_V, ginh),
            ]
        )
        self.session.set_trial_circuits(trial, arrays, gain)

    # --- the tick loop ---------------------------------------------------------------------------
    def schedule(self):
        """``(step, program index, tick)`` of every tick, in execution order."""
        n_steps, dt = int(self.inp["n_steps"]), float(self.inp["dt"])
        items = []
        for k, program in enumerate(self.programs):
            steps = program.tick_steps(n_steps, dt)
            if steps.size > _MAX_TICKS:
                raise PlasticityError(
                    f"plasticity program {self.names[k]!r} would tick {steps.size} times in this run "
                    f"(at most {_MAX_TICKS}); use a longer period_us or fewer num_periods."
                )
            items.append(np.stack([steps, np.full(steps.size, k), np.arange(steps.size)], axis=1))
        if not items:
            return np.zeros((0, 3), dtype=np.int64)
        allt = np.concatenate(items)
        return allt[np.lexsort((allt[:, 2], allt[:, 1], allt[:, 0]))]

    def execute(self):
        """Run to the end, calling the kernels at their ticks; returns the engine outputs."""
        session = self.session
        dt = float(self.inp["dt"])
        session.start()
        engine_before = np.cumsum(self._engine_rows) - self._engine_rows
        rows = np.flatnonzero(~self._engine_rows)
        for row, (step, k, tick), before in zip(
            rows.tolist(), self._schedule[rows].tolist(), engine_before[rows].tolist(), strict=True
        ):
            session.advance(step, before)
            program, name = self.programs[k], self.names[k]
            time_us = step * dt
            self._corr = None
            if k in self.native:  # a compiled program that records weights
                self._ticks.append((row, time_us, name, int(session.native_tick(self.native[k])), 0))
                self._history[name][0].append(time_us)
                self._history[name][1].append(self.arrays["applied"][:, : self.n_syn].astype(np.uint8))
                continue
            trials = range(self.n_trials) if program.per_trial else (None,)
            for trial in trials:
                ctx = PlasticityContext(self, name, tick, time_us, trial)
                try:
                    program.kernel(ctx)
                except Exception as exc:
                    self._ticks.append((row, time_us, name, 0, 0))
                    result = self.chip._result_from(self, session.outputs(), time_us)
                    where = "" if trial is None else f" (trial {trial})"
                    raise KernelError(
                        f"plasticity kernel of program {name!r} raised {type(exc).__name__} at tick "
                        f"{tick}, t = {time_us:g} us{where}: {exc}",
                        program=name,
                        tick=tick,
                        time_us=time_us,
                        trial=trial,
                        result=result,
                    ) from exc
            clipped_w, clipped_c = self._apply()
            self._ticks.append((row, time_us, name, clipped_w, clipped_c))
            self._corr = None
            if name in self._history:
                self._history[name][0].append(time_us)
                self._history[name][1].append(self.arrays["applied"][:, : self.n_syn].astype(np.uint8))
        return session.finish()

    def release(self) -> None:
        """Hand the session's buffers to the next runs of these tables, keeping the larger
        one of each name (the run is over; results hold copies)."""
        pool = self.tables.get("_session_arrays") or {}
        for name, buf in self.session.buffers.items():  # the larger buffer of each name
            kept = pool.get(name)
            if kept is None or kept.dtype != buf.dtype or kept.size < buf.size:
                pool[name] = buf
        self.tables["_session_arrays"] = pool
        self.arrays = self.session = None
        self._weights_view = self._weights_rows = None

    def log(self) -> PlasticityLog:
        """What the kernels did so far."""
        records = {}
        for program, entries in self._records.items():
            records[program] = {
                name: PlasticityRecord(
                    np.asarray(t, dtype=np.float64), np.asarray(tr, dtype=np.int64), _stack(v)
                )
                for name, (t, tr, v) in entries.items()
            }
        history = {
            name: PlasticityRecord(
                np.asarray(t, dtype=np.float64),
                np.full(len(t), -1, dtype=np.int64),
                np.stack(v) if v else np.zeros((0, self.n_trials, self.n_syn), dtype=np.uint8),
            )
            for name, (t, v) in self._history.items()
        }
        ticks = self._ticks
        rows = np.flatnonzero(self._engine_rows)[: self.session.engine_ticks_done]
        py_rows, times, programs, clipped_w, clipped_c = (
            [np.asarray(col) for col in zip(*ticks, strict=True)] if ticks else [np.zeros(0)] * 5
        )
        clipped_w = clipped_w.astype(np.int64)
        clipped_c = clipped_c.astype(np.int64)
        programs = tuple(programs.tolist())
        if rows.size:  # merge the engine's ticks of compiled programs in schedule order
            srt = np.argsort(np.concatenate([py_rows.astype(np.int64), rows]), kind="stable")
            names = np.array([*self.names, ""], dtype=object)
            times = np.concatenate([times, self._schedule[rows, 0] * float(self.inp["dt"])])[srt]
            programs = tuple(
                np.concatenate([np.array(programs, dtype=object), names[self._schedule[rows, 1]]])[srt]
            )
            engine_clipped = self.arrays["ntk_clipped"][:, : rows.size].sum(axis=0)
            clipped_w = np.concatenate([clipped_w, engine_clipped])[srt]
            clipped_c = np.concatenate([clipped_c, np.zeros(rows.size, np.int64)])[srt]
        h, r, c = self.synapses
        return PlasticityLog(
            hemisphere=h,
            row=r,
            column=c,
            weights=self.arrays["applied"][:, : self.n_syn].astype(np.uint8),
            records=records,
            weight_history=history,
            tick_times_us=np.asarray(times, dtype=np.float64),
            tick_programs=programs,
            weights_clipped=clipped_w,
            capmem_clipped=clipped_c,
            capmem={name: values.copy() for name, values in self._capmem_applied.items()},
        )


def _stack(values):
    shapes = {v.shape for v in values}
    dtypes = {v.dtype for v in values}
    if len(shapes) == 1 and len(dtypes) == 1 and next(iter(dtypes)) != np.dtype(object):
        return np.stack(values)
    return values


def run(chip, config, stimulus, duration_us, trials, seeds, dt_us, threads, programs):
    """A run with plasticity programs and/or driver short-term plasticity (see
    :meth:`cysim.VirtualChip.run`); returns ``(inp, outputs, log)``."""
    tracked = tracked_synapses(config, programs)
    active = extra_active(config, tracked) if programs else None
    if chip._compiled[0] != config.revision:
        chip._compiled = (config.revision, engine.compile_config(config, chip._physics))
    inp = engine.prepare(
        config,
        chip._physics,
        stimulus,
        duration_us,
        trials,
        seeds,
        dt_us,
        compiled=chip._compiled[1],
        extra_active=active,
    )
    if threads is None:
        threads = engine.default_threads(trials)
    plastic = PlasticRun(chip, config, inp, programs, tracked, threads)
    outputs = plastic.execute()
    log = plastic.log() if programs else None  # copies what it keeps of the session's arrays
    plastic.release()
    return inp, outputs, log
