"""What this interpreter is: version, build, GIL, and the packages the models need.

``python -m servers --about`` prints it as JSON, with each model's availability, so that a load
generator running under another interpreter can ask the one its servers will run under. Standard
library only: it must answer under any Python the toolkit can run on, before anything is installed.
Every server imports ``gil_enabled`` (its ready and stopped events say it, from inside), each
sub-interpreter too, so the rest is imported when ``describe`` runs, not before.
"""

from __future__ import annotations

import sys
from typing import Any

# Packages the models load, reported with their versions (absent ones as None).
PACKAGES = ("gevent", "greenlet", "uvloop", "backports.interpreters", "interpreters-pep-734")


def gil_enabled() -> bool:
    """False only on a free-threaded build running with the GIL off (3.13t, 3.14t)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def optimized(config_args: str) -> bool | None:
    """PGO (--enable-optimizations) or LTO, which change pure-Python speed by tens of percent:
    True where the configure flags say so, None (unknown) elsewhere: distributions (Debian,
    python-build-standalone) optimise by their own build rules, which those flags do not show.
    The measured speed (``--speed``) is the figure to compare."""
    return True if "--enable-optimizations" in config_args or "--with-lto" in config_args else None


def describe(speed: bool = False) -> dict[str, Any]:
    """This interpreter's facts; ``speed``: also the calibration loop's iterations per ms,
    measured here (about a second), what "optimised" means in practice."""
    import importlib.metadata
    import platform
    import sysconfig

    from servers.work import iterations_per_second

    config_args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {
        "executable": sys.executable,
        "implementation": platform.python_implementation(),
        "version": platform.python_version(),
        "version_info": list(sys.version_info[:3]),
        "gil_enabled": gil_enabled(),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "debug_build": hasattr(sys, "gettotalrefcount"),
        "optimized": optimized(config_args),
        "abiflags": getattr(sys, "abiflags", ""),
        "config_args": config_args,
        "switch_interval_s": sys.getswitchinterval(),
        "packages": packages,
        "iterations_per_ms": round(iterations_per_second() / 1000, 1) if speed else None,
    }
