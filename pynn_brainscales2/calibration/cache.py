"""Cached calibration: results stored per chip, targets and calibration version.

Files are ``.npz`` archives of plain arrays (loaded with ``allow_pickle=False``) plus a JSON
header holding the cache key. A file that cannot be read, whose key differs from the one
asked for, or whose arrays have the wrong shape or type is not trusted: the calibration
runs again and the file is replaced. Targets with a bias current or AdEx targets are
stored next to their LIF part (cached under the key it has on its own), so a new bias or
AdEx target only runs those steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from cysim import VirtualChip
from cysim import constants as C

from .adex import ADEX_CELLS, calibrate_adex
from .bias import calibrate_bias
from .lif import CALIBRATION_VERSION, LIF_CELLS, CalibrationResult, calibrate_lif
from .targets import RANGES, CalibrationTargets

ENV_CACHE_DIR = "PYNN_BRAINSCALES2_CACHE"


def default_cache_dir() -> Path:
    """``$PYNN_BRAINSCALES2_CACHE``, else ``~/.cache/pynn_brainscales2/calibration``."""
    env = os.environ.get(ENV_CACHE_DIR)
    base = Path(env) if env else Path.home() / ".cache" / "pynn_brainscales2"
    return base / "calibration"


def cache_key(chip: VirtualChip, targets: CalibrationTargets) -> str:
    """Digest of what determines a calibration: chip identity, targets, version."""
    ident = {
        "chip_seed": chip.seed,
        "mismatch": chip.mismatch,
        "noise": chip.noise,
        "dt_us": chip.dt_us,
        "targets": targets.key(),
        "version": CALIBRATION_VERSION,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _save(path: Path, key: str, result: CalibrationResult) -> None:
    arrays = {f"capmem__{k}": np.asarray(v, dtype=np.int16) for k, v in result.capmem.items()}
    arrays.update({f"measured__{k}": np.asarray(v, dtype=np.float64) for k, v in result.measured.items()})
    arrays.update({f"residual__{k}": np.asarray(v, dtype=np.float64) for k, v in result.residual.items()})
    header = {
        "key": key,
        "version": result.version,
        "chip_seed": result.chip_seed,
        "seconds": result.seconds,
        "runs": result.runs,
    }
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)  # atomic: readers never see half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path, key: str, targets: CalibrationTargets) -> CalibrationResult | None:
    """The cached result, or None (with a warning) if the file is not trustworthy."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            if header.get("key") != key or header.get("version") != CALIBRATION_VERSION:
                raise ValueError("key or version differs")
            cells = LIF_CELLS + (("i_bias_const",) if targets.has_bias else ())
            names = tuple(RANGES) + (("bias_current",) if targets.has_bias else ())
            if targets.has_adex:
                cells += tuple(ADEX_CELLS)
                names += tuple(ADEX_CELLS.values())
            capmem = {cell: z[f"capmem__{cell}"] for cell in cells}
            measured = {name: z[f"measured__{name}"] for name in names}
            residual = {name: z[f"residual__{name}"] for name in names}
    except FileNotFoundError:
        return None
    except (
        OSError,
        ValueError,
        KeyError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ) as err:
        warnings.warn(f"calibration cache {path} is not usable ({err}); calibrating again.", stacklevel=3)
        return None
    for cell, v in capmem.items():
        if v.shape != (C.N_CIRCUITS,) or v.dtype != np.int16 or v.min() < 0 or v.max() > C.CAPMEM_MAX:
            warnings.warn(f"calibration cache {path}: {cell} is malformed; calibrating again.", stacklevel=3)
            return None
    for d in (measured, residual):
        if any(v.shape != (C.N_CIRCUITS,) or v.dtype != np.float64 for v in d.values()):
            warnings.warn(f"calibration cache {path}: arrays are malformed; calibrating again.", stacklevel=3)
            return None
    return CalibrationResult(
        targets=targets,
        capmem=capmem,
        measured=measured,
        residual=residual,
        chip_seed=int(header["chip_seed"]),
        seconds=float(header.get("seconds", 0.0)),
        from_cache=True,
        runs=int(header.get("runs", 0)),
    )


def calibrate(
    chip: VirtualChip, targets: CalibrationTargets, cache: bool | str | Path = True
) -> CalibrationResult:
    """Calibrate ``chip`` to ``targets``, reusing a cached result when one is valid.

    Parameters
    ----------
    chip : the chip
    targets : per-circuit targets in hardware units
    cache : True (default directory, see :func:`default_cache_dir`), a directory, or False

    Returns
    -------
    CalibrationResult
        ``from_cache`` tells whether it was loaded; ``seconds`` is the time this call took.
    """
    targets.check()
    chip = chip.twin()  # measurements draw no trial seeds from the user's chip
    if cache is False:
        return calibrate_lif(chip, targets)
    t0 = time.perf_counter()
    directory = default_cache_dir() if cache is True else Path(cache)
    key = cache_key(chip, targets)
    path = directory / f"lif-{key[:32]}.npz"
    found = _load(path, key, targets)
    if found is not None:
        return _replace_seconds(found, time.perf_counter() - t0)
    if targets.has_compartments:
        # the single circuits are cached on their own: a new layout only runs the joined steps
        from .compartments import calibrate_compartments

        base = calibrate(chip, targets.per_circuit(), cache)
        result = calibrate_compartments(chip, base, targets)
    elif targets.has_adex:
        # the LIF (and bias) part is cached on its own: new AdEx targets only run the AdEx steps
        base = calibrate(chip, targets.without_adex(), cache)
        result = calibrate_adex(chip, base, targets)
    elif targets.has_bias:
        # the LIF part is cached on its own: a new bias target only runs the bias search
        base = calibrate(chip, targets.without_bias(), cache)
        result = calibrate_bias(chip, base, targets)
    else:
        result = calibrate_lif(chip, targets)
    try:
        _save(path, key, result)
    except OSError as err:
        warnings.warn(f"could not write the calibration cache {path}: {err}", stacklevel=2)
    return result


def _replace_seconds(result: CalibrationResult, seconds: float) -> CalibrationResult:
    from dataclasses import replace

    return replace(result, seconds=seconds)
