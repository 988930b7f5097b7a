"""Build of the compiled virtual-chip engine (metadata lives in pyproject.toml)."""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = [] if sys.platform == "darwin" or os.environ.get("CYSIM_NO_OPENMP") else ["-fopenmp"]
extensions = [
    Extension(
        "cysim._engine",
        ["cysim/_engine.pyx"],
        language="c++",
        extra_compile_args=["-O3", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno", *openmp],
        extra_link_args=openmp,
    )
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
