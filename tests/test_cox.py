"""CoxPH: hand-written partial likelihoods, residual identities, counting-process splitting.

R agreement (Rossi, lung, simulated matched data) is in test_survival_agreement.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from hdank.cox import CoxPH

# five patients, two tied deaths at t = 1
T = np.array([1.0, 1, 2, 3, 4])
E = np.array([1, 1, 1, 0, 1])
X = np.array([1.0, 0, 1, 0, 1])


def efron_loglik(b: float) -> float:
    """Efron partial likelihood of (T, E, X) written out by hand."""
    eb = math.exp(b)
    s0 = 3 * eb + 2          # t = 1: everybody at risk (x = 1, 0, 1, 0, 1)
    d0 = eb + 1              # the two deaths at t = 1
    ll = b - math.log(s0) - math.log(s0 - d0 / 2)
    ll += b - math.log(2 * eb + 1)  # t = 2: rows 3, 4, 5 at risk
    ll += b - b                      # t = 4: row 5 alone
    return ll


def breslow_loglik(b: float) -> float:
    eb = math.exp(b)
    s0 = 3 * eb + 2
    return b - 2 * math.log(s0) + b - math.log(2 * eb + 1)


@pytest.mark.parametrize("ties,loglik", [("efron", efron_loglik), ("breslow", breslow_loglik)])
def test_hand_partial_likelihood(ties, loglik):
    fit = CoxPH(ties=ties).fit(X[:, None], T, E)
    best = optimize.minimize_scalar(lambda b: -loglik(b), bracket=(-1, 1), tol=1e-14)
    assert fit.coef_.iloc[0] == pytest.approx(best.x, abs=1e-7)
    assert fit.loglik_ == pytest.approx(loglik(fit.coef_.iloc[0]), rel=1e-14)
    assert fit.loglik_null_ == pytest.approx(loglik(0.0), rel=1e-14)
    # observed information = -d2 loglik / db2 (central differences)
    b, h = fit.coef_.iloc[0], 1e-4
    info = -(loglik(b + h) - 2 * loglik(b) + loglik(b - h)) / h ** 2
    assert fit.se_.iloc[0] == pytest.approx(1 / math.sqrt(info), rel=1e-6)


def _data(seed=1, n=60, ties=True):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.binomial(1, 0.5, n)])
    t = rng.exponential(5 / np.exp(0.5 * x[:, 0] - 0.4 * x[:, 1]))
    t = np.ceil(t) if ties else t
    e = (rng.random(n) < 0.8).astype(int)
    w = rng.uniform(0.5, 2.0, n)
    return x, t, e, w


def test_newton_converges_to_the_maximum():
    x, t, e, w = _data()
    fit = CoxPH().fit(x, t, e, weights=w)
    assert fit.converged_
    assert np.max(np.abs(fit._terms["U"])) < 1e-10  # score ~ 0 after the final step


@pytest.mark.parametrize("ties,tied", [("breslow", True), ("efron", False)])
def test_score_residuals_are_weight_derivatives(ties, tied):
    """d beta_hat / d w_i = V r_i (the dfbeta identity behind the robust variance)."""
    x, t, e, w = _data(ties=tied)
    fit = CoxPH(ties=ties).fit(x, t, e, weights=w)
    resid = fit.score_residuals().to_numpy()
    V = fit.var_.to_numpy()
    h = 1e-6
    for i in [0, 7, 23, 41]:
        w2 = w.copy()
        w2[i] += h
        b2 = CoxPH(ties=ties).fit(x, t, e, weights=w2).coef_.to_numpy()
        np.testing.assert_allclose((b2 - fit.coef_.to_numpy()) / h, V @ resid[i], atol=2e-5)


def test_weighted_residuals_sum_to_score():
    x, t, e, w = _data()
    fit = CoxPH().fit(x, t, e, weights=w)
    np.testing.assert_allclose(fit.score_residuals(weighted=True).sum().to_numpy(), 0,
                               atol=1e-10)


def test_cluster_path_equals_residual_path():
    """Robust variance from the fast cluster sums = D'D from per-row residuals."""
    x, t, e, w = _data(n=80)
    cl = np.arange(80) // 2
    fit = CoxPH().fit(x, t, e, weights=w, cluster=cl)
    r = fit.score_residuals(weighted=True)
    D = r.groupby(cl).sum().to_numpy() @ fit.var_.to_numpy()
    np.testing.assert_allclose(fit.robust_var_.to_numpy(), D.T @ D, rtol=1e-12)
    assert fit.n_clusters_ == 40
    own = CoxPH().fit(x, t, e, weights=w, robust=True)
    D1 = r.to_numpy() @ fit.var_.to_numpy()
    np.testing.assert_allclose(own.robust_var_.to_numpy(), D1.T @ D1, rtol=1e-12)


