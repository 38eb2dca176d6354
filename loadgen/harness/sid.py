"""CPython 3.14 and 3.15 where the machine has neither: Debian sid's, in a chroot made once.

Debian's sid carries python3.14 and python3.15, built for a newer C library than bookworm's or
trixie's, so they run inside a chroot of sid: ``debootstrap --variant=minbase`` (about 25 s),
the two interpreters (about 10 s), then a venv per version holding the models' packages (a few
seconds: wheels). It is made once, in the cache outside the project (``pythons.CACHE``), and a
half-made one is never used: it is built under another name and renamed when whole.

Each version gets a wrapper, ``CACHE/bin/python3.14-sid``, that works as ``--python``: it enters
a mount namespace of its own (``unshare --mount``), mounts /proc, /dev, /tmp and the current
folder into the chroot at the same paths, and runs the venv's python there. The mounts belong to
that namespace and vanish with its last process, however it ends: nothing is left mounted. The
network, the process IDs and the signals are the host's, so a server in it listens on the
host's loopback and is stopped like any other.

It needs root, Debian's apt-get, unshare and the package registries: ``why_not()`` names what
is missing, and the caller skips these versions with that reason.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

VERSIONS = ("3.14", "3.15")
MIRROR = "http://deb.debian.org/debian"
# sid's Release file on a mirror that is not refreshed daily is older than apt accepts.
APT = "apt-get -qq -o Acquire::Check-Valid-Until=false"
STEP_TIMEOUT_S = 600
WRAPPER = """#!/bin/sh
# CPython {version} from Debian sid, in the chroot {root}: usable as --python.
# Its mounts live in a mount namespace of its own and end with it: nothing is left mounted.
exec unshare --mount --propagation private /bin/sh -c '
root=$1; here=$2; shift 2
mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" &&
mount --rbind /tmp "$root/tmp" && mkdir -p "$root$here" && mount --bind "$here" "$root$here" ||
{{ echo "cannot mount into $root (needs root)" >&2; exit 126; }}
exec chroot "$root" /bin/sh -c '\\''cd "$0" && exec {python} "$@"'\\'' "$here" "$@"
' sh {root} "$PWD" "$@"
"""


class SidError(Exception):
    """A step of making the chroot failed: one line for the user."""


def why_not() -> str | None:
    """Why the chroot cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "the Debian sid chroot needs root"
    for tool in ("apt-get", "unshare", "chroot"):
        if shutil.which(tool) is None:
            return f"the Debian sid chroot needs {tool} (a Debian machine)"
    return None


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org where none is named)."""
    for source in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            found = mirror_in(source.read_text(encoding="utf-8"))
        except OSError:
            continue
        if found:
            return found
    return MIRROR


def mirror_in(sources: str) -> str | None:
    """The first Debian archive an apt sources file names, one-line or deb822 style."""
    line = re.compile(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s*)?)(\S+/debian)/?(?:\s|$)", re.M)
    found = line.search(sources)
    return found.group(1) if found else None


def python_in(version: str) -> str:
    """The venv's python inside the chroot."""
    return f"/opt/venvs/{version}/bin/python"


def provide(
    cache: Path, versions: list[str], packages: list[str], say: Callable[[str], None]
) -> dict[str, Path]:
    """The wrappers of ``versions``, the chroot made first if it is not whole yet; raises
    SidError naming the step that failed."""
    root = cache / "sid"
    if not (root / ".whole").exists():
        _make(root, versions, packages, say)
    made = {}
    for version in versions:
        if not os.path.lexists(root / python_in(version).lstrip("/")):
            _run_inside(root, _venv_commands(version, packages), f"the venv of {version}", say)
        wrapper = cache / "bin" / f"python{version}-sid"
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(WRAPPER.format(version=version, root=root, python=python_in(version)))
        wrapper.chmod(0o755)
        made[version] = wrapper
    return made


def _make(root: Path, versions: list[str], packages: list[str], say: Callable[[str], None]) -> None:
    building = root.with_name("sid.building")
    shutil.rmtree(building, ignore_errors=True)
    if shutil.which("debootstrap") is None:
        say("installing debootstrap")
        _run(f"{APT} update && DEBIAN_FRONTEND=noninteractive {APT} install -y debootstrap",
             "installing debootstrap")  # fmt: skip
    say(f"making a Debian sid chroot in {root} (once; about a minute)")
    building.parent.mkdir(parents=True, exist_ok=True)
    _run(f"debootstrap --variant=minbase sid {building} {mirror()}", "debootstrap")
    for name in ("etc/resolv.conf", "etc/ssl/certs/ca-certificates.crt"):  # DNS, TLS as here
        if Path("/", name).exists():
            (building / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path("/", name), building / name)
    wanted = " ".join(f"python{v} python{v}-venv" for v in versions)
    install = f"{APT} update && DEBIAN_FRONTEND=noninteractive {APT} install -y {wanted}"
    _run_inside(building, install, "installing the interpreters", say)
    for name in ("etc/ssl/certs/ca-certificates.crt",):  # the interpreters' packages rewrote it
        if Path("/", name).exists():
            shutil.copyfile(Path("/", name), building / name)
    for version in versions:
        _run_inside(building, _venv_commands(version, packages), f"the venv of {version}", say)
    (building / ".whole").touch()
    shutil.rmtree(root, ignore_errors=True)
    building.rename(root)


def _venv_commands(version: str, packages: list[str]) -> str:
    venv = str(Path(python_in(version)).parent.parent)
    wanted = " ".join(shlex.quote(package) for package in packages)
    return f"python{version} -m venv {venv} && {venv}/bin/pip install -q {wanted}"


def _run_inside(root: Path, command: str, what: str, say: Callable[[str], None]) -> None:
    """``command`` in the chroot, in a mount namespace of its own (its mounts end with it)."""
    say(f"{what} (in the chroot)")
    script = (f'mount -t proc proc "{root}/proc" && mount --rbind /dev "{root}/dev" && '
              f'exec chroot "{root}" /bin/sh -c "$0"')  # fmt: skip
    _run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, command],
         what)  # fmt: skip


def _run(command: str | list[str], what: str) -> None:
    try:
        done = subprocess.run(command, shell=isinstance(command, str), text=True,
                              capture_output=True, timeout=STEP_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise SidError(f"{what}: no end after {STEP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no message").splitlines()[-1]
        raise SidError(f"{what} failed: {last}")
