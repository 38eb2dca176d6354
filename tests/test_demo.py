"""The demo's live view and captions, rendered without a terminal."""

from __future__ import annotations

from rich.console import Console

from loadgen.experiments.demo import BAR_WIDTH, Scoreboard, caption


def test_the_live_scoreboard_shows_each_model_its_bars_and_the_caption():
    """What the room sees while the demo runs in a terminal (rendered here without one)."""
    board = Scoreboard(["blocking", "processes", "gevent"], "cpu=2ms", cores=2, clients=16)
    board.rows = {"blocking": {"rate": 500.0, "cores": 1.0},
                  "processes": {"rate": 1000.0, "cores": 2.0}}  # fmt: skip
    board.current = "processes"
    console = Console(record=True, width=120, color_system=None)
    console.print(board.table())
    text = console.export_text()
    assert "▶ processes" in text and "a GIL each: watch the cores" in text
    assert "1,000" in text and "█" * BAR_WIDTH in text  # the fastest fills its bar
    assert "█" * (BAR_WIDTH // 2) + "·" * (BAR_WIDTH // 2) in text  # half the rate, half a bar
    assert "gevent" in text  # not run yet: listed, empty


def test_captions_follow_the_options():
    assert "all 64 wait at once" in caption("io=5ms", "gevent", 64)
    assert "about 100 replies/s at most" in caption("io=10ms", "blocking", 16)
    assert caption("echo", "threads", 16) == ""  # nothing particular to look at
