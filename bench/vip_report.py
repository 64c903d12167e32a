"""What bench/vip_bench.py measured, per trial and per system, and how it prints it: the
tables (Markdown) and issue 4's musts and goal, each said plainly, met or not."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

BASELINE = "keepalived"
NINELIVES = ("ninelives-local", "ninelives-etcd")
RESTORE_TIMEOUT = 15.0  # seconds after the kill before a trial counts as not restored


@dataclass(frozen=True, slots=True)
class Trial:
    """One node loss: the holder's processes SIGKILLed, its link set down."""

    system: str
    number: int
    holder: str = ""
    restored_s: float | None = None  # from the kill to the client's first answer
    longest_gap_s: float | None = None  # between two answers, the kill in between
    failed_attempts: int = 0  # the client's attempts that got no answer meanwhile
    kill_s: float = 0.0  # how long killing the node and setting its link down took
    samples: int = 0  # looks at both interfaces
    both: int = 0  # of them, with the VIP on both nodes' links that are up
    error: str = ""


@dataclass(frozen=True, slots=True)
class Cut:
    """The two nodes cut off from each other (everyone else still reaches both), healed."""

    system: str
    number: int
    holder: str = ""
    kept: bool = False  # the holder held the VIP all through the cut
    samples: int = 0
    both: int = 0
    both_for_s: float = 0.0  # from the first to the last sample with two holders
    one_holder_after_s: float | None = None  # from healing to a single holder
    error: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    system: str
    setting: str
    trials: list[Trial]
    cuts: list[Cut]

    @property
    def restored(self) -> list[float]:
        return [t.restored_s for t in self.trials if t.restored_s is not None]

    @property
    def gaps(self) -> list[float]:
        return [t.longest_gap_s for t in self.trials if t.longest_gap_s is not None]

    @property
    def lost(self) -> int:
        """Trials in which the client was not answered again (or that did not run)."""
        return sum(1 for t in self.trials if t.restored_s is None)

    @property
    def both(self) -> int:
        return sum(t.both for t in self.trials) + sum(c.both for c in self.cuts)

    @property
    def samples(self) -> int:
        return sum(t.samples for t in self.trials) + sum(c.samples for c in self.cuts)

    def median(self) -> float | None:
        return statistics.median(self.restored) if self.restored else None

    def worst(self) -> float | None:
        return None if self.lost or not self.restored else max(self.restored)


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def _twice(both: int, samples: int) -> str:
    return f"{both:,} of {samples:,} samples"


def render_losses(summaries: list[Summary]) -> str:
    baseline = next((s.median() for s in summaries if s.system == BASELINE), None)
    out = [
        "| system | failover | trials | kill → first answer: median | worst | longest gap "
        "between answers: median | worst | two VIP holders | median ÷ keepalived default |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        median = s.median()
        ratio = "—" if baseline is None or median is None else f"{median / baseline:.2f}"
        lost = f" ({s.lost} not answered within {RESTORE_TIMEOUT:g} s)" if s.lost else ""
        worst = seconds(s.worst()) if not s.lost else f"> {RESTORE_TIMEOUT:g} s"
        gaps = s.gaps
        out.append(
            f"| {s.system} | {s.setting} | {len(s.trials)}{lost} | {seconds(median)} | {worst} "
            f"| {seconds(statistics.median(gaps) if gaps else None)} | "
            f"{seconds(max(gaps) if gaps else None)} | "
            f"{_twice(sum(t.both for t in s.trials), sum(t.samples for t in s.trials))} "
            f"| {ratio} |"
        )
    return "\n".join(out)


def render_cuts(summaries: list[Summary], cut_for: float) -> str:
    out = [
        f"| system | cuts of {cut_for:g} s | holder kept the VIP | two VIP holders | "
        "longest time with two | one holder again after healing (worst) |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        if not s.cuts:
            continue
        kept = sum(1 for c in s.cuts if c.kept)
        after = [c.one_holder_after_s for c in s.cuts if c.one_holder_after_s is not None]
        errors = sum(1 for c in s.cuts if c.error)
        out.append(
            f"| {s.system} | {len(s.cuts)}{f' ({errors} failed)' if errors else ''} | "
            f"{kept} of {len(s.cuts)} | "
            f"{_twice(sum(c.both for c in s.cuts), sum(c.samples for c in s.cuts))} | "
            f"{seconds(max(c.both_for_s for c in s.cuts))} | "
            f"{seconds(max(after) if after else None)} |"
        )
    return "\n".join(out)


def verdicts(summaries: list[Summary], must_within: dict[str, float]) -> list[str]:
    """Issue 4's musts and goal, each said plainly, met or not."""
    by_name = {s.system: s for s in summaries}
    lines = []
    for name, limit in must_within.items():
        s = by_name.get(name)
        if s is None:
            continue
        worst = s.worst()
        met = worst is not None and worst <= limit
        lines.append(f"{'must met' if met else 'MUST MISSED'}: {name} answers again within "
                     f"{limit:g} s of the kill on every trial (worst {seconds(worst)}, "
                     f"{s.lost} of {len(s.trials)} never answered)")
        lines.append(f"{'must met' if s.both == 0 else 'MUST MISSED'}: {name} never has two "
                     f"VIP holders ({_twice(s.both, s.samples)}, losses and cuts)")
    baseline = by_name.get(BASELINE)
    if baseline is None or not baseline.restored:
        return lines
    best = min(baseline.restored)
    for name in NINELIVES:
        s = by_name.get(name)
        if s is None:
            continue
        worst = s.worst()
        met = worst is not None and worst < best
        lines.append(f"{'goal met' if met else 'goal missed'}: every {name} trial faster than "
                     f"every keepalived default trial (worst {seconds(worst)} against "
                     f"keepalived's best {seconds(best)})")
        if baseline.both:
            met = s.both == 0
            lines.append(f"{'goal met' if met else 'goal missed'}: {name} has no two VIP "
                         f"holders where keepalived has ({_twice(s.both, s.samples)} against "
                         f"{_twice(baseline.both, baseline.samples)})")
    return lines
