"""Test of proportional hazards, as ``cox.zph`` in R's survival 3 (not the pre-2019 version).

survival 3 replaced the old approximation (correlation of scaled Schoenfeld residuals with
time, using the model variance) by a proper score test (Therneau, ``zph1.c``): the model is
extended with ``x * g(t)`` for a centred transform ``g`` of time, and the score test of the
added coefficients is computed at ``(beta_hat, 0)`` with the **full** ``2p x 2p`` information
matrix of the extended model::

    u  = (0, sum_j g_j U_j)                       U_j = score contribution of event time j
    I  = [[sum I_j, sum g_j I_j], [., sum g_j^2 I_j]]
    test(term) = u_k' I_kk^{-1} u_k  over k = (all x, the term's x*g columns)
    GLOBAL     = u' I^{-1} u, df = p

With ``transform="km"``, ``g(t) = 1 - S(t-)`` from the unweighted Kaplan-Meier of all rows,
centred by its mean over the event rows.  Lifelines' ``proportional_hazard_test`` is the
pre-2019 approximation and differs from this.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from hdank.cox import CoxPH
from hdank.km import KaplanMeier

__all__ = ["cox_zph"]


def _transform_time(prob, transform: str) -> np.ndarray:
    """g(t_j) at each distinct event time of the fit."""
    tj = prob.ev_times
    if transform == "identity":
        return tj.copy()
    if transform == "log":
        return np.log(tj)
    if transform == "rank":
        ranks = stats.rankdata(prob.time)
        first = np.searchsorted(np.sort(prob.time), tj)  # any row with time t_j
        return np.sort(ranks)[first]
    if transform == "km":
        km = KaplanMeier(timefix=False).fit(prob.time, prob.event, entry=prob.entry,
                                            robust=False)
        tab = km.table_
        # left-continuous KM: S(t-) = value at the last table time strictly below t
        idx = np.searchsorted(tab["time"].to_numpy(), tj, side="left")
        return 1.0 - np.concatenate([[1.0], tab["surv"].to_numpy()])[idx]
    raise ValueError(f"transform must be 'km', 'identity', 'log' or 'rank', not {transform!r}")


def cox_zph(model: CoxPH, transform: str = "km",
            terms: Mapping[str, Sequence[str]] | None = None,
            global_test: bool = True) -> pd.DataFrame:
    """Score test of proportional hazards per term and globally (survival 3 ``cox.zph``).

    Parameters
    ----------
    model : CoxPH
        A fitted model (its data are kept by the fit).
    transform : {"km", "identity", "log", "rank"}
        Transform of time.
    terms : mapping, optional
        Term name -> the columns that form it (e.g. the one-hot columns of a categorical
        covariate), tested jointly as R does for factors.  Default: one term per column.
    global_test : bool
        Add the ``GLOBAL`` row.

    Returns
    -------
    DataFrame
        Columns ``term, chisq, df, p``.
    """
    prob = model._problem
    t = model._terms
    names = list(model.names_)
    p = len(names)
    g = _transform_time(prob, transform)
    g = g - (prob.d @ g) / prob.d.sum()  # centred over the event rows, as R
    Uj = prob.score_by_time(t)
    u = np.concatenate([np.zeros(p), g @ Uj])
    I11 = prob.information(t)
    I12 = prob.information(t, factor=g)
    I22 = prob.information(t, factor=g * g)
    imat = np.block([[I11, I12], [I12.T, I22]])
    if terms is None:
        terms = {name: [name] for name in names}

    def score_test(mat: np.ndarray, vec: np.ndarray) -> float:
        try:
            return float(np.linalg.solve(mat, vec) @ vec)
        except np.linalg.LinAlgError:  # e.g. a single event time: g(t) is constant
            warnings.warn("cox_zph: singular information matrix; test not defined",
                          RuntimeWarning, stacklevel=3)
            return float("nan")

    rows = []
    for term, cols in terms.items():
        jj = [names.index(c) for c in cols]
        kk = list(range(p)) + [p + j for j in jj]
        sub = imat[np.ix_(kk, kk)]
        chisq = score_test(sub, u[kk])
        rows.append({"term": term, "chisq": chisq, "df": len(jj),
                     "p": float(stats.chi2.sf(chisq, len(jj)))})
    if global_test:
        chisq = score_test(imat, u)
        rows.append({"term": "GLOBAL", "chisq": chisq, "df": p,
                     "p": float(stats.chi2.sf(chisq, p))})
    return pd.DataFrame(rows, columns=["term", "chisq", "df", "p"])
