"""Clone-censor-weight: clones, artificial censoring, weights and estimates by hand.

Six patients, grace G = 2 days (time, event, anakinra start):
  1: (5, died, 1.0)   started within G        2: (6, censored, 0.5) started within G
  3: (1.5, died, -)   died in the grace period 4: (4, died, -)       never started
  5: (8, censored, -) never started            6: (7, died, 3.0)     late starter
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hdank.ccw import (_weight_rows, ccw_estimate, ccw_weights, clone_censor_weight,
                       make_clones, split_clones)

G = 2.0
DF = pd.DataFrame({"patient_id": [1, 2, 3, 4, 5, 6],
                   "time": [5.0, 6.0, 1.5, 4.0, 8.0, 7.0],
                   "event": [1, 0, 1, 1, 0, 1],
                   "anakinra_start_day": [1.0, 0.5, np.nan, np.nan, np.nan, 3.0]})
X0 = np.zeros((6, 0))                          # no covariates
X1 = np.array([[1.0], [0], [0], [1], [0], [1]])  # one binary covariate


def test_clones_by_hand():
    c = make_clones(DF, G).set_index(["arm", "patient_id"])
    a = c.loc["hdank"]
    assert a["time"].tolist() == [5.0, 6.0, 1.5, 2.0, 2.0, 2.0]
    assert a["event"].tolist() == [1, 0, 1, 0, 0, 0]
    assert a["artificial"].tolist() == [False, False, False, True, True, True]
    b = c.loc["soc"]
    assert b["time"].tolist() == [1.0, 0.5, 1.5, 4.0, 8.0, 3.0]
    assert b["event"].tolist() == [0, 0, 1, 1, 0, 0]
    assert b["artificial"].tolist() == [True, True, False, False, False, True]


def test_start_at_time_zero_removes_b_clone_and_start_at_death_is_deviation():
    df = DF.assign(anakinra_start_day=[0.0, 0.5, np.nan, 4.0, np.nan, 3.0])
    c = make_clones(df, G)
    b = c[c["arm"] == "soc"].set_index("patient_id")
    assert 1 not in b.index
    assert b.loc[4, "time"] == 4.0 and b.loc[4, "event"] == 0  # started on the day of death


def test_split_rows():
    c = make_clones(DF, G)
    rows = split_clones(c[c["patient_id"] == 1], [1.5, 2.0, 4.0])
    a = rows[rows["arm"] == "hdank"]
    assert a[["start", "stop", "event"]].values.tolist() == [
        [0, 1.5, 0], [1.5, 2.0, 0], [2.0, 4.0, 0], [4.0, 5.0, 1]]
    b = rows[rows["arm"] == "soc"]
    assert b[["start", "stop", "event"]].values.tolist() == [[0, 1.0, 0]]


def test_weight_models_without_covariates():
    m = ccw_weights(DF, X0, G)
    # A: in follow-up after G: patients 1, 2, 4, 5, 6; started by G: 1, 2 -> p = 2/5
    assert np.nanmax(np.abs(m["p_a"][[0, 1, 3, 4, 5]] - 0.4)) < 1e-12
    assert np.isnan(m["p_a"][2])
    # B: Nelson-Aalen of starting: jumps 1/6 at 0.5, 1/5 at 1.0, 1/3 at 3.0
    assert m["haz_times"].tolist() == [0.5, 1.0, 3.0]
    np.testing.assert_allclose(m["haz_jumps"], [1 / 6, 1 / 5, 1 / 3])
    rows = split_clones(make_clones(DF, G), [1.5, 2.0, 4.0, 5.0])
    w = _weight_rows(rows, m, G)
    b4 = (rows["arm"] == "soc") & (rows["patient_id"] == 4)
    # B clone of patient 4 at its death at 4: 1/K(4-) = exp(1/6 + 1/5 + 1/3)
    assert w[b4 & (rows["stop"] == 4.0)][0] == pytest.approx(math.exp(0.7))
    a1 = (rows["arm"] == "hdank") & (rows["patient_id"] == 1)
    assert w[a1 & (rows["stop"] <= G)].tolist() == [1.0, 1.0]
    assert w[a1 & (rows["stop"] > G)] == pytest.approx(2.5)


def test_weighted_risks_by_hand_with_a_covariate():
    """x = 1 for patients 1, 4, 6.  A: P(start by G | x) = 1/3 (x=1), 1/2 (x=0), so after G
    clone 1 weighs 3 and clone 2 weighs 2.  KM of A: 5/6 at 1.5, then at 5 the risk set is
    {1 (w 3), 2 (w 2)} with death weight 3: S = 5/6 * 2/5 = 1/3, risk 2/3."""
    est = ccw_estimate(DF, X1, G, horizon=28)
    assert est.risk_a == pytest.approx(2 / 3, rel=1e-9)
    assert est.events_a == 2 and est.events_b == 2
    # no covariates: IPCW cannot change a KM (weights equal within each risk set)
    est0 = ccw_estimate(DF, X0, G, horizon=28)
    assert est0.risk_a == pytest.approx(1 - 5 / 6 * 1 / 2)
    assert est0.risk_b == pytest.approx(1 - 3 / 4 * 1 / 2)


def _sim(seed=3, n=200):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    start = np.where(rng.random(n) < 1 / (1 + np.exp(-x)), rng.uniform(0, 4, n), np.nan)
    time = np.ceil(rng.exponential(30 / np.exp(0.5 * x)) * 4) / 4
    time = np.minimum(np.maximum(time, np.nan_to_num(start, nan=0) + 0.25), 28)
    event = (time < 28).astype(int)
    return pd.DataFrame({"patient_id": np.arange(n), "time": time, "event": event,
                         "anakinra_start_day": start}), x[:, None]


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    df, x = _sim()
    a = clone_censor_weight(df, x, G, 28, n_boot=30, seed=9)
    b = clone_censor_weight(df, x, G, 28, n_boot=30, seed=9)
    pd.testing.assert_frame_equal(a["boot"], b["boot"])
    assert a["n_boot_ok"] == 30
    lo, hi = a["ci"]["risk_difference"]
    assert lo < a["estimate"].risk_difference < hi
    lo, hi = a["ci"]["hr"]
    assert lo < math.exp(a["estimate"].log_hr) < hi


def test_no_effect_no_confounding_gives_similar_arms():
    """Treatment start unrelated to outcome: both strategies have about the same risk."""
    rng = np.random.default_rng(4)
    n = 2000
    start = np.where(rng.random(n) < 0.5, rng.uniform(0, 3, n), np.nan)
    time = np.minimum(np.ceil(rng.exponential(60, n) * 4) / 4 + 0.25, 28)
    time = np.where(~np.isnan(start) & (time <= start), start + 0.25, time)
    df = pd.DataFrame({"patient_id": np.arange(n), "time": time,
                       "event": (time < 28).astype(int), "anakinra_start_day": start})
    est = ccw_estimate(df, rng.normal(size=(n, 1)), G, 28, variance=False)
    assert abs(est.risk_difference) < 0.05
    assert abs(est.log_hr) < 0.2


def test_weight_grid_bounds_rows_and_stays_close_to_the_exact_weights():
    from hdank.ccw import ccw_estimate

    rng = np.random.default_rng(3)
    n = 400
    x = rng.normal(size=(n, 1))
    start = np.where(rng.random(n) < 0.5, rng.uniform(0.1, 10, n), np.nan)
    df = pd.DataFrame({"patient_id": np.arange(n), "time": rng.uniform(0.5, 28, n),
                       "event": (rng.random(n) < 0.3).astype(int), "anakinra_start_day": start})
    exact = ccw_estimate(df, x, 2.0, 28.0)
    daily = ccw_estimate(df, x, 2.0, 28.0, grid=1.0)
    assert len(daily.rows) <= 2 * n * 29 < len(exact.rows)  # grid rows do not grow with start times
    assert abs(daily.risk_difference - exact.risk_difference) < 0.02
    assert abs(daily.log_hr - exact.log_hr) < 0.05


def test_bootstrap_does_not_depend_on_the_number_of_workers():
    """Each replicate has its own seed (SeedSequence.spawn): 1 or 3 processes, same replicates."""
    df, x = _sim()
    one = clone_censor_weight(df, x, G, 28, n_boot=7, seed=5)
    three = clone_censor_weight(df, x, G, 28, n_boot=7, seed=5, workers=3)
    pd.testing.assert_frame_equal(one["boot"], three["boot"])
    assert one["ci"] == three["ci"]


def test_grid_cuts_stop_after_the_last_start_time(monkeypatch):
    """B-clone weights are constant after the last start, so cutting the grid there gives the
    same estimates (1e-12) with fewer rows than cutting on the whole grid up to the horizon."""
    import hdank.ccw as ccw
    df, x = _sim()
    short = ccw_estimate(df, x, G, 28, grid=0.5)
    last = ccw_weights(df.reset_index(drop=True), x, G)["haz_times"].max()
    assert short.rows.loc[short.rows["a"] == 0, "start"].max() < last + 0.5
    monkeypatch.setattr(ccw, "_b_cuts", lambda haz_times, horizon, grid: np.arange(grid, horizon, grid))
    full = ccw_estimate(df, x, G, 28, grid=0.5)
    assert len(full.rows) > len(short.rows)
    for name in ("risk_a", "risk_b", "log_hr", "hr_robust_se"):
        assert getattr(short, name) == pytest.approx(getattr(full, name), rel=1e-12, abs=1e-12)


def test_hourly_grid_does_not_split_off_zero_length_rows():
    """np.arange(1/24, ...) is off by an ulp from times at whole hours (e.g. 300/1440 days); a
    clone ending there must not get a row of length 1e-17 (the fits would reject it)."""
    grid = 1 / 24
    cuts = np.arange(grid, 7, grid)
    t_hour = 300 / 1440  # 5 hours
    assert cuts[4] != t_hour and abs(cuts[4] - t_hour) < 1e-15
    clones = pd.DataFrame({"row": [0, 1], "time": [t_hour, 1.0], "event": [1, 0]})
    rows = split_clones(clones, cuts)
    assert (rows["stop"] - rows["start"]).min() > 0.04
    first = rows[rows["row"] == 0]
    assert len(first) == 5 and first["stop"].iloc[-1] == t_hour and first["event"].tolist() == [0, 0, 0, 0, 1]
