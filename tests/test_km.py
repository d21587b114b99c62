"""Kaplan-Meier, at-risk table, risks and risk differences, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hdank.km import (KaplanMeier, aeq_surv, at_risk_table, clustered_risk_difference_se,
                      km_by_group, risk_difference)
from hdank.logrank import logrank_test

Z = 1.959963984540054
# six patients: deaths at 1, 2, 3, 5; censored at 2 and 4
TIME = [1, 2, 2, 3, 4, 5]
EVENT = [1, 1, 0, 1, 0, 1]


def loglog(s, se):
    """log-log interval computed directly from its definition."""
    lls = math.log(-math.log(s))
    half = Z * se / abs(math.log(s))
    return math.exp(-math.exp(lls + half)), math.exp(-math.exp(lls - half))


def test_six_patients_by_hand():
    km = KaplanMeier().fit(TIME, EVENT)
    tab = km.table_.set_index("time")
    assert tab.index.tolist() == [1, 2, 3, 4, 5]
    assert tab["n_risk"].tolist() == [6, 5, 3, 2, 1]
    assert tab["n_event"].tolist() == [1, 1, 1, 0, 1]
    assert tab["n_censor"].tolist() == [0, 1, 0, 1, 0]
    expected = [5 / 6, 4 / 6, 4 / 9, 4 / 9, 0.0]
    np.testing.assert_allclose(tab["surv"], expected, rtol=0, atol=1e-15)
    # Greenwood: var(log S(3)) = 1/(6*5) + 1/(5*4) + 1/(3*2) = 1/4
    assert tab.loc[3, "std_err"] == pytest.approx(0.5, abs=1e-15)
    lo, hi = loglog(4 / 9, 0.5)
    assert tab.loc[3, "lower"] == pytest.approx(lo, abs=1e-14)
    assert tab.loc[3, "upper"] == pytest.approx(hi, abs=1e-14)
    # the same numbers from R: survfit(Surv(time, event) ~ 1, conf.type = "log-log")
    assert lo == pytest.approx(0.06618675315, abs=1e-10)
    assert hi == pytest.approx(0.78490836715, abs=1e-10)
    # S = 0: no CI (as survfit)
    assert math.isnan(tab.loc[5, "lower"]) and math.isnan(tab.loc[5, "upper"])


def test_risk_at_horizon_and_difference():
    km = KaplanMeier().fit(TIME, EVENT)
    r = km.risk_at(3.5)
    assert r.risk == pytest.approx(5 / 9)
    assert r.se == pytest.approx(4 / 9 * 0.5)
    lo, hi = loglog(4 / 9, 0.5)
    assert (r.lower, r.upper) == (pytest.approx(1 - hi), pytest.approx(1 - lo))
    assert km.risk_at(0.5).risk == 0.0  # before the first event
    other = KaplanMeier().fit([2, 3, 4, 6], [1, 0, 0, 0])  # S(3.5) = 3/4
    r2 = other.risk_at(3.5)
    assert r2.risk == pytest.approx(0.25)
    assert r2.se == pytest.approx(0.75 * math.sqrt(1 / (4 * 3)))
    rd = risk_difference(r, r2)
    assert rd["risk_difference"] == pytest.approx(5 / 9 - 1 / 4)
    se = math.hypot(r.se, r2.se)
    assert (rd["lower"], rd["upper"]) == (pytest.approx(rd["risk_difference"] - Z * se),
                                          pytest.approx(rd["risk_difference"] + Z * se))


def test_at_risk_table():
    fits = km_by_group(TIME + [1, 7], EVENT + [0, 1], [1] * 6 + [0] * 2)
    tab = at_risk_table(fits, [0, 2, 4, 7]).set_index(["arm", "time"])
    assert tab.loc[(1, 0.0), "n_risk"] == 6
    assert tab.loc[(1, 2.0), "n_risk"] == 5  # time >= 2
    assert tab.loc[(1, 2.0), "n_event"] == 2 and tab.loc[(1, 2.0), "n_censor"] == 1
    assert tab.loc[(1, 4.0), "n_risk"] == 2
    assert tab.loc[(1, 7.0), "n_risk"] == 0
    assert tab.loc[(0, 7.0), "n_risk"] == 1 and tab.loc[(0, 7.0), "surv"] == 0.0


def test_integer_weights_equal_duplicated_rows():
    w = [1, 2, 1, 3, 1, 1]
    km_w = KaplanMeier().fit(TIME, EVENT, weights=w)
    dup_t = np.repeat(TIME, w)
    dup_e = np.repeat(EVENT, w)
    km_d = KaplanMeier().fit(dup_t, dup_e)
    assert km_w.variance_ == "greenwood"  # integer weights: R's default too
    pd.testing.assert_frame_equal(km_w.table_, km_d.table_)


def test_infinitesimal_jackknife_is_the_weight_derivative():
    """IJ influence = w_i dS/dw_i: check against finite differences of the weights."""
    rng = np.random.default_rng(3)
    n = 30
    t = rng.integers(1, 10, n).astype(float)
    e = rng.binomial(1, 0.6, n)
    w = rng.uniform(0.5, 2, n)
    cl = np.arange(n) // 3
    km = KaplanMeier().fit(t, e, weights=w, cluster=cl)
    assert km.variance_ == "ij"
    horizon = 6.0
    infl = km.influence_at(horizon)
    s0 = km.survival_at(horizon)[0]
    h = 1e-6
    fd = np.zeros(cl.max() + 1)
    for i in range(n):
        w2 = w.copy()
        w2[i] += h
        s1 = KaplanMeier().fit(t, e, weights=w2, robust=False).survival_at(horizon)[0]
        fd[cl[i]] += w[i] * (s1 - s0) / h
    np.testing.assert_allclose(infl.to_numpy(), fd, rtol=0, atol=1e-6)
    se_s = s0 * km.survival_at(horizon)[1]
    assert se_s == pytest.approx(math.sqrt(np.sum(fd ** 2)), rel=1e-5)


def test_clustered_rd_se_for_shared_clusters():
    """Same clusters in both curves (clones): var = sum_k (infl_t - infl_c)^2."""
    rng = np.random.default_rng(5)
    n = 40
    t1, t0 = rng.integers(1, 8, n).astype(float), rng.integers(1, 8, n).astype(float)
    e1, e0 = rng.binomial(1, 0.5, n), rng.binomial(1, 0.5, n)
    ids = np.arange(n)
    k1 = KaplanMeier().fit(t1, e1, cluster=ids)
    k0 = KaplanMeier().fit(t0, e0, cluster=ids)
    se = clustered_risk_difference_se(k1, k0, 5)
    d = k1.influence_at(5) - k0.influence_at(5)
    assert se == pytest.approx(math.sqrt((d ** 2).sum()))


def test_counting_process_split_rows_equal_unsplit():
    """Splitting (0, t] into (0, 2], (2, t] changes nothing; id keeps n_censor right."""
    t = np.array([1.0, 3, 4, 5, 6, 8])
    e = np.array([1, 1, 0, 1, 0, 1])
    base = KaplanMeier().fit(t, e)
    long = t > 2
    start = np.concatenate([np.zeros(6), np.full(long.sum(), 2.0)])
    stop = np.concatenate([np.where(long, 2.0, t), t[long]])
    ev = np.concatenate([np.where(long, 0, e), e[long]])
    ids = np.concatenate([np.arange(6), np.arange(6)[long]])
    split = KaplanMeier().fit(stop, ev, entry=start, id=ids)
    tab = split.table_[split.table_["time"] != 2].reset_index(drop=True)
    np.testing.assert_allclose(tab["surv"], base.table_["surv"])
    np.testing.assert_allclose(tab["std_err"], base.table_["std_err"])
    np.testing.assert_allclose(tab["n_risk"], base.table_["n_risk"])
    assert split.table_["n_censor"].sum() == base.table_["n_censor"].sum()


def test_aeq_surv_merges_rounding_noise():
    t, _ = aeq_surv(np.array([1.0, 1.0 + 1e-10, 2.0, 2.5]))
    assert t.tolist() == [1.0, 1.0, 2.0, 2.5]
    t2, _ = aeq_surv(np.array([1.0, 1.001]))
    assert t2.tolist() == [1.0, 1.001]
    km = KaplanMeier().fit([1.0, 1.0 + 1e-12, 2.0], [1, 1, 0])
    assert len(km.table_) == 2 and km.table_["n_event"].iloc[0] == 2


def test_input_errors():
    with pytest.raises(ValueError, match="event must be 0/1"):
        KaplanMeier().fit([1, 2], [1, 2])
    with pytest.raises(ValueError, match="weights"):
        KaplanMeier().fit([1, 2], [1, 0], weights=[1, -1])
    with pytest.raises(ValueError, match="entry must be < time"):
        KaplanMeier().fit([1, 2], [1, 0], entry=[1, 0])


def test_logrank_by_hand():
    """Two groups, three event times: O - E and the hypergeometric variance by hand."""
    time = [1, 2, 3, 1, 2, 4]
    event = [1, 1, 1, 0, 1, 1]
    group = [0, 0, 0, 1, 1, 1]
    # t=1: n=6 (3/3), d=1 in g0: E0=1/2, V=1*5/5*(1/2)(1/2)=1/4
    # t=2: n=4 (2/2), d=2 (one each): E0=1, V=2*2/3*(1/2)(1/2)=1/3
    # t=3: n=2 (1/1), d=1 in g0: E0=1/2, V=1/4
    # t=4: n=1 (g1 only), d=1: E0=0, V=0
    o0, e0, v = 3, 2.0, 1 / 4 + 1 / 3 + 1 / 4
    res = logrank_test(time, event, group)
    assert res.table["observed"].tolist() == [3, 2]
    assert res.table["expected"].iloc[0] == pytest.approx(e0)
    assert res.chisq == pytest.approx((o0 - e0) ** 2 / v)
    assert res.df == 1


def _finite_difference_influence(fit_args, w, cl, horizon, h=1e-6):
    """sum over rows of cluster k of w_i dS(horizon)/dw_i, by forward differences."""
    s0 = KaplanMeier().fit(weights=w, robust=False, **fit_args).survival_at(horizon)[0]
    fd = np.zeros(cl.max() + 1)
    for i in range(w.size):
        w2 = w.copy()
        w2[i] += h
        s1 = KaplanMeier().fit(weights=w2, robust=False, **fit_args).survival_at(horizon)[0]
        fd[cl[i]] += w[i] * (s1 - s0) / h
    return fd


@pytest.mark.parametrize("horizon", [0.5, 3.0, 4.5, 9.0])
def test_influence_with_late_entry_is_the_weight_derivative(horizon):
    """Counting-process rows (entry, stop]: the closed-form influence equals finite differences,
    before the first event, between event times, and past the last one."""
    rng = np.random.default_rng(11)
    n = 36
    entry = rng.choice([0.0, 0.0, 1.0, 2.5], n)
    stop = entry + rng.integers(1, 7, n)
    event = rng.binomial(1, 0.5, n)
    w = rng.uniform(0.5, 2, n)
    cl = np.arange(n) // 2
    args = dict(time=stop, event=event, entry=entry)
    km = KaplanMeier().fit(weights=w, cluster=cl, **args)
    fd = _finite_difference_influence(args, w, cl, horizon)
    infl = km.influence_at(horizon).to_numpy()
    np.testing.assert_allclose(infl, fd, rtol=0, atol=1e-6)
    s, se_log = km.survival_at(horizon)  # the fit's SE comes from the survfitkm.c recursion
    assert math.sqrt(np.sum(infl ** 2)) == pytest.approx(s * se_log, rel=1e-10, abs=1e-15)


def test_influence_when_survival_reaches_zero():
    """Everyone at risk at t=4 dies, so S(t >= 4) = 0: only that factor has a derivative."""
    t = np.array([1.0, 2, 2, 3, 4, 4])
    e = np.array([1, 0, 1, 0, 1, 1])
    w = np.array([1.0, 1.5, 0.7, 2.0, 1.2, 0.9])
    cl = np.arange(6)
    km = KaplanMeier().fit(t, e, weights=w, cluster=cl)
    assert km.survival_at(4)[0] == 0
    fd = _finite_difference_influence(dict(time=t, event=e), w, cl, 4.0)
    np.testing.assert_allclose(km.influence_at(4.0).to_numpy(), fd, rtol=0, atol=1e-6)
    # and the SE at t = 4 from the influences equals the fit's (survfitkm.c recursion)
    assert math.sqrt(np.sum(km.influence_at(3.5).to_numpy() ** 2)) == pytest.approx(
        km.survival_at(3.5)[0] * km.survival_at(3.5)[1], rel=1e-12)
