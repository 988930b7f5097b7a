"""Fetch PyNN's own scenario suite (``test/system/scenarios`` of the pynn sdist) into a
cache directory with pip, and load its test functions without editing them."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import tarfile
from pathlib import Path

PYNN_VERSION = "0.13.0"
ENV_DIR = "PYNN_BRAINSCALES2_SCENARIO_DIR"


def cache_dir() -> Path:
    base = os.environ.get(ENV_DIR) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "pynn_brainscales2", "pynn_sdist"
    )
    return Path(base)


def fetch() -> Path | None:
    """The extracted ``test/system/scenarios`` directory, downloaded if needed (None if not possible)."""
    root = cache_dir()
    target = root / f"pynn-{PYNN_VERSION}" / "test" / "system" / "scenarios"
    if (target / "fixtures.py").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--no-build-isolation",
                f"pyNN=={PYNN_VERSION}",
                "-d",
                str(root),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    archives = sorted(root.glob("[pP]y[nN][nN]-*.tar.gz"))
    if not archives:
        return None
    with tarfile.open(archives[-1]) as tar:
        members = [m for m in tar.getmembers() if "/test/system/scenarios/" in m.name]
        tar.extractall(root, members=members, filter="data")
    return target if (target / "fixtures.py").exists() else None


def load_tests(directory: Path) -> list[tuple[str, object]]:
    """``(module::function, function)`` of every scenario test, imported as package
    ``pynn_scenarios`` (its relative imports keep working)."""
    pkg = "pynn_scenarios"
    if pkg not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            pkg, directory / "__init__.py", submodule_search_locations=[str(directory)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[pkg] = module
        spec.loader.exec_module(module)
    tests = []
    for path in sorted(directory.glob("test_*.py")):
        module = importlib.import_module(f"{pkg}.{path.stem}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if (
                name.startswith("test")
                and fn.__module__ == module.__name__
                and "sim" in inspect.signature(fn).parameters
            ):
                tests.append((f"{path.stem}::{name}", fn))
    return tests
