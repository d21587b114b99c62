"""Log-rank test, as R's ``survival::survdiff`` (``rho = 0``, no strata).

At every distinct event time with ``d`` deaths among ``n`` at risk (``n_g`` in group ``g``):
``E_g += d n_g / n`` and ``V_gh += d (n - d) / (n - 1) * n_g / n * (1[g=h] - n_h / n)``.
The statistic is ``(O - E)' V^- (O - E)`` over the groups with ``E > 0`` minus the first,
with ``k - 1`` degrees of freedom.  Times are merged as R's ``aeqSurv`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from hdank.km import _check_survival, aeq_surv

__all__ = ["LogrankResult", "logrank_test"]


@dataclass(frozen=True)
class LogrankResult:
    """Result of :func:`logrank_test`.

    Attributes
    ----------
    chisq, df, p : float, int, float
        Test statistic, degrees of freedom and p-value.
    table : DataFrame
        Per group: ``n, observed, expected``.
    var : ndarray
        Variance matrix of ``O - E`` (groups in ``table`` order).
    """

    chisq: float
    df: int
    p: float
    table: pd.DataFrame
    var: np.ndarray


def logrank_test(time, event, group, timefix: bool = True) -> LogrankResult:
    """Log-rank test of equal survival across groups.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and 0/1 event indicator (right-censored data).
    group : array-like
        Group of each row (two or more distinct values).
    timefix : bool
        Merge times equal up to rounding error, as R.

    Returns
    -------
    LogrankResult
    """
    time, event, _, _ = _check_survival(time, event)
    if timefix:
        time, _ = aeq_surv(time)
    group = np.asarray(group)
    levels, codes = np.unique(group, return_inverse=True)
    k = levels.size
    if k < 2:
        raise ValueError("logrank_test needs at least two groups")
    utimes, inv = np.unique(time, return_inverse=True)
    m = utimes.size
    # at risk per time and group: reverse cumulative counts
    cnt = np.zeros((m, k))
    np.add.at(cnt, (inv, codes), 1.0)
    at_risk_g = np.cumsum(cnt[::-1], axis=0)[::-1]
    deaths_g = np.zeros((m, k))
    np.add.at(deaths_g, (inv, codes), event.astype(float))
    n = at_risk_g.sum(axis=1)
    d = deaths_g.sum(axis=1)
    keep = d > 0
    n, d, ng = n[keep], d[keep], at_risk_g[keep]
    frac = ng / n[:, None]
    expected = (d[:, None] * frac).sum(axis=0)
    observed = deaths_g.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(n > 1, d * (n - d) / (n - 1), 0.0)
    var = np.diag((c[:, None] * frac).sum(axis=0)) - (c[:, None] * frac).T @ frac
    use = expected > 0
    if use.sum() < 2:
        chisq = 0.0
    else:
        o_e = (observed - expected)[use][1:]
        vv = var[np.ix_(use, use)][1:, 1:]
        chisq = float(o_e @ np.linalg.solve(vv, o_e))
    df = int(use.sum()) - 1
    p = float(stats.chi2.sf(chisq, df)) if df > 0 else float("nan")
    table = pd.DataFrame({"group": levels, "n": np.bincount(codes, minlength=k),
                          "observed": observed, "expected": expected})
    return LogrankResult(chisq=chisq, df=df, p=p, table=table, var=var)
