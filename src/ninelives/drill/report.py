"""What the clients saw in a drill: pure functions from a :class:`Recording` to a report,
and the report as a rich table or JSON.

Phases: a request is *before* when it ended before the fault began, *after* when it was
sent once the server was whole again, and *during* otherwise (it overlapped the fault).
Latency percentiles are nearest-rank over every request of a phase, failed ones included
(a timeout is as slow as the client let it be).

Three times, all in seconds:

- *stopped after*: from the fault to the proxy's last try at the faulty server while it
  was faulty (from the proxy's counters, within one poll). Missing when it was still
  being sent requests at the end of the fault: it never stopped.
- *last answer*: from the fault to the last answer the faulty server gave (X-Backend).
- *back after*: from the moment the server was whole again to its first answer to a
  request sent after that moment.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table

from ninelives.drill.load import Sample
from ninelives.drill.observe import CounterReading
from ninelives.drill.scenario import Recording

PHASES = ("before", "during", "after")
# A server counts as no longer receiving requests when its counter stood still this long
# before the fault ended, or five of its usual gaps between requests if those are longer.
QUIET_MIN = 0.25
QUIET_GAPS = 5


@dataclass(frozen=True, slots=True)
class PhaseReport:
    name: str
    seconds: float
    requests: int
    failures: dict[str, int]
    answered_by: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    resent: int = 0  # answered after a resend on a fresh connection (not failures)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


@dataclass(frozen=True, slots=True)
class DrillReport:
    target: str  # the listener the load went to
    server: str | None  # the faulty server (None: a fault of the proxy itself)
    fault: str
    phases: tuple[PhaseReport, ...]
    stopped_after: float | None
    still_receiving: bool  # it was still sent requests when the fault ended
    last_answer_after: float | None
    back_after: float | None
    actions: tuple[tuple[float, str], ...]  # seconds since the fault began, what was done
    notes: tuple[str, ...]

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.phases)

    @property
    def failed(self) -> int:
        return sum(p.failed for p in self.phases)

    def phase(self, name: str) -> PhaseReport:
        return next(p for p in self.phases if p.name == name)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["requests"] = self.requests
        data["failed"] = self.failed
        data["phases"] = {p.name: asdict(p) | {"failed": p.failed} for p in self.phases}
        data["actions"] = [{"at": at, "what": what} for at, what in self.actions]
        return data


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` 0.99 for p99) of values sorted ascending."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def phase_of(sample: Sample, started: float, ended: float | None) -> str:
    if sample.ended < started:
        return "before"
    if ended is not None and sample.sent >= ended:
        return "after"
    return "during"


def _phase_report(name: str, seconds: float, samples: list[Sample]) -> PhaseReport:
    latencies = sorted(s.latency * 1000 for s in samples)
    return PhaseReport(
        name=name,
        seconds=round(seconds, 3),
        requests=len(samples),
        failures=dict(Counter(s.kind for s in samples if not s.ok)),
        answered_by=dict(sorted(Counter(s.backend for s in samples if s.ok).items())),
        p50_ms=_round(percentile(latencies, 0.50), 3),
        p99_ms=_round(percentile(latencies, 0.99), 3),
        max_ms=_round(latencies[-1] if latencies else None, 3),
        resent=sum(1 for s in samples if s.resent),
    )


def stopped_after(
    readings: list[CounterReading], started: float, ended: float
) -> tuple[float | None, bool]:
    """(seconds from ``started`` to the last increase of the counter before ``ended``,
    whether it was still increasing at ``ended``); (None, False) without readings."""
    before = [r for r in readings if r.at <= started]
    window = [r for r in readings if started < r.at <= ended]
    if not before or not window:
        return None, False
    last_count = before[-1].count
    last_increase = started
    for reading in window:
        if reading.count > last_count:
            last_increase = reading.at
            last_count = reading.count
    # How often the counter rose before the fault sets what "standing still" means.
    rises = sum(1 for a, b in itertools.pairwise(before) if b.count > a.count)
    span = before[-1].at - before[0].at
    usual_gap = span / rises if rises else span
    quiet = max(QUIET_MIN, QUIET_GAPS * usual_gap)
    return last_increase - started, last_increase > ended - quiet


def summarize(recording: Recording, target: str, fault: str) -> DrillReport:
    marks = recording.marks
    started, ended = marks.started, marks.ended
    by_phase: dict[str, list[Sample]] = {name: [] for name in PHASES}
    for sample in recording.samples:
        by_phase[phase_of(sample, started, ended)].append(sample)
    fault_end = ended if ended is not None else recording.load_ended
    seconds = {
        "before": started - recording.load_started,
        "during": fault_end - started,
        "after": recording.load_ended - fault_end if ended is not None else 0.0,
    }
    phases = tuple(_phase_report(name, seconds[name], by_phase[name]) for name in PHASES)
    server = recording.server
    stopped: float | None = None
    still = False
    last_answer: float | None = None
    back: float | None = None
    if server is not None:
        stopped, still = stopped_after(recording.readings, started, fault_end)
        answers = [
            s.ended for s in recording.samples
            if s.backend == server and started < s.ended <= fault_end
        ]
        last_answer = max(answers) - started if answers else None
        if ended is not None:
            back_at = [
                s.ended for s in recording.samples if s.backend == server and s.sent >= ended
            ]
            back = min(back_at) - ended if back_at else None
    notes = list(marks.notes)
    if recording.counter_errors:
        notes.append(f"{recording.counter_errors} reads of the proxy's counters failed")
    return DrillReport(
        target=target,
        server=server,
        fault=fault,
        phases=phases,
        stopped_after=None if still else _round(stopped, 4),
        still_receiving=still,
        last_answer_after=_round(last_answer, 4),
        back_after=_round(back, 4),
        actions=tuple((round(a.at - started, 4), a.what) for a in marks.actions),
        notes=tuple(notes),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "0"


def render(report: DrillReport, console: Console) -> None:
    title = f"drill: {report.fault}"
    if report.server is not None:
        title += f" of {report.server}"
    table = Table(title=f"{title}, load on {report.target}")
    for column in (
        "phase", "seconds", "requests", "failed", "p50 ms", "p99 ms", "max ms", "answered by"
    ):
        table.add_column(column, justify="left" if column in ("phase", "answered by") else "right")
    for p in report.phases:
        table.add_row(
            p.name, f"{p.seconds:.2f}", str(p.requests),
            _counts(p.failures) if p.failures else "0",
            _ms(p.p50_ms), _ms(p.p99_ms), _ms(p.max_ms), _counts(p.answered_by),
        )
    console.print(table)
    for at, what in report.actions:
        console.print(f"  {at:+8.3f} s  {what}")
    if report.server is not None:
        stopped = (
            "still receiving requests when the fault ended" if report.still_receiving
            else _seconds(report.stopped_after) if report.stopped_after is not None
            else "unknown (no counters from the proxy)"
        )
        console.print(f"{report.server} stopped receiving requests after: {stopped}")
        console.print(f"last answer from {report.server} after the fault began: "
                      f"{_seconds(report.last_answer_after)}")
        back = _seconds(report.back_after) if report.back_after is not None else "not seen"
        console.print(f"{report.server} answering again after it was whole: {back}")
    ok = report.requests - report.failed
    share = 100.0 * ok / report.requests if report.requests else 0.0
    console.print(
        f"{ok} of {report.requests} requests answered ({share:.3f}%), {report.failed} failed"
    )
    resent = sum(p.resent for p in report.phases)
    if resent:
        console.print(
            f"{resent} requests went again on a fresh connection: the proxy had closed the "
            "idle keep-alive connection they were sent on (clients do that; not failures)"
        )
    for note in report.notes:
        console.print(f"note: {note}")