def test_split_counting_rows_equal_unsplit():
    """(0, t] split at 2.5 into (0, 2.5], (2.5, t] with the same cluster gives the same fit."""
    x, t, e, w = _data(n=50)
    ids = np.arange(50)
    base = CoxPH().fit(x, t, e, weights=w, cluster=ids)
    long = t > 2.5
    start = np.concatenate([np.zeros(50), np.full(long.sum(), 2.5)])
    stop = np.concatenate([np.where(long, 2.5, t), t[long]])
    ev = np.concatenate([np.where(long, 0, e), e[long]])
    xs = np.vstack([x, x[long]])
    split = CoxPH().fit(xs, stop, ev, weights=np.concatenate([w, w[long]]), entry=start,
                        cluster=np.concatenate([ids, ids[long]]))
    np.testing.assert_allclose(split.coef_, base.coef_, rtol=1e-10)
    np.testing.assert_allclose(split.se_, base.se_, rtol=1e-10)
    np.testing.assert_allclose(split.robust_se_, base.robust_se_, rtol=1e-10)
    assert split.loglik_ == pytest.approx(base.loglik_, rel=1e-12)


def test_left_truncation_removes_rows_from_early_risk_sets():
    """Entry at 3: the row is not at risk at t = 1, as if it were absent there."""
    t = np.array([1.0, 2, 4, 5])
    e = np.array([1, 1, 1, 0])
    x = np.array([[0.0], [1], [1], [0]])
    fit = CoxPH().fit(x, t, e, entry=[0, 0, 3, 0])

    def ll(b):
        eb = math.exp(b)
        # t=1: rows 1, 2, 4 at risk (row 3 enters at 3); t=2: rows 2, 4; t=4: rows 3, 4
        return (0 - math.log(eb + 2)) + (b - math.log(eb + 1)) + (b - math.log(eb + 1))
    best = optimize.minimize_scalar(lambda b: -ll(b), bracket=(-1, 1), tol=1e-14)
    assert fit.coef_.iloc[0] == pytest.approx(best.x, abs=1e-7)


def test_timefix_merges_near_ties():
    a = CoxPH().fit(X[:, None], T, E)
    b = CoxPH().fit(X[:, None], T + np.array([0, 1e-12, 0, 0, 0]), E)
    assert a.coef_.iloc[0] == b.coef_.iloc[0]
    c = CoxPH(timefix=False).fit(X[:, None], T + np.array([0, 1e-12, 0, 0, 0]), E)
    assert c.coef_.iloc[0] != a.coef_.iloc[0]


def test_summary_and_attributes():
    x, t, e, w = _data()
    fit = CoxPH().fit(pd.DataFrame(x, columns=["age", "treated"]), t, e, cluster=np.arange(60) // 3)
    s = fit.summary
    assert list(s.columns) == ["coef", "hr", "se", "robust_se", "z", "p", "hr_lower", "hr_upper"]
    assert list(s.index) == ["age", "treated"]
    z = fit.coef_ / fit.robust_se_
    np.testing.assert_allclose(s["z"], z)
    np.testing.assert_allclose(s["hr_upper"], np.exp(fit.coef_ + 1.959963984540054 * fit.robust_se_))
    assert fit.n_ == 60 and fit.n_events_ == int(e.sum())
    stat, df, p = fit.likelihood_ratio_test()
    assert stat == pytest.approx(2 * (fit.loglik_ - fit.loglik_null_)) and df == 2


def test_zero_weight_rows_are_dropped():
    x, t, e, w = _data()
    w0 = w.copy()
    w0[:5] = 0
    a = CoxPH().fit(x, t, e, weights=w0)
    b = CoxPH().fit(x[5:], t[5:], e[5:], weights=w[5:])
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-13)


def test_input_errors():
    x, t, e, _ = _data()
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="column 'b'.*\\[3\\]"):
        CoxPH().fit(pd.DataFrame(bad, columns=["a", "b"]), t, e)
    with pytest.raises(ValueError, match="no events"):
        CoxPH().fit(x, t, np.zeros_like(e))
    with pytest.raises(ValueError, match="singular"):
        CoxPH().fit(np.column_stack([x[:, 0], x[:, 0]]), t, e)
    with pytest.raises(ValueError, match="0/1"):
        CoxPH().fit(x, t, e + 1)


def test_scales_to_many_rows_with_ties_and_pairs():
    """200k rows, pairs, 29 distinct times: runs and matches an exact-duplicate check."""
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.normal(size=(n, 3))
    tt = np.minimum(np.ceil(rng.exponential(20 / np.exp(x @ [0.3, -0.2, 0.1]))), 28.0)
    ev = (tt < 28).astype(int)
    fit = CoxPH().fit(x, tt, ev, cluster=np.arange(n) // 2)
    assert fit.converged_
    np.testing.assert_allclose(fit.coef_, [0.3, -0.2, 0.1], atol=0.02)
    assert np.all(fit.robust_se_ > 0)
