"""Timer arithmetic on a driven clock, log levels, Megatron's report formats, and a 2-rank gloo run."""
import pytest

from megatron.core import timers as timers_module
from megatron.core.timers import Timers
from tests.harness import run_distributed


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(timers_module, "_clock", c)
    return c


def test_accumulates_and_resets(clock):
    t = Timers(2, "minmax")("fwd")
    clock.now = 1.0; t.start(); clock.now = 3.0; t.stop()
    clock.now = 10.0; t.start(); clock.now = 10.5; t.stop()
    assert t.elapsed(reset=False) == pytest.approx(2.5)
    assert t.elapsed() == pytest.approx(2.5)  # reset=True by default
    assert t.elapsed() == 0.0
    assert t.active_time() == pytest.approx(2.5)  # survives resets


def test_elapsed_of_a_running_timer_keeps_it_running(clock):
    t = Timers(2, "minmax")("fwd")
    t.start()
    clock.now = 4.0
    assert t.elapsed(reset=False) == pytest.approx(4.0)
    clock.now = 6.0
    assert t.elapsed(reset=True) == pytest.approx(6.0)
    clock.now = 7.5
    t.stop()
    assert t.elapsed() == pytest.approx(1.5)  # counted from the reset at 6.0


def test_start_stop_misuse(clock):
    t = Timers(2, "minmax")("fwd")
    with pytest.raises(RuntimeError, match="not started"):
        t.stop()
    t.start()
    with pytest.raises(RuntimeError, match="already been started"):
        t.start()


def test_log_levels(clock):
    timers = Timers(1, "minmax")
    hidden = timers("batch-generator", log_level=2)
    hidden.start(); hidden.stop()  # a no-op stand-in
    with pytest.raises(RuntimeError, match="--timing-log-level"):
        hidden.elapsed()
    shown = timers("optimizer", log_level=1)
    assert timers("optimizer") is shown
    with pytest.raises(ValueError, match="log level 1"):
        timers("optimizer", log_level=0)
    with pytest.raises(ValueError, match="--timing-log-option"):
        Timers(0, "median")


def _timed(clock, option, seconds=0.5):
    timers = Timers(2, option)
    t = timers("forward-backward")
    t.start(); clock.now += seconds; t.stop()
    timers("never-started")  # exists but has no time: left out of reports
    return timers


REPORT_LABEL = "forward-backward " + "." * (48 - len("forward-backward "))


@pytest.mark.parametrize(
    "option, expected",
    [
        ("minmax", f"(min, max) time across ranks (ms):\n    {REPORT_LABEL}: (250.00, 250.00)\n"),
        ("max", f"max time across ranks (ms):\n    {REPORT_LABEL}: 250.00\n"),
        ("all", "times across ranks (ms):\n  forward-backward:\n     rank  0: 250.00\n"),
    ],
)
def test_log_formats(clock, capsys, option, expected):
    timers = _timed(clock, option)
    timers.log(["forward-backward", "never-started"], normalizer=2.0)
    assert capsys.readouterr().out == expected
    timers.log(["forward-backward"])  # reset by the first log: nothing to report
    assert capsys.readouterr().out == ""


class ScalarRecorder:
    """The add_scalar side of a TensorBoard writer, kept in a list."""

    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))


def test_write_max_time_in_seconds(clock):
    timers = _timed(clock, "minmax", seconds=3.0)
    recorder = ScalarRecorder()
    timers.write(["forward-backward", "never-started"], recorder, iteration=7, normalizer=2.0)
    assert recorder.scalars == [("forward-backward-time", 1.5, 7)]
    timers.write(["forward-backward"], recorder, iteration=8)  # reset=False by default
    assert recorder.scalars[-1] == ("forward-backward-time", 3.0, 8)


def _two_rank_report(rank, world_size):
    clock = Clock()
    timers_module._clock = clock
    lines = {}
    for option in ("minmax", "max", "all"):
        timers = Timers(2, option)
        t = timers("step")
        t.start(); clock.now += 0.1 * (rank + 1); t.stop()
        if rank == 0:
            timers("only-rank-0").start(); clock.now += 0.3; timers("only-rank-0").stop()
        lines[option] = timers.get_all_timers_string(["step", "only-rank-0"], reset=False)
    return lines


def test_min_max_across_two_gloo_ranks():
    results = run_distributed(_two_rank_report, 2)
    label = "step " + "." * 43
    other = "only-rank-0 " + "." * 36
    for lines in results:  # every rank computes the same report
        assert lines["minmax"] == (
            f"(min, max) time across ranks (ms):\n    {label}: (100.00, 200.00)\n    {other}: (300.00, 300.00)"
        )
        assert lines["max"] == f"max time across ranks (ms):\n    {label}: 200.00\n    {other}: 300.00"
        assert lines["all"] == (
            "times across ranks (ms):\n  step:\n     rank  0: 100.00\n     rank  1: 200.00"
            "\n  only-rank-0:\n     rank  0: 300.00"
        )
