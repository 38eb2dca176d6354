"""What this interpreter is: version, build, GIL, and the packages the models need.

``python -m servers --about`` prints it as JSON, with each model's availability, so that a load
generator running under another interpreter can ask the one its servers will run under. Standard
library only: it must answer under any Python the toolkit can run on, before anything is installed.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import sysconfig
from typing import Any

# Packages the models load, reported with their versions (absent ones as None).
PACKAGES = ("gevent", "greenlet", "uvloop", "backports.interpreters")


def gil_enabled() -> bool:
    """False only on a free-threaded build running with the GIL off (3.13t, 3.14t)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def describe() -> dict[str, Any]:
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
        # PGO (--enable-optimizations) and LTO change pure-Python speed by tens of percent.
        "optimized": "--enable-optimizations" in config_args or "--with-lto" in config_args,
        "abiflags": getattr(sys, "abiflags", ""),
        "config_args": config_args,
        "switch_interval_s": sys.getswitchinterval(),
        "packages": packages,
    }
