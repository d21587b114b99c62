"""Disclosure control (protocol 4.7) on hand-worked examples."""

import numpy as np
import pandas as pd
import pytest

from hdank.disclosure import (Cell, Disclosure, at_risk_counts, count_cell, marked_counts, midpoint6,
                              round_count, rounded_km, unsuppressed_counts)


@pytest.mark.parametrize("n, shown", [
    (0, 0), (1, "<=7"), (3, "<=7"), (7, "<=7"), (8, 10), (9, 10), (10, 10), (12, 10), (13, 15),
    (110, 110), (112, 110), (113, 115), (146, 145), (147, 145), (148, 150), (256, 255), (2000, 2000),
])
def test_round_count_hand_examples(n, shown):
    assert round_count(n) == shown


def test_round_count_other_settings():
    assert round_count(5, small_count_max=4, rounding_base=10) == 10   # positive never rounds to 0
    assert round_count(15, small_count_max=7, rounding_base=10) == 20  # halves round up
    assert round_count(3, small_count_max=0, rounding_base=1) == 3     # a no-op configuration
    assert round_count(np.int64(146)) == 145 and round_count(146.0) == 145


@pytest.mark.parametrize("bad", [-1, 2.5, None, float("nan")])
def test_round_count_rejects_non_counts(bad):
    with pytest.raises(ValueError):
        round_count(bad)


@pytest.mark.parametrize("n, shown", [
    (0, 0), (1, 3), (2, 3), (6, 3), (7, 9), (12, 9), (13, 15), (30, 27), (31, 33), (110, 111), (146, 147),
])
def test_midpoint6_hand_examples(n, shown):
    assert midpoint6(n) == shown


def test_percentages_come_from_rounded_counts():
    d = Disclosure()
    assert d.fmt_n_pct(12, 146) == "10 (6.9%)"        # 10 / 145, not 12 / 146 = 8.2%
    assert d.fmt_n_pct(73, 146) == "75 (51.7%)"       # 75 / 145
    assert d.fmt_n_pct(3, 146) == "<=7"               # no percentage next to a suppressed count
    assert d.fmt_n_pct(0, 146) == "0 (0.0%)"
    assert d.fmt_n_pct(20, 5) == "20"                 # suppressed denominator: no percentage
    assert d.fmt_count(1234567) == "1,234,565"
    assert d.fmt_at_risk(8) == "9"


def test_switched_off_shows_exact_counts():
    d = Disclosure.from_config({"disclosure_control": False, "small_count_max": 7, "rounding_base": 5})
    assert not d.enabled
    assert d.fmt_n_pct(3, 146) == "3 (2.1%)"
    assert d.fmt_at_risk(8) == "8"
    assert "OFF" in d.description()
    assert count_cell(d, 3).kind == "exact"


def test_description_quotes_the_settings():
    text = Disclosure(True, 10, 3).description()
    assert '"<=10"' in text and "multiple of 3" in text and "midpoint-6" in text


def test_cells_carry_the_count_separately():
    d = Disclosure()
    assert count_cell(d, 12, 146) == Cell("10", " (6.9%)", "n")
    assert str(count_cell(d, 12, 146)) == "10 (6.9%)"
    assert str(count_cell(d, None)) == "—"


def test_unsuppressed_counts_finds_small_and_unrounded_values():
    html = ('<table><tr><td><span data-count="n">&lt;=7</span></td><td><span data-count="n">145</span> (5%)</td>'
            '<td><span data-count="n">3</span></td><td><span data-count="n">146</span></td>'
            '<td><span data-count="n">1,236</span></td><td><span data-count="n">0</span></td></tr>'
            '<tr><td><span data-count="mid6">9</span><br></td><td><span data-count="mid6">8</span></td></tr></table>'
            '<svg><g data-count="mid6"><text>21</text></g><g data-count="n"><text>4</text></g></svg>'
            '<p>Age 3 years, day 7: not marked, not a count</p>')
    found = marked_counts(html)
    assert ("n", "<=7") in found and ("mid6", "21") in found and len(found) == 10
    problems = unsuppressed_counts(html)
    assert problems == ["n: 3 is not disclosure-controlled", "n: 146 is not disclosure-controlled",
                        "n: 1,236 is not disclosure-controlled", "mid6: 8 is not disclosure-controlled",
                        "n: 4 is not disclosure-controlled"]


def _steps(times, events):
    """Step table (time, n_risk, n_event, n_censor) of one arm."""
    times, events = np.asarray(times, float), np.asarray(events, int)
    rows, n = [], len(times)
    for t in np.unique(times):
        at = times == t
        d, c = int(events[at].sum()), int((1 - events[at]).sum())
        rows.append((t, n, d, c))
        n -= d + c
    return pd.DataFrame(rows, columns=["time", "n_risk", "n_event", "n_censor"])


def test_at_risk_counts_from_steps():
    steps = _steps([0.5, 3, 3, 7, 7.5, 14, 28, 28, 28, 28], [1, 0, 1, 1, 0, 1, 0, 0, 0, 1])
    # at risk at day t = number with time >= t
    assert at_risk_counts(steps, [0, 7, 14, 21, 28]) == [10, 7, 5, 4, 4]
    assert at_risk_counts(steps, [29]) == [0]


def test_rounded_km_steps_belong_to_at_least_six_patients():
    rng = np.random.default_rng(3)
    n = 97
    times = np.round(rng.uniform(0.1, 28, n), 2)
    events = (rng.random(n) < 0.35).astype(int)
    times[events == 0] = np.where(rng.random((events == 0).sum()) < 0.7, 28.0, times[events == 0])
    curve = rounded_km(_steps(times, events), 28)
    assert curve["time"].iloc[0] == 0 and curve["surv"].iloc[0] == 1.0
    assert curve["n_risk"].iloc[0] == midpoint6(n)
    assert set(curve["time"]) <= set(range(29))                    # whole days only
    jumps = curve["n_event"][curve["n_event"] > 0]
    assert (jumps % 6 == 0).all() or ((jumps % 6 == 0) | (jumps == 3)).all()
    cum = curve["n_event"].cumsum()
    assert all(c == 0 or c % 6 == 3 for c in cum)                   # cumulative deaths midpoint-6
    assert (np.diff(curve["surv"]) <= 1e-12).all()
    assert ((curve["lower"] <= curve["surv"] + 1e-12) & (curve["surv"] <= curve["upper"] + 1e-12)).all()
    # close to the exact curve at day 28
    exact = np.prod([1 - r.n_event / r.n_risk for r in _steps(times, events).itertuples()])
    assert abs(curve["surv"].iloc[-1] - exact) < 0.06
