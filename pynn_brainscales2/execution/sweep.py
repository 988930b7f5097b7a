"""Map a PyNN script over parameter sets, in this process or on workers.

>>> def script(rate):
...     import pynn_brainscales2 as sim
...     sim.setup(chip=sim.VirtualChip.ideal())
...     p = sim.Population(1, sim.IF_curr_exp(i_offset=rate))
...     p.record("spikes")
...     sim.run(50.0)
...     n = len(p.get_data().segments[0].spiketrains[0])
...     sim.end()
...     return n
>>> counts = parameter_sweep(script, [{"rate": 0.5}, {"rate": 2.0}], progress=False)
>>> counts[0] < counts[1]
True
"""

from __future__ import annotations

import concurrent.futures

from ..errors import ExecutionError
from .distributed import RETRIES, check_pool, is_dask_client


def _call(script, params):
    return script(**params)


def parameter_sweep(script, parameter_sets, executor=None, progress: bool = True) -> list:
    """Run ``script(**params)`` for every entry of ``parameter_sets``; results in order.

    Parameters
    ----------
    script : callable
        A complete PyNN experiment (it calls ``setup`` and ``end`` itself) returning what
        should be gathered, e.g. Neo blocks from ``Population.get_data()``. On workers it
        runs in their own processes, each with its own simulator state; it must be
        picklable (a module-level function; Dask also ships closures).
    parameter_sets : iterable of dict
        Keyword arguments of each call.
    executor : dask.distributed.Client or concurrent.futures.Executor, optional
        Where the calls run (default: one after another in this process). Calibrations are
        cached on disk (``$PYNN_BRAINSCALES2_CACHE``): workers on one machine share them;
        on a cluster, point the variable at a shared directory.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    list
        ``script``'s return values, in the order of ``parameter_sets``.

    Raises
    ------
    ExecutionError
        if a call fails (naming the parameter set; the original exception is chained) or
        a worker dies beyond what Dask's rescheduling covers. No partial list is returned.
    """
    from tqdm.auto import tqdm

    check_pool(executor)
    params = [dict(p) for p in parameter_sets]
    if executor is None:
        out = []
        for k, p in enumerate(tqdm(params, disable=not progress, desc="sweep")):
            try:
                out.append(script(**p))
            except Exception as exc:
                raise ExecutionError(f"parameter set #{k} {p} failed: {type(exc).__name__}: {exc}") from exc
        return out
    try:
        if is_dask_client(executor):
            futures = [executor.submit(_call, script, p, pure=False, retries=RETRIES) for p in params]
        else:
            futures = [executor.submit(_call, script, p) for p in params]
    except concurrent.futures.process.BrokenProcessPool as exc:  # broken before the sweep
        raise ExecutionError(
            "the process pool is broken (a worker process died before the sweep); create a new "
            "executor and run again, or use a Dask client."
        ) from exc
    index = {id(f): k for k, f in enumerate(futures)}
    out = [None] * len(futures)
    bar = tqdm(total=len(futures), disable=not progress, desc="sweep")
    try:
        for k, f in enumerate(futures):
            try:
                out[index[id(f)]] = f.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                raise ExecutionError(
                    f"a worker process died during the sweep (at parameter set #{k} {params[k]}); no partial "
                    "results are returned. Create a new executor and run again, or use a Dask client."
                ) from exc
            except Exception as exc:
                raise ExecutionError(
                    f"parameter set #{k} {params[k]} failed: {type(exc).__name__}: {exc}"
                ) from exc
            bar.update()
    except ExecutionError:
        for f in futures:
            f.cancel()
        raise
    finally:
        bar.close()
    return out
