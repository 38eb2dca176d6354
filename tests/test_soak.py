"""The soak, small: every datagram of the overload accounted for, and set beside the kernel's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow  # every test here takes seconds: real processes


def test_a_short_soak_accounts_for_every_datagram(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "soak", "--models", "blocking", "--overload-s", "1",
         "--recover-s", "1", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = json.loads((tmp_path / "soak.json").read_text())["rows"]
    over = row["overload"]
    assert over["accounting_ok"] and abs(over["rate"] - 2 * row["capacity_rps"]) <= 1
    assert over["sent"] == over["received"] + over["lost"] + over["in_flight"]
    assert over["lost"] > 0  # twice the capacity: the kernel's buffer overflowed
    # Every datagram the server's socket dropped is one the generator counted as not answered.
    assert 0 < row["kernel"]["socket_drops"] <= over["lost"] + over["in_flight"]
    assert row["kernel"]["rcvbuf_errors"] >= row["kernel"]["socket_drops"]
    assert row["stayed_up"] and row["stopped_cleanly"]
    assert row["rss_bytes"]["peak"] > 0 and len(row["recovery_series"]) >= 1
    assert "blocking" in done.stdout and "socket drops" in done.stdout
