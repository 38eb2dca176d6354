"""The demo's live view and captions, rendered without a terminal."""

from __future__ import annotations

from rich.console import Console

from loadgen.experiments.demo import BAR_WIDTH, Scoreboard, caption
from servers import MODELS
from servers.work import parse

CALIBRATED = parse("cpu=20000it").told_as(parse("cpu=2ms"))  # cpu=2ms, done in iterations


def test_the_live_scoreboard_shows_each_model_its_bars_and_the_caption():
    """What the room sees while the demo runs in a terminal (rendered here without one)."""
    board = Scoreboard(["blocking", "processes", "gevent"], parse("cpu=2ms"), cores=2, clients=16)
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
    assert "all 64 wait at once" in caption(parse("io=5ms"), "gevent", 64)
    assert "about 100 replies/s at most" in caption(parse("io=10ms"), "blocking", 16)
    assert caption(parse("echo"), "threads", 16) == ""  # nothing particular to look at


def test_the_demo_judges_cpu_work_by_the_reports_rule():
    """Parallel: at least the larger of the fixed floor and 0.8 of the machine's capacity, so
    with no reading (one core) 1.0x is not called parallel; taking turns: about 1x."""
    from loadgen.experiments.demo import verdicts

    rounds = {"blocking": [{"rate": 500.0}] * 3, "processes": [{"rate": 500.0}] * 3,
              "threads": [{"rate": 505.0}] * 3}  # fmt: skip
    unread = "\n".join(verdicts(CALIBRATED, rounds, None, "blocking"))
    assert "processes       1.00x blocking" in unread and "short of parallel" in unread
    assert "threads         1.01x blocking (rounds 1.01-1.01): took turns" in unread
    faster = {**rounds, "processes": [{"rate": 900.0}] * 3}
    judged = "\n".join(verdicts(CALIBRATED, faster, 2.0, "blocking"))
    assert "the machine delivered 2.00 cores' worth" in judged
    assert (
        "1.80x blocking (rounds 1.80-1.80), 0.90 of what the machine delivered: in parallel"
        in judged
    )
    assert verdicts(parse("io=5ms"), rounds, 2.0, "blocking") == []  # no CPU work, no verdict
    without_gil = {**rounds, "threads": [{"rate": 900.0}] * 3}  # as a free-threaded server said
    judged = "\n".join(verdicts(CALIBRATED, without_gil, 2.0, "blocking", {"threads": False}))
    assert "threads         1.80x blocking (rounds 1.80-1.80), 0.90 of what" in judged
    judged = "\n".join(verdicts(CALIBRATED, without_gil, 2.0, "blocking", {"threads": True}))
    assert "faster than taking turns allows" in judged


def test_the_last_picture_keeps_every_models_bars_within_a_projectors_width():
    """100 columns: every model's row, a bar per workload, nothing cut or wrapped."""
    from rich.console import Console

    from loadgen.experiments.demo import side_by_side

    specs = ["cpu=2ms", "io=5ms"]
    results = {spec: {model: {"rate": 1000.0 * (i + 1), "low": 12_345.0, "high": 12_999.0,
                              "cores": 1.95} for i, model in enumerate(MODELS)}
               for spec in specs}  # fmt: skip
    console = Console(width=100, record=True, force_terminal=False)
    console.print(side_by_side(list(MODELS), specs, results))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 100
    for model in MODELS:
        [row] = [line for line in lines if line.startswith(f"│ {model} ")]
        assert row.count("█") >= 2 and "12,345-12,999; 1.95" in row
