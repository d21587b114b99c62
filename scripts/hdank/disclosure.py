"""Statistical disclosure control of the report (protocol section 4.7).

Pure functions, no I/O.  With disclosure control on (config ``report.disclosure_control``):

* a count from 1 to ``small_count_max`` is shown as ``"<=N"`` (N = ``small_count_max``);
* any other count is rounded to the nearest multiple of ``rounding_base`` (0 stays 0);
* at-risk counts use OpenSAFELY's midpoint-6 rounding (0 stays 0, else ceil(n/6)*6 - 3), so
  1-6 show as 3, 7-12 as 9, ...;
* percentages are computed from the rounded counts, and a suppressed count has no percentage;
* Kaplan-Meier curves are recomputed from day-binned, midpoint-6 rounded cumulative counts of
  events and censorings (the "constant" method of OpenSAFELY's kaplan-meier-function), so that
  no step of the curve belongs to fewer than six patients and no individual time is drawn.

Every count the report shows is marked in the HTML with ``data-count="n"`` (rounded count) or
``data-count="mid6"`` (midpoint-6 count), or ``data-count="exact"`` when control is off;
:func:`unsuppressed_counts` reads those marks back and
lists any value that disclosure control should not have let through.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
import pandas as pd

MIDPOINT_BASE = 6
_Z975 = 1.959963984540054


def _as_int(n) -> int:
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        raise ValueError("a count is missing")
    value = float(n)
    if value < 0 or value != math.floor(value):
        raise ValueError(f"a count must be a non-negative integer, got {n!r}")
    return int(value)


def suppressed_label(small_count_max: int) -> str:
    return f"<={small_count_max}"


def round_count(n, small_count_max: int = 7, rounding_base: int = 5) -> int | str:
    """Disclosure-controlled count: 0 -> 0, 1..max -> "<=max", else nearest multiple of base.

    Halves round up (only possible for an even base).  A positive count never rounds to 0:
    it becomes ``rounding_base`` instead.

    >>> [round_count(n) for n in (0, 3, 7, 8, 146, 112)]
    [0, '<=7', '<=7', 10, 145, 110]
    """
    value = _as_int(n)
    if value == 0:
        return 0
    if value <= small_count_max:
        return suppressed_label(small_count_max)
    rounded = int(math.floor(value / rounding_base + 0.5)) * rounding_base
    return max(rounded, rounding_base)


def midpoint6(n) -> int:
    """OpenSAFELY midpoint-6 rounding: 0 -> 0, else ceil(n / 6) * 6 - 3.

    >>> [midpoint6(n) for n in (0, 1, 6, 7, 12, 13, 100)]
    [0, 3, 3, 9, 9, 15, 99]
    """
    value = _as_int(n)
    if value == 0:
        return 0
    return int(math.ceil(value / MIDPOINT_BASE)) * MIDPOINT_BASE - MIDPOINT_BASE // 2


@dataclass(frozen=True)
class Disclosure:
    """The disclosure rules of one report (the ``report`` section of the config)."""

    enabled: bool = True
    small_count_max: int = 7
    rounding_base: int = 5

    @classmethod
    def from_config(cls, report: dict) -> "Disclosure":
        return cls(enabled=bool(report.get("disclosure_control", True)),
                   small_count_max=int(report.get("small_count_max", 7)),
                   rounding_base=int(report.get("rounding_base", 5)))

    @property
    def suppressed(self) -> str:
        return suppressed_label(self.small_count_max)

    def count(self, n) -> int | str:
        """The count as released: an int, or the suppression label."""
        if not self.enabled:
            return _as_int(n)
        return round_count(n, self.small_count_max, self.rounding_base)

    def at_risk(self, n) -> int:
        return midpoint6(n) if self.enabled else _as_int(n)

    def fmt_count(self, n) -> str:
        if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
            return "—"
        value = self.count(n)
        return f"{value:,}" if isinstance(value, int) else value

    def fmt_at_risk(self, n) -> str:
        return f"{self.at_risk(n):,}"

    def percent(self, n, denominator) -> float | None:
        """Percentage from the released counts; None when either is suppressed or zero."""
        num, den = self.count(n), self.count(denominator)
        if not isinstance(num, int) or not isinstance(den, int) or den == 0:
            return None
        return 100.0 * num / den

    def fmt_n_pct(self, n, denominator, decimals: int = 1) -> str:
        """"n (p%)" from released counts; a suppressed count is shown alone."""
        shown = self.fmt_count(n)
        pct = self.percent(n, denominator)
        return shown if pct is None else f"{shown} ({pct:.{decimals}f}%)"

    def description(self) -> str:
        """One paragraph saying what was done to the numbers of the report."""
        if not self.enabled:
            return ("Disclosure control is OFF (report.disclosure_control: false): counts are exact. "
                    "Do not release this report outside the secure environment.")
        return (f"Disclosure control is on (protocol 4.7): counts from 1 to {self.small_count_max} are shown "
                f"as \"{self.suppressed}\", other counts are rounded to the nearest multiple of "
                f"{self.rounding_base} (0 stays 0); percentages are computed from the rounded counts and "
                f"omitted where the count is suppressed; numbers at risk are midpoint-6 rounded "
                f"(0 stays 0, otherwise ceil(n/6)\u00d76\u22123); Kaplan-Meier curves are recomputed from "
                f"day-binned, midpoint-6 rounded cumulative counts of deaths and censorings. "
                f"Totals may therefore differ from the sum of their parts.")


# --------------------------------------------------------------------------- Kaplan-Meier

def _km_arm_from_counts(times: np.ndarray, n0: int, events: np.ndarray, censored: np.ndarray) -> pd.DataFrame:
    """Product-limit estimate with log-log 95% CI from counts per time (already ordered)."""
    exits = events + censored
    n_risk = n0 - np.concatenate([[0], np.cumsum(exits)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_risk > 0, 1.0 - events / np.where(n_risk > 0, n_risk, 1), 1.0)
        surv = np.cumprod(factor)
        term = np.where((n_risk > events) & (n_risk > 0),
                        events / (n_risk * (n_risk - events).clip(min=1)), 0.0)
        greenwood = np.cumsum(term)
        log_surv = np.log(surv)
        se = np.where((surv > 0) & (surv < 1), np.sqrt(greenwood) / np.abs(log_surv), 0.0)
        cll = np.log(-log_surv)
        lower = np.where((surv > 0) & (surv < 1), np.exp(-np.exp(cll + _Z975 * se)), surv)
        upper = np.where((surv > 0) & (surv < 1), np.exp(-np.exp(cll - _Z975 * se)), surv)
    return pd.DataFrame({"time": times.astype(float), "n_risk": n_risk.astype(int),
                         "n_event": events.astype(int), "n_censor": censored.astype(int),
                         "surv": surv, "lower": lower, "upper": upper})


def rounded_km(steps: pd.DataFrame, horizon: float) -> pd.DataFrame:
    """Disclosure-safe KM of one arm from its step table (time, n_risk, n_event, n_censor).

    Times are binned to whole days (an exit at 3.2 days counts on day 4); the cumulative
    numbers of events and of censorings and the number at the start are midpoint-6 rounded;
    the curve and its log-log CI are recomputed from the rounded increments.
    """
    s = steps.sort_values("time", kind="stable")
    s = s[s["time"] > 0]
    n0 = int(steps["n_risk"].max()) if len(steps) else 0
    days = np.arange(1, int(math.ceil(horizon)) + 1)
    day_of = np.ceil(s["time"].to_numpy(dtype=float)).clip(1, days[-1])
    ev = np.bincount(day_of.astype(int), weights=s["n_event"].to_numpy(dtype=float), minlength=days[-1] + 1)[1:]
    ce = np.bincount(day_of.astype(int), weights=s["n_censor"].to_numpy(dtype=float), minlength=days[-1] + 1)[1:]
    cum_ev = np.array([midpoint6(int(round(v))) for v in np.cumsum(ev)])
    cum_ce = np.array([midpoint6(int(round(v))) for v in np.cumsum(ce)])
    n0r = midpoint6(n0)
    # rounded cumulative exits can never exceed the rounded start
    total = cum_ev + cum_ce
    over = total > n0r
    if over.any():
        cum_ce = np.where(over, np.maximum(n0r - cum_ev, 0), cum_ce)
        cum_ev = np.minimum(cum_ev, n0r)
    events = np.diff(np.concatenate([[0], cum_ev]))
    censored = np.diff(np.concatenate([[0], cum_ce])).clip(min=0)
    out = _km_arm_from_counts(days, n0r, events, censored)
    start = pd.DataFrame({"time": [0.0], "n_risk": [n0r], "n_event": [0], "n_censor": [0],
                          "surv": [1.0], "lower": [1.0], "upper": [1.0]})
    return pd.concat([start, out], ignore_index=True)


def at_risk_counts(steps: pd.DataFrame, days: list[float]) -> list[int]:
    """Number at risk (time >= t) at each day, from one arm's KM step table."""
    s = steps.sort_values("time", kind="stable")
    times = s["time"].to_numpy(dtype=float)
    n_risk = s["n_risk"].to_numpy(dtype=float)
    exits = (s["n_event"] + s["n_censor"]).to_numpy(dtype=float)
    out = []
    for t in days:
        idx = np.nonzero(times >= t)[0]
        if len(idx):
            out.append(int(n_risk[idx[0]]))
        elif len(times):
            out.append(max(int(n_risk[-1] - exits[-1]), 0) if times[-1] < t else 0)
        else:
            out.append(0)
    return out


