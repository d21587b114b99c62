"""Cox proportional-hazards regression, numerically as R's ``survival::coxph``.

Why not lifelines or statsmodels: lifelines' clustered robust variance ignores tied event times
and is quadratic in ``n``, and its default convergence leaves hazard ratios ~1e-5 away from R;
statsmodels' ``PHReg`` builds its robust variance from Breslow-form residuals even with Efron
ties.  This module computes everything from the exact Efron (or Breslow) partial likelihood:

* **Likelihood.**  Rows are sorted once by time.  At each distinct event time ``t_j`` with
  ``d_j`` deaths, risk-set sums ``S0 = sum w e^eta``, ``S1 = sum w e^eta x`` come from reverse
  cumulative sums over the time-ordered groups (minus rows not yet entered for
  ``(entry, time]`` data).  Efron's approximation replaces the ``d_j`` deaths by ``d_j`` terms
  ``k = 0..d_j-1`` with denominators ``S0 - k/d_j D0`` (``D0`` = the deaths' sum) and weight
  ``mean death weight`` each, exactly as ``coxfit6.c``/``agfit4.c``.
* **Information matrix** without per-risk-set ``p x p`` sums: the ``S2/den`` part is
  ``X' diag(w e^eta C_i) X`` where ``C_i`` accumulates ``mw/den`` over the event times at which
  row ``i`` is at risk; the mean part is ``M'M`` over the Efron terms.  Cost ``O(n p^2)``.
* **Newton-Raphson** from ``beta = 0`` with R's rule (stop when
  ``|1 - loglik_old/loglik_new| <= eps``, step halving when the likelihood decreases), then one
  more Newton step from the converged point (``final_step``), so that the result is the
  maximiser to ~1e-12 rather than to R's stopping tolerance.
* **Robust variance**: Efron-exact score residuals (``coxscore2.c``/``agscore2.c``) times the
  case weight, summed within clusters, times the model variance (dfbeta); the sandwich is
  ``D'D`` (``coxph(..., cluster=)``, or ``robust=TRUE`` with one cluster per row).

Times equal up to rounding error are merged first (R's ``timefix=TRUE``, see
:func:`hdank.km.aeq_surv`).  Rows with zero weight are dropped before fitting.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse
from scipy import stats

from hdank.km import aeq_surv

__all__ = ["CoxPH", "ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """Newton-Raphson did not meet the convergence criterion."""


def _revcumsum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1], axis=0)[::-1]


class _Aggregator:
    """Sum rows of an ``n x q`` array into groups: a CSR matrix of fixed structure whose
    data (per-row multipliers) change between calls.  Much faster than fancy indexing."""

    def __init__(self, keys: np.ndarray, n_groups: int, rows: np.ndarray | None = None,
                 columns: np.ndarray | None = None, n_rows: int | None = None):
        perm = np.argsort(keys, kind="stable")
        self.perm = perm
        src = perm if rows is None else rows[perm]
        self.indices = (src if columns is None else columns[src]).astype(np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_groups))])
        self.rows = rows
        self.shape = (n_groups, n_rows if n_rows is not None else keys.size)

    def matrix(self, values: np.ndarray) -> scipy.sparse.csr_matrix:
        """Sparse matrix with ``values`` (one per listed row, in row order) as entries."""
        v = values[self.perm] if self.rows is None else values[self.rows[self.perm]]
        return scipy.sparse.csr_matrix((v, self.indices, self.indptr), shape=self.shape)


def _rowsel(values: np.ndarray, cols: np.ndarray, ncols: int) -> scipy.sparse.csr_matrix:
    """``n x ncols`` matrix with ``values[i]`` at ``(i, cols[i])``: picks a row of a small
    per-event-time array for every observation, scaled."""
    n = values.size
    return scipy.sparse.csr_matrix((values, cols, np.arange(n + 1)), shape=(n, ncols))


class _CoxProblem:
    """Index structures of one Cox fit (internal).

    Rows stay in input order.  Each row is located by ``pos_stop`` = number of event times
    <= its time (and ``pos_entry`` for counting-process rows); risk-set sums at event time
    ``t_j`` are reverse cumulative sums of the per-group sums.  All Efron terms ``(j, k)``
    enter only through per-event-time scalar sums (``sum_k mw/den``, ``sum_k mw f/den^2``,
    ...), so an iteration costs two passes over the ``n x p`` data plus ``O(#deaths)``
    scalar operations.
    """

    def __init__(self, X: np.ndarray, time: np.ndarray, event: np.ndarray, weights: np.ndarray,
                 entry: np.ndarray | None, ties: str):
        self.time, self.event, self.w, self.entry = time, event, weights, entry
        self.means = (weights @ X) / weights.sum()
        self.X = X - self.means
        X = self.X
        self.n, self.p = X.shape
        dead = np.flatnonzero(event == 1)
        if dead.size == 0:
            raise ValueError("no events: a Cox model cannot be fitted")
        self.dead = dead
        self.ev_times = np.unique(time[dead])
        J = self.J = self.ev_times.size
        self.pos_stop = np.searchsorted(self.ev_times, time, side="right")
        self.agg_stop = _Aggregator(self.pos_stop, J + 1)
        if entry is not None:
            self.pos_entry = np.searchsorted(self.ev_times, entry, side="right")
            self.agg_entry = _Aggregator(self.pos_entry, J + 1)
        else:
            self.pos_entry = None
        self.jd = self.pos_stop[dead] - 1
        self.agg_dead = _Aggregator(self.jd, J, rows=dead, n_rows=self.n)
        self.d = np.bincount(self.jd, minlength=J).astype(float)
        self.ties = ties
        if ties == "efron":
            di = self.d.astype(np.intp)
            starts = np.concatenate([[0], np.cumsum(di)[:-1]])
            self.jj = np.repeat(np.arange(J), di)
            k = np.arange(dead.size) - np.repeat(starts, di)
            self.f = k / self.d[self.jj]
            self.d_eff = self.d
        elif ties == "breslow":
            self.jj = np.arange(J)
            self.f = np.zeros(J)
            self.d_eff = np.ones(J)
        else:
            raise ValueError(f"ties must be 'efron' or 'breslow', not {ties!r}")
        self.wdead = weights[dead]
        self.Dw = np.bincount(self.jd, weights=self.wdead, minlength=J)
        self.WX = np.asarray(self.agg_dead.matrix(weights) @ X)
        self.wx_dead = self.WX.sum(axis=0)
        # event-time index of each row's own death (0 for censored rows, unused)
        self.jrow = np.maximum(self.pos_stop - 1, 0)
        self.ev = event.astype(float)

    def _sum_k(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.jj, weights=values, minlength=self.J)

    def _cum_at(self, cum: np.ndarray) -> np.ndarray:
        """``cum`` (leading-zero cumulative array over event times) over each row's at-risk
        event times: ``cum[#event times <= time] - cum[#event times <= entry]``."""
        out = cum[self.pos_stop]
        if self.pos_entry is not None:
            out = out - cum[self.pos_entry]
        return out

    def terms(self, beta: np.ndarray) -> dict:
        """Efron terms at ``beta``: risk-set sums and per-event-time scalar sums."""
        X = self.X
        eta = X @ beta
        shift = float(eta.max()) if np.abs(eta).max() > 500 else 0.0
        e = np.exp(eta - shift)
        r = self.w * e
        J = self.J
        S1 = _revcumsum(np.asarray(self.agg_stop.matrix(r) @ X))[1:]
        S0 = _revcumsum(np.bincount(self.pos_stop, weights=r, minlength=J + 1))[1:]
        if self.pos_entry is not None:
            S1 = S1 - _revcumsum(np.asarray(self.agg_entry.matrix(r) @ X))[1:]
            S0 = S0 - _revcumsum(np.bincount(self.pos_entry, weights=r, minlength=J + 1))[1:]
        D1 = np.asarray(self.agg_dead.matrix(r) @ X)
        D0 = np.bincount(self.jd, weights=r[self.dead], minlength=J)
        jj, f = self.jj, self.f
        mw = self.Dw / self.d_eff
        den = S0[jj] - f * D0[jj]
        mwk = mw[jj]
        q1 = mwk / den
        q2 = q1 / den
        sk = self._sum_k
        a, b = sk(q1), sk(q1 * f)
        alpha, beta2, gamma = sk(q2), sk(q2 * f), sk(q2 * f * f)
        loglik = float(self.wdead @ eta[self.dead] - mwk @ (np.log(den) + shift))
        U = self.wx_dead - (a @ S1 - b @ D1)
        return {"eta": eta, "e": e, "r": r, "S1": S1, "D1": D1, "den": den,
                "a": a, "b": b, "alpha": alpha, "beta": beta2, "gamma": gamma,
                "loglik": loglik, "U": U}

    def information(self, t: dict, factor: np.ndarray | None = None) -> np.ndarray:
        """Information matrix; with ``factor`` (one value per event time) the sum of the
        per-event-time contributions multiplied by ``factor`` (used by the zph test)."""
        a, b = t["a"], t["b"]
        alpha, beta2, gamma = t["alpha"], t["beta"], t["gamma"]
        if factor is not None:
            a, b = a * factor, b * factor
            alpha, beta2, gamma = alpha * factor, beta2 * factor, gamma * factor
        cumA = np.concatenate([[0.0], np.cumsum(a)])
        v = t["r"] * (self._cum_at(cumA) - self.ev * b[self.jrow])
        X = self.X
        I1 = (X * v[:, None]).T @ X
        S1, D1 = t["S1"], t["D1"]
        cross = (S1 * beta2[:, None]).T @ D1
        I2 = (S1 * alpha[:, None]).T @ S1 - cross - cross.T + (D1 * gamma[:, None]).T @ D1
        out = I1 - I2
        return (out + out.T) / 2

    def score_by_time(self, t: dict) -> np.ndarray:
        """Score contribution of each event time (J x p)."""
        return self.WX - (t["S1"] * t["a"][:, None] - t["D1"] * t["b"][:, None])

    def _residual_parts(self, t: dict):
        """Score residual of row i = s_i x_i + e_i CHM(i) - ev_i (MB_j + e_i dHM_j)."""
        S1, D1 = t["S1"], t["D1"]
        a, b = t["a"], t["b"]
        alpha, beta2, gamma = t["alpha"], t["beta"], t["gamma"]
        den = t["den"]
        # mean of the Efron means, (1/d) sum_k (S1 - f D1)/den
        a0 = self._sum_k(1.0 / den)
        b0 = self._sum_k(self.f / den)
        MB = (S1 * a0[:, None] - D1 * b0[:, None]) / self.d_eff[:, None]
        HM = S1 * alpha[:, None] - D1 * beta2[:, None]          # sum_k h mean
        dHM = S1 * beta2[:, None] - D1 * gamma[:, None]         # sum_k h f mean
        cumH = np.concatenate([[0.0], np.cumsum(a)])
        cumHM = np.vstack([np.zeros((1, self.p)), np.cumsum(HM, axis=0)])
        e, ev = t["e"], self.ev
        s = -e * self._cum_at(cumH) + ev * (1.0 + e * b[self.jrow])
        return s, e, cumHM, MB, dHM

    def score_residuals(self, t: dict) -> np.ndarray:
        """Unweighted Efron score residuals (input order), as coxscore2.c / agscore2.c."""
        s, e, cumHM, MB, dHM = self._residual_parts(t)
        J, ev = self.J, self.ev
        resid = self.X * s[:, None]
        resid += _rowsel(e, self.pos_stop, J + 1) @ cumHM
        if self.pos_entry is not None:
            resid -= _rowsel(e, self.pos_entry, J + 1) @ cumHM
        resid -= _rowsel(ev, self.jrow, J) @ MB
        resid -= _rowsel(ev * e, self.jrow, J) @ dHM
        return resid

    def cluster_scores(self, t: dict, codes: np.ndarray, n_clusters: int) -> np.ndarray:
        """Weighted score residuals summed within clusters (K x p), without n x p temporaries."""
        s, e, cumHM, MB, dHM = self._residual_parts(t)
        J, ev, w = self.J, self.ev, self.w
        by_row = _Aggregator(codes, n_clusters)
        out = np.asarray(by_row.matrix(w * s) @ self.X)
        we = w * e
        out += np.asarray(_Aggregator(codes, n_clusters, columns=self.pos_stop,
                                      n_rows=J + 1).matrix(we) @ cumHM)
        if self.pos_entry is not None:
            out -= np.asarray(_Aggregator(codes, n_clusters, columns=self.pos_entry,
                                          n_rows=J + 1).matrix(we) @ cumHM)
        by_death = _Aggregator(codes, n_clusters, columns=self.jrow, n_rows=J)
        out -= np.asarray(by_death.matrix(w * ev) @ MB)
        out -= np.asarray(by_death.matrix(we * ev) @ dHM)
        return out


def _solve_pd(I: np.ndarray, U: np.ndarray) -> np.ndarray:
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(I), U)
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return np.linalg.lstsq(I, U, rcond=None)[0]


class CoxPH:
    """Cox proportional-hazards model (Efron ties by default), matching R's ``coxph``.

    Parameters
    ----------
    ties : {"efron", "breslow"}
        Handling of tied event times.
    alpha : float
        1 - level of the confidence intervals.
    eps : float
        Convergence: relative change of the log partial likelihood (R's ``eps``, 1e-9).
    max_iter : int
        Maximum Newton-Raphson iterations (R's ``iter.max``, 20).
    final_step : bool
        Take one more Newton step after convergence (recommended; R does not).
    timefix : bool
        Merge times equal up to rounding error (R's ``timefix=TRUE``).

    Attributes
    ----------
    coef_ : Series
        Log hazard ratios.
    var_ : DataFrame
        Model-based (inverse information) variance.
    robust_var_ : DataFrame or None
        Sandwich variance from weighted score residuals summed within clusters.
    se_, robust_se_ : Series
        Standard errors (``robust_se_`` is None without robust variance).
    hr_, hr_ci_ : Series, DataFrame
        Hazard ratios and their confidence limits (``lower``, ``upper``), using the robust
        variance when it was requested.
    z_, p_ : Series
        Wald statistics and two-sided p-values (robust when requested).
    loglik_, loglik_null_ : float
        Log partial likelihood at the estimate and at ``beta = 0``.
    score_test_ : float
        Score (log-rank) test at ``beta = 0`` (model-based).
    n_, n_events_, weighted_events_ : int, int, float
        Rows used, events, sum of the event weights.
    n_clusters_ : int or None
        Number of clusters of the robust variance.
    n_iter_, converged_ : int, bool
        Newton-Raphson iterations and convergence flag.
    means_ : Series
        Weighted covariate means used for centring.
    """

    def __init__(self, ties: str = "efron", alpha: float = 0.05, eps: float = 1e-9,
                 max_iter: int = 20, final_step: bool = True, timefix: bool = True):
        self.ties = ties
        self.alpha = alpha
        self.eps = eps
        self.max_iter = max_iter
        self.final_step = final_step
        self.timefix = timefix

    # ------------------------------------------------------------------ fit
    def fit(self, X, time, event, weights=None, cluster=None, robust: bool = False,
            entry=None) -> "CoxPH":
        """Fit the model.

        Parameters
        ----------
        X : DataFrame or 2-d array (n x p)
            Covariates (numeric, no missing values).
        time : array-like
            Event or censoring time (the stop time of ``(entry, time]`` rows).
        event : array-like
            1 = event, 0 = censored.
        weights : array-like, optional
            Case weights (>= 0; zero-weight rows are dropped).
        cluster : array-like, optional
            Cluster of each row; implies a robust variance summed within clusters.
        robust : bool
            Robust (sandwich) variance with one cluster per row when ``cluster`` is None.
        entry : array-like, optional
            Entry times of counting-process data (left truncation / time-varying weights).

        Returns
        -------
        self
        """
        names, Xa = self._matrix(X)
        time = np.asarray(time, dtype=float).ravel()
        n = time.size
        if Xa.shape[0] != n:
            raise ValueError(f"X has {Xa.shape[0]} rows but time has {n}")
        event = np.asarray(event, dtype=float).ravel()
        if event.size != n or not np.all(np.isin(event, (0.0, 1.0))):
            raise ValueError("event must be 0/1 with one value per row")
        if not np.all(np.isfinite(time)):
            raise ValueError(f"time must be finite; first offending rows: "
                             f"{np.flatnonzero(~np.isfinite(time))[:5].tolist()}")
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=float).ravel()
        if w.size != n or np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite, >= 0, one per row")
        if entry is not None:
            entry = np.asarray(entry, dtype=float).ravel()
            if entry.size != n or np.any(entry >= time):
                raise ValueError("entry must be < time, one per row")
        cl = None if cluster is None else np.asarray(cluster).ravel()
        if cl is not None and cl.size != n:
            raise ValueError("cluster must have one value per row")
        if cl is not None and pd.isna(cl).any():
            raise ValueError(f"cluster is missing in rows {np.flatnonzero(pd.isna(cl))[:5].tolist()}")
        keep = w > 0
        if not keep.all():
            Xa, time, event, w = Xa[keep], time[keep], event[keep], w[keep]
            entry = None if entry is None else entry[keep]
            cl = None if cl is None else cl[keep]
        if self.timefix:
            time, entry = aeq_surv(time, entry)
        event = event.astype(np.int8)
        prob = _CoxProblem(Xa, time, event, w, entry, self.ties)
        self._problem = prob
        self.names_ = names

        beta = np.zeros(prob.p)
        t = prob.terms(beta)
        I = prob.information(t)
        self.loglik_null_ = t["loglik"]
        step0 = _solve_pd(I, t["U"])
        self.score_test_ = float(t["U"] @ step0)
        best = t["loglik"]
        newbeta = beta + step0
        halving = 0
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):
            t = prob.terms(newbeta)
            ll = t["loglik"]
            finite = np.isfinite(ll) and np.all(np.isfinite(t["U"]))
            if finite:
                I = prob.information(t)
                finite = bool(np.all(np.isfinite(I)))
            if finite and abs(1 - best / ll) <= self.eps:
                beta = newbeta
                converged = True
                break
            if not finite or ll < best:
                halving += 1
                newbeta = (newbeta + halving * beta) / (halving + 1.0)
            else:
                halving = 0
                best = ll
                beta = newbeta
                newbeta = beta + _solve_pd(I, t["U"])
        if not converged:
            warnings.warn(f"Cox fit did not converge in {self.max_iter} iterations",
                          ConvergenceWarning, stacklevel=2)
            t = prob.terms(beta)
            I = prob.information(t)
        elif self.final_step:
            trial = beta + _solve_pd(I, t["U"])
            t2 = prob.terms(trial)
            if np.isfinite(t2["loglik"]) and t2["loglik"] >= t["loglik"] - 1e-12 * abs(t["loglik"]):
                beta, t = trial, t2
                I = prob.information(t)
        self.n_iter_ = it
        self.converged_ = converged
        self._terms = t
        self.loglik_ = t["loglik"]
        try:
            var = scipy.linalg.cho_solve(scipy.linalg.cho_factor(I), np.eye(prob.p))
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            const = [names[j] for j in range(prob.p) if np.ptp(prob.X[:, j]) == 0]
            raise ValueError("the information matrix is singular: covariates are collinear "
                             f"or constant (constant: {const}); drop redundant columns") from None
        var = (var + var.T) / 2
        self.coef_ = pd.Series(beta, index=names, name="coef")
        self.var_ = pd.DataFrame(var, index=names, columns=names)
        self.means_ = pd.Series(prob.means, index=names)
        self.n_ = int(prob.n)
        self.n_events_ = int(prob.dead.size)
        self.weighted_events_ = float(prob.wdead.sum())
        self.robust_ = bool(robust or cl is not None)
        if self.robust_:
            if cl is None:
                collapsed = prob.score_residuals(t) * prob.w[:, None]
                self.n_clusters_ = prob.n
            else:
                codes, uniq = pd.factorize(cl)
                collapsed = prob.cluster_scores(t, codes, uniq.size)
                self.n_clusters_ = int(uniq.size)
            D = collapsed @ var
            rv = D.T @ D
            self.robust_var_ = pd.DataFrame((rv + rv.T) / 2, index=names, columns=names)
        else:
            self.robust_var_ = None
            self.n_clusters_ = None
        self._finish()
        return self

    @staticmethod
    def _matrix(X) -> tuple[list[str], np.ndarray]:
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            arr = X.to_numpy(dtype=float, na_value=np.nan)
        elif isinstance(X, pd.Series):
            names = [str(X.name) if X.name is not None else "x0"]
            arr = X.to_numpy(dtype=float, na_value=np.nan)[:, None]
        else:
            arr = np.asarray(X, dtype=float)
            if arr.ndim == 1:
                arr = arr[:, None]
            names = [f"x{j}" for j in range(arr.shape[1])]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError("X must have at least one column")
        bad = ~np.isfinite(arr)
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise ValueError(f"X has missing or infinite values in column {names[cols[0]]!r}; "
                             f"first offending rows: {rows[:5].tolist()}")
        return names, np.ascontiguousarray(arr)

    def _finish(self) -> None:
        se = np.sqrt(np.diag(self.var_.to_numpy()))
        self.se_ = pd.Series(se, index=self.names_, name="se")
        if self.robust_var_ is not None:
            rse = np.sqrt(np.diag(self.robust_var_.to_numpy()))
            self.robust_se_ = pd.Series(rse, index=self.names_, name="robust_se")
            use = rse
        else:
            self.robust_se_ = None
            use = se
        z = self.coef_.to_numpy() / use
        zq = stats.norm.ppf(1 - self.alpha / 2)
        self.z_ = pd.Series(z, index=self.names_, name="z")
        self.p_ = pd.Series(2 * stats.norm.sf(np.abs(z)), index=self.names_, name="p")
        self.hr_ = pd.Series(np.exp(self.coef_.to_numpy()), index=self.names_, name="hr")
        self.hr_ci_ = pd.DataFrame({"lower": np.exp(self.coef_.to_numpy() - zq * use),
                                    "upper": np.exp(self.coef_.to_numpy() + zq * use)},
                                   index=self.names_)

    # ---------------------------------------------------------------- results
    @property
    def summary(self) -> pd.DataFrame:
        """One row per covariate: coef, hr, se, robust_se, z, p, hr_lower, hr_upper."""
        return pd.DataFrame({
            "coef": self.coef_, "hr": self.hr_, "se": self.se_,
            "robust_se": self.robust_se_ if self.robust_se_ is not None else np.nan,
            "z": self.z_, "p": self.p_,
            "hr_lower": self.hr_ci_["lower"], "hr_upper": self.hr_ci_["upper"],
        })

    @property
    def variance_(self) -> pd.DataFrame:
        """The variance used for inference: robust if requested, else model-based."""
        return self.robust_var_ if self.robust_var_ is not None else self.var_

    def score_residuals(self, weighted: bool = False) -> pd.DataFrame:
        """Score residuals in input row order (zero-weight rows dropped), as R's
        ``residuals(fit, type="score", weighted=)``."""
        prob = self._problem
        resid = prob.score_residuals(self._terms)
        if weighted:
            resid = resid * prob.w[:, None]
        return pd.DataFrame(resid, columns=self.names_)

    def likelihood_ratio_test(self) -> tuple[float, int, float]:
        """``(statistic, df, p)`` of the likelihood-ratio test against ``beta = 0``."""
        stat = 2 * (self.loglik_ - self.loglik_null_)
        df = len(self.names_)
        return stat, df, float(stats.chi2.sf(stat, df))
