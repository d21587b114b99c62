"""cox.zph (survival 3 score test) against a brute-force implementation written from its
definition: the model extended by x*g(t), score and full 2p x 2p information at (beta, 0),
Efron ties and case weights, looping over event times and risk sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hdank.cox import CoxPH
from hdank.phtest import cox_zph


def naive_km_left(time, event, t):
    """S(t-) of the unweighted KM, by its product definition."""
    s = 1.0
    for u in np.unique(time[event == 1]):
        if u >= t:
            break
        s *= 1 - np.sum((time == u) & (event == 1)) / np.sum(time >= u)
    return s


def brute_zph(x, time, event, w, beta, terms):
    n, p = x.shape
    death_times = np.unique(time[event == 1])
    g = np.array([1 - naive_km_left(time, event, u) for u in death_times])
    d = np.array([np.sum((time == u) & (event == 1)) for u in death_times])
    g = g - np.sum(d * g) / d.sum()
    U = np.zeros(2 * p)
    I = np.zeros((2 * p, 2 * p))
    risk = w * np.exp(x @ beta)
    for u, gj in zip(death_times, g):
        dead = np.flatnonzero((time == u) & (event == 1))
        at = np.flatnonzero(time >= u)
        nd = len(dead)
        mw = w[dead].sum() / nd
        z = np.hstack([x, x * gj])
        for i in dead:
            U += w[i] * z[i]
        for k in range(nd):
            r = risk.copy()
            r[dead] *= 1 - k / nd
            rr = r[at]
            zz = z[at]
            den = rr.sum()
            mean = rr @ zz / den
            U -= mw * mean
            I += mw * ((zz * rr[:, None]).T @ zz / den - np.outer(mean, mean))
    U[:p] = 0.0  # score of beta is 0 at beta-hat
    out = {}
    for term, cols in terms.items():
        kk = list(range(p)) + [p + j for j in cols]
        out[term] = float(U[kk] @ np.linalg.solve(I[np.ix_(kk, kk)], U[kk]))
    out["GLOBAL"] = float(U @ np.linalg.solve(I, U))
    return out


def _data(seed=2, n=80):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.4, n), rng.binomial(1, 0.3, n)])
    t = np.ceil(rng.weibull(1.5, n) * 8 / np.exp(0.4 * x[:, 0] + 0.5 * x[:, 1]))
    e = (rng.random(n) < 0.75).astype(int)
    w = rng.uniform(0.5, 2, n)
    return x, t, e, w


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_brute_force(weighted):
    x, t, e, w = _data()
    w = w if weighted else np.ones_like(w)
    fit = CoxPH().fit(pd.DataFrame(x, columns=["a", "b", "c"]), t, e,
                      weights=w if weighted else None)
    ours = cox_zph(fit).set_index("term")
    ref = brute_zph(x, t, e, w, fit.coef_.to_numpy(), {"a": [0], "b": [1], "c": [2]})
    for term, chisq in ref.items():
        assert ours.loc[term, "chisq"] == pytest.approx(chisq, rel=1e-9), term
    assert ours.loc["GLOBAL", "df"] == 3
    assert ours.loc["a", "p"] == pytest.approx(stats.chi2.sf(ref["a"], 1), rel=1e-9)


def test_multi_column_term_is_tested_jointly():
    x, t, e, w = _data(seed=5)
    fit = CoxPH().fit(pd.DataFrame(x, columns=["a", "b", "c"]), t, e)
    ours = cox_zph(fit, terms={"a": ["a"], "bc": ["b", "c"]}).set_index("term")
    ref = brute_zph(x, t, e, np.ones(len(t)), fit.coef_.to_numpy(), {"a": [0], "bc": [1, 2]})
    assert ours.loc["bc", "df"] == 2
    assert ours.loc["bc", "chisq"] == pytest.approx(ref["bc"], rel=1e-9)
    assert ours.loc["bc", "p"] == pytest.approx(stats.chi2.sf(ref["bc"], 2), rel=1e-9)


def test_other_transforms_and_single_event_time():
    x, t, e, _ = _data()
    fit = CoxPH().fit(x, t, e)
    km = cox_zph(fit)["chisq"].to_numpy()
    for transform in ("identity", "log", "rank"):
        other = cox_zph(fit, transform=transform)["chisq"].to_numpy()
        assert np.all(np.isfinite(other)) and not np.allclose(other, km)
    one = CoxPH().fit(np.array([[0.0], [0.5], [0], [1]]), [1.0, 2, 2, 3], [0, 1, 0, 0])
    with pytest.warns(RuntimeWarning, match="singular"):
        table = cox_zph(one)
    assert table["chisq"].isna().all()
    with pytest.raises(ValueError, match="transform"):
        cox_zph(fit, transform="nope")
