"""Service level objectives: error budgets and multi-window burn-rate alerts. Pure.

An SLO says what share of something must be good over a rolling window: ``99.95%`` of the
requests a listener answers over 30 days (``kind: requests``: a request is bad when it got
no response or a 5xx; a 4xx is the client's mistake), or of the time a pool is up
(``kind: time``: down seconds are bad, planned maintenance is neither).

- The error budget is what the target allows to be bad over the window: ``(1 - target)``
  of the valid requests (or observed seconds). Spent is what was bad; left is the rest
  (negative once overspent), also as a share of the total.
- The burn rate over a window is the bad share divided by ``1 - target``: at 1x the
  budget lasts exactly the SLO window, at 14.4x two percent of a 30-day budget goes in an
  hour.
- Alerts follow the SRE workbook (chapter 5, "Alerting on SLOs", multiwindow, multi-burn-
  rate): an alert fires while the burn rate is above its factor over both a long window
  and a short one (the short one makes it resolve soon after the burning stops):

  ========  =========  ==========  ======  ================================
  severity  long       short       factor  budget spent when it fires
  ========  =========  ==========  ======  ================================
  page      1 h        5 min       14.4    2 % in an hour
  page      6 h        30 min      6       5 % in six hours
  ticket    3 d        6 h         1       10 % in three days
  ========  =========  ==========  ======  ================================

  Those durations are for a 30-day SLO; for another window they scale with it (a 7-day
  SLO pages over 14 min and 70 s) and the factors stay, so an alert always means the same
  share of the budget was spent. A short window is never under :data:`MIN_SHORT` (the
  request counts are sampled every 2 s and kept in 10 s buckets).
- A request-based pair is not evaluated when its long window saw fewer than
  ``min_requests`` requests: three failures out of five in a quiet hour do not page.
- Inside a planned maintenance window of the SLO's listener or pool, nothing fires.

Every result carries the reason it was decided, shown by ``ninelives slo``, sent with
the webhooks and asserted in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ninelives.units import format_duration

HOUR = 3600.0
DAY = 86_400.0
BASE_WINDOW = 30 * DAY  # the workbook's pairs are for a 30-day SLO
MIN_SHORT = 60.0
DEFAULT_MIN_REQUESTS = 100

Severity = Literal["page", "ticket"]
SliKind = Literal["requests", "time"]


@dataclass(frozen=True, slots=True)
class BurnPair:
    """One alert of the workbook: long and short windows for a 30-day SLO, and a factor."""

    severity: Severity
    long_s: float
    short_s: float
    factor: float


PAIRS: tuple[BurnPair, ...] = (
    BurnPair("page", 1 * HOUR, 5 * 60.0, 14.4),
    BurnPair("page", 6 * HOUR, 30 * 60.0, 6.0),
    BurnPair("ticket", 3 * DAY, 6 * HOUR, 1.0),
)


@dataclass(frozen=True, slots=True)
class Objective:
    """One configured SLO: ``entity`` is ``("listener", NAME)`` or ``("pool", NAME)``."""

    name: str
    entity: tuple[str, str]
    target: float  # 0.9995
    window_s: float
    kind: SliKind = "requests"
    min_requests: int = DEFAULT_MIN_REQUESTS

    def pairs(self) -> tuple[BurnPair, ...]:
        """The workbook's pairs scaled to this SLO's window."""
        scale = self.window_s / BASE_WINDOW
        return tuple(
            BurnPair(p.severity, max(p.long_s * scale, MIN_SHORT),
                     max(p.short_s * scale, MIN_SHORT), p.factor)
            for p in PAIRS
        )

    def windows(self) -> tuple[float, ...]:
        """Every window a measurement must cover: the SLO's, then each pair's two."""
        out = [self.window_s]
        for pair in self.pairs():
            out += [pair.long_s, pair.short_s]
        return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Sli:
    """Good and valid over one window: requests, or seconds up and seconds observed."""

    good: float
    valid: float

    @property
    def bad(self) -> float:
        return max(0.0, self.valid - self.good)

    @property
    def ratio(self) -> float | None:
        return self.good / self.valid if self.valid > 0 else None


@dataclass(frozen=True, slots=True)
class Burn:
    """One pair evaluated: the burn rates over its windows and whether it fires."""

    severity: Severity
    long_s: float
    short_s: float
    factor: float
    long_rate: float | None  # None: nothing valid in the window
    short_rate: float | None
    firing: bool
    reason: str


@dataclass(frozen=True, slots=True)
class SloStatus:
    """An SLO at one instant: the SLI over its window, the budget, every pair, and the
    alert (``firing`` when a pair of that severity fires) with its reason."""

    objective: Objective
    at: float
    sli: Sli
    budget_total: float  # bad requests (or seconds) the window allows
    budget_spent: float
    burns: tuple[Burn, ...]
    alerts: tuple[tuple[Severity, bool, str], ...]  # (severity, firing, reason)

    @property
    def budget_left(self) -> float:
        return self.budget_total - self.budget_spent

    @property
    def budget_left_ratio(self) -> float | None:
        """The share of the budget left (1 untouched, 0 spent, below 0 overspent); None when
        nothing valid was seen (a budget of nothing)."""
        if self.budget_total > 0:
            return 1.0 - self.budget_spent / self.budget_total
        return None if self.sli.valid <= 0 else (1.0 if self.budget_spent <= 0 else 0.0)

    @property
    def met(self) -> bool | None:
        ratio = self.sli.ratio
        return None if ratio is None else ratio >= self.objective.target


def burn_rate(sli: Sli, target: float) -> float | None:
    """The bad share over ``1 - target``; None when nothing valid was seen."""
    ratio = sli.ratio
    if ratio is None:
        return None
    allowed = 1.0 - target
    return (1.0 - ratio) / allowed if allowed > 0 else (0.0 if ratio >= 1 else float("inf"))


def evaluate(
    objective: Objective, measured: Mapping[float, Sli], at: float, in_maintenance: bool = False
) -> SloStatus:
    """The SLO's state from ``measured`` (the SLI over each of :meth:`Objective.windows`,
    ending ``at``); windows missing from it count as nothing seen."""
    empty = Sli(0.0, 0.0)
    sli = measured.get(objective.window_s, empty)
    allowed = 1.0 - objective.target
    burns = tuple(
        _burn(objective, pair, measured.get(pair.long_s, empty),
              measured.get(pair.short_s, empty), in_maintenance)
        for pair in objective.pairs()
    )
    alerts: list[tuple[Severity, bool, str]] = []
    for severity in ("page", "ticket"):
        mine = [b for b in burns if b.severity == severity]
        firing = [b for b in mine if b.firing]
        if firing:
            alerts.append((severity, True, firing[0].reason))
        else:
            alerts.append((severity, False, "; ".join(b.reason for b in mine)))
    return SloStatus(
        objective=objective, at=at, sli=sli, budget_total=allowed * sli.valid,
        budget_spent=sli.bad, burns=burns, alerts=tuple(alerts),
    )


def _burn(
    objective: Objective, pair: BurnPair, long: Sli, short: Sli, in_maintenance: bool
) -> Burn:
    long_rate = burn_rate(long, objective.target)
    short_rate = burn_rate(short, objective.target)
    windows = f"{format_duration(pair.long_s)}/{format_duration(pair.short_s)}"

    def shown(rate: float | None) -> str:
        return "no data" if rate is None else f"{rate:.2f}x"

    rates = f"burn rate {shown(long_rate)} over {format_duration(pair.long_s)}, " \
            f"{shown(short_rate)} over {format_duration(pair.short_s)}"
    firing = False
    if objective.kind == "requests" and long.valid < objective.min_requests:
        reason = (f"{windows}: quiet: {int(long.valid)} requests over "
                  f"{format_duration(pair.long_s)}, fewer than {objective.min_requests}")
    elif long_rate is None or short_rate is None:
        reason = f"{windows}: no data"
    elif long_rate > pair.factor and short_rate > pair.factor:
        if in_maintenance:
            reason = f"{windows}: {rates} above {pair.factor:g}x, but in planned maintenance"
        else:
            firing = True
            reason = f"{windows}: {rates}, both above {pair.factor:g}x"
    else:
        reason = f"{windows}: {rates}, not both above {pair.factor:g}x"
    return Burn(pair.severity, pair.long_s, pair.short_s, pair.factor, long_rate,
                short_rate, firing, reason)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert that began or stopped firing: what a webhook is sent."""

    slo: str
    severity: Severity
    firing: bool
    at: float
    reason: str


AlertKey = tuple[str, Severity]


def alert_changes(
    firing_before: Mapping[AlertKey, bool], statuses: Sequence[SloStatus], at: float
) -> tuple[dict[AlertKey, bool], list[AlertChange]]:
    """The alerts firing now, and those that changed since ``firing_before``: an alert not
    known before and not firing is no change (a node starting does not resolve anything);
    one that fired for an SLO no longer configured resolves at ``at``."""
    now: dict[AlertKey, bool] = {}
    changes: list[AlertChange] = []
    for status in statuses:
        for severity, firing, reason in status.alerts:
            key = (status.objective.name, severity)
            now[key] = firing
            if firing != firing_before.get(key, False):
                changes.append(AlertChange(key[0], severity, firing, status.at, reason))
    for (name, severity), firing in firing_before.items():
        if firing and (name, severity) not in now:
            changes.append(AlertChange(name, severity, False, at,
                                       "the SLO is no longer configured"))
    return now, changes
