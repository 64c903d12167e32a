"""The drill's report is pure: recorded samples and counter readings in, phases and times
out. These tests build recordings by hand, on a made-up clock."""

from __future__ import annotations

from ninelives.drill.faults import Action, FaultMarks
from ninelives.drill.load import Sample
from ninelives.drill.observe import CounterReading
from ninelives.drill.report import percentile, phase_of, stopped_after, summarize
from ninelives.drill.scenario import Recording


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_a_request_that_overlaps_the_fault_belongs_to_during() -> None:
    started, ended = 10.0, 13.0
    assert phase_of(Sample(9.0, 9.5, "ok"), started, ended) == "before"
    assert phase_of(Sample(9.9, 10.2, "ok"), started, ended) == "during"  # in flight
    assert phase_of(Sample(12.9, 13.4, "ok"), started, ended) == "during"
    assert phase_of(Sample(13.0, 13.1, "ok"), started, ended) == "after"
    # A server that was never brought back: everything from the fault on is "during".
    assert phase_of(Sample(20.0, 20.1, "ok"), started, None) == "during"


def readings(*pairs: tuple[float, int]) -> list[CounterReading]:
    return [CounterReading(at, count) for at, count in pairs]


def test_stopped_after_is_the_last_rise_of_the_counter_in_the_fault() -> None:
    counter = readings(
        (9.8, 100), (9.9, 110), (10.0, 120), (10.1, 125), (10.2, 126), (10.3, 126), (12.0, 126),
        (13.5, 140),  # back after the fault: not counted
    )
    stopped, still = stopped_after(counter, started=10.0, ended=13.0)
    assert stopped is not None and abs(stopped - 0.2) < 1e-9
    assert still is False


def test_a_counter_still_rising_at_the_end_of_the_fault_never_stopped() -> None:
    counter = readings((9.8, 100), (9.9, 110), (10.0, 120), (11.0, 130), (12.95, 140))
    stopped, still = stopped_after(counter, started=10.0, ended=13.0)
    assert still is True
    assert stopped is not None


def test_without_readings_nothing_is_known() -> None:
    assert stopped_after([], 10.0, 13.0) == (None, False)


def test_summarize_counts_failures_by_kind_and_finds_the_first_answer_after_recovery() -> None:
    samples = [
        Sample(9.0, 9.001, "ok", "a1"),
        Sample(9.1, 9.102, "ok", "a2"),
        Sample(10.1, 10.2, "HTTP 502"),
        Sample(10.2, 10.3, "reset"),
        Sample(10.3, 10.31, "ok", "a1"),
        Sample(13.1, 13.2, "ok", "a1"),
        Sample(13.4, 13.45, "ok", "a2"),
    ]
    marks = FaultMarks(
        started=10.0, ended=13.0, actions=[Action(10.0, "SIGKILL a2"), Action(13.0, "restart")]
    )
    recording = Recording(
        server="a2", samples=samples, marks=marks,
        readings=readings((9.5, 1), (9.95, 2), (10.05, 3), (11.0, 3), (12.9, 3)),
        load_started=9.0, load_ended=14.0,
    )
    report = summarize(recording, "127.0.0.1:8080", "kill (3s)")
    assert [p.requests for p in report.phases] == [2, 3, 2]
    assert report.phase("during").failures == {"HTTP 502": 1, "reset": 1}
    assert report.failed == 2 and report.requests == 7
    assert report.phase("before").answered_by == {"a1": 1, "a2": 1}
    assert report.stopped_after is not None and abs(report.stopped_after - 0.05) < 1e-9
    assert report.back_after is not None and abs(report.back_after - 0.45) < 1e-9
    assert report.last_answer_after is None  # it answered nothing while it was dead
    assert report.actions == ((0.0, "SIGKILL a2"), (3.0, "restart"))
    data = report.to_json()
    assert data["failed"] == 2
    assert isinstance(data["phases"], dict) and data["phases"]["during"]["failed"] == 2