# --------------------------------------------------------------------------- checking

_INT = re.compile(r"^\d{1,3}(,\d{3})*$|^\d+$")


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class _CountCollector(HTMLParser):
    """Text of elements carrying ``data-count``, tolerant of void and unclosed elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None, list[str]]] = []
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        self.stack.append((tag, dict(attrs).get("data-count"), []))

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not any(t == tag for t, _, _ in self.stack):
            return
        while self.stack:
            name, kind, buffer = self.stack.pop()
            text = "".join(buffer)
            if self.stack:
                self.stack[-1][2].append(text)
            if kind:
                self.found.append((kind, text.strip()))
            if name == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2].append(data)


def marked_counts(html: str) -> list[tuple[str, str]]:
    """(kind, text) of every element marked with ``data-count`` in ``html``."""
    parser = _CountCollector()
    parser.feed(html)
    parser.close()
    return parser.found


def unsuppressed_counts(html: str, small_count_max: int = 7, rounding_base: int = 5) -> list[str]:
    """Marked counts that disclosure control should not have released.

    A ``data-count="n"`` value must be 0, the suppression label, "—", or a multiple of
    ``rounding_base`` above ``small_count_max``; a ``data-count="mid6"`` value must be 0 or 3
    modulo 6.  Returns one description per offending value (empty list: all clear).
    """
    label = suppressed_label(small_count_max)
    problems = []
    for kind, text in marked_counts(html):
        if text in ("0", label, "—", ""):
            continue
        if not _INT.match(text):
            problems.append(f"{kind}: {text!r} is not a released count")
            continue
        value = int(text.replace(",", ""))
        if kind == "mid6":
            ok = value % MIDPOINT_BASE == MIDPOINT_BASE // 2
        elif kind == "exact":
            ok = False
        else:
            ok = value > small_count_max and value % rounding_base == 0
        if not ok:
            problems.append(f"{kind}: {text} is not disclosure-controlled")
    return problems


# --------------------------------------------------------------------------- released cells

@dataclass(frozen=True)
class Cell:
    """One table cell as released: an optional count (marked for checking) and the rest.

    ``count`` is the text of a disclosure-controlled count (``kind`` "n" or "mid6"), shown
    first; ``rest`` follows it, e.g. ``Cell("145", " (40.0%)")``.  ``numeric`` right-aligns it.
    """

    count: str | None = None
    rest: str = ""
    kind: str = "n"
    numeric: bool = True

    def __str__(self) -> str:
        return (self.count or "") + self.rest


def text_cell(text: str, numeric: bool = True) -> Cell:
    return Cell(None, text, numeric=numeric)


def count_cell(disclosure: Disclosure, n, denominator=None, decimals: int = 1) -> Cell:
    """Cell of a count, with its percentage of ``denominator`` when given (from released counts)."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n is pd.NA:
        return text_cell("—")
    shown = disclosure.fmt_count(n)
    rest = ""
    if denominator is not None:
        pct = disclosure.percent(n, denominator)
        if pct is not None:
            rest = f" ({pct:.{decimals}f}%)"
    return Cell(shown, rest, kind="n" if disclosure.enabled else "exact")


def at_risk_cell(disclosure: Disclosure, n) -> Cell:
    return Cell(disclosure.fmt_at_risk(n), "", kind="mid6" if disclosure.enabled else "exact")
