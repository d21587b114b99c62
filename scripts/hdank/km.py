"""Kaplan-Meier estimation as R's ``survival::survfit`` computes it.

Right-censored data ``(time, event)`` or counting-process data ``(entry, time, event]``,
optional case weights, and two variances:

* **Greenwood** (the default for unweighted or integer-weighted data):
  ``var(log S(t)) = sum d / (n (n - d))`` over event times up to ``t``, with weighted ``n`` and
  ``d`` when weights are given.
* **Infinitesimal jackknife** (``robust=True``; R's default when the weights are not integers
  or a cluster is given): the exact derivative of ``S(t)`` with respect to each case weight,
  multiplied by the weight and summed within clusters, ``var = sum_k (sum_{i in k} w_i dS/dw_i)^2``.

Confidence intervals follow ``survfit(conf.type="log-log")``: on ``log(-log S)``, missing
where ``S`` is 0 or 1.  Times equal up to floating-point noise are merged first, exactly as
R's ``aeqSurv`` (``timefix=TRUE``) does, so that e.g. ``2/24`` computed two ways is one time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "aeq_surv",
    "KaplanMeier",
    "km_by_group",
    "at_risk_table",
    "risk_difference",
    "RiskEstimate",
]

_TOL = float(np.sqrt(np.finfo(float).eps))


def aeq_surv(time: np.ndarray, entry: np.ndarray | None = None,
             tolerance: float = _TOL) -> tuple[np.ndarray, np.ndarray | None]:
    """Merge times that differ only by rounding error, as R's ``aeqSurv``.

    Distinct values of ``time`` (and ``entry``) closer than ``tolerance`` in absolute terms,
    or relative to the mean absolute time, are replaced by the smallest of the run.

    Parameters
    ----------
    time : array of float
        Event or censoring times.
    entry : array of float, optional
        Entry (left-truncation) times of counting-process data.
    tolerance : float
        ``sqrt(machine epsilon)`` as in R.

    Returns
    -------
    time, entry : arrays
        The corrected copies (``entry`` is ``None`` if not given).
    """
    time = np.asarray(time, dtype=float)
    values = time if entry is None else np.concatenate([time, np.asarray(entry, float)])
    y = np.unique(values[np.isfinite(values)])
    if y.size < 2:
        return time.copy(), None if entry is None else np.asarray(entry, float).copy()
    dy = np.diff(y)
    tied = (dy <= tolerance) | (dy / np.mean(np.abs(y)) <= tolerance)
    if not tied.any():
        return time.copy(), None if entry is None else np.asarray(entry, float).copy()
    cuts = y[np.concatenate([[True], ~tied])]

    def fix(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        ok = np.isfinite(x)
        out[ok] = cuts[np.searchsorted(cuts, x[ok], side="right") - 1]
        return out

    new_time = fix(time)
    if entry is None:
        return new_time, None
    new_entry = fix(np.asarray(entry, float))
    if np.any((new_entry == new_time) & (np.asarray(entry, float) != time)):
        raise ValueError("aeq_surv: an (entry, time] interval has effective length 0")
    return new_time, new_entry


def _as_float(x, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has length {arr.size}, expected {n}")
    return arr


def _check_survival(time, event, weights=None, entry=None):
    time = _as_float(time, "time")
    n = time.size
    event = _as_float(event, "event", n)
    if not np.all(np.isin(event, (0.0, 1.0))):
        bad = np.flatnonzero(~np.isin(event, (0.0, 1.0)))[:5]
        raise ValueError(f"event must be 0/1; first offending rows (0-based): {bad.tolist()}")
    if not np.all(np.isfinite(time)):
        bad = np.flatnonzero(~np.isfinite(time))[:5]
        raise ValueError(f"time must be finite; first offending rows (0-based): {bad.tolist()}")
    weights = np.ones(n) if weights is None else _as_float(weights, "weights", n)
    if np.any(~np.isfinite(weights)) or np.any(weights < 0):
        bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))[:5]
        raise ValueError(f"weights must be finite and >= 0; first offending rows: {bad.tolist()}")
    if entry is not None:
        entry = _as_float(entry, "entry", n)
        if np.any(entry >= time):
            bad = np.flatnonzero(entry >= time)[:5]
            raise ValueError(f"entry must be < time; first offending rows: {bad.tolist()}")
    return time, event.astype(np.int8), weights, entry


def _loglog_ci(surv: np.ndarray, se_log: np.ndarray, conf_level: float):
    """``survfit_confint(conf.type="log-log")``: NaN where surv is 0 or 1."""
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    xx = np.where((surv == 0) | (surv == 1), np.nan, surv)
    with np.errstate(divide="ignore", invalid="ignore"):
        se2 = z * se_log / np.log(xx)
        lower = np.exp(-np.exp(np.log(-np.log(xx)) - se2))
        upper = np.exp(-np.exp(np.log(-np.log(xx)) + se2))
    return lower, upper


@dataclass(frozen=True)
class RiskEstimate:
    """Cumulative risk ``1 - S(t)`` at a horizon with its standard error and CI."""

    time: float
    risk: float
    se: float
    lower: float
    upper: float
    variance: str


class KaplanMeier:
    """Kaplan-Meier estimator with log-log CI, matching ``survival::survfit``.

    Parameters
    ----------
    conf_level : float
        Level of the pointwise confidence intervals.
    conf_type : {"log-log", "log", "plain"}
        Scale of the intervals (R's ``conf.type``).
    timefix : bool
        Merge times equal up to rounding error, as R's ``timefix=TRUE``.

    Attributes
    ----------
    table_ : DataFrame
        One row per distinct time: ``time, n_risk, n_event, n_censor, surv, std_err``
        (standard error of ``log S``), ``lower, upper``.  Weighted counts if weighted.
    variance_ : str
        ``"greenwood"`` or ``"ij"`` (infinitesimal jackknife).
    n_ : float
        Number of observations (rows) used.
    """

    def __init__(self, conf_level: float = 0.95, conf_type: str = "log-log", timefix: bool = True):
        self.conf_level = conf_level
        self.conf_type = conf_type
        self.timefix = timefix

    def fit(self, time, event, weights=None, entry=None, cluster=None,
            robust: bool | None = None, id=None) -> "KaplanMeier":
        """Fit the survival curve.

        Parameters
        ----------
        time, event : array-like
            Follow-up time and 0/1 event indicator.
        weights : array-like, optional
            Case weights (>= 0).
        entry : array-like, optional
            Entry times for counting-process ``(entry, time]`` rows.
        cluster : array-like, optional
            Cluster of each row (e.g. patient id of split rows); implies ``robust``.
        robust : bool, optional
            Infinitesimal-jackknife variance.  Default as R: true when a cluster is given
            or a weight is not an integer.
        id : array-like, optional
            Subject of each row of split ``(entry, time]`` data: as R's ``id``, only the last
            row of a subject counts as a censoring in ``n_censor`` (estimates unchanged).

        Returns
        -------
        self
        """
        time, event, weights, entry = _check_survival(time, event, weights, entry)
        if self.timefix:
            time, entry = aeq_surv(time, entry)
        has_rwt = bool(np.any(weights != np.floor(weights)))
        if robust is None:
            robust = cluster is not None or has_rwt
        if robust:
            if cluster is None:
                cluster_codes = np.arange(time.size)
                labels = np.arange(time.size)
            else:
                cluster_codes, labels = pd.factorize(np.asarray(cluster), sort=True)
        self._time, self._event, self._weights, self._entry = time, event, weights, entry

        utimes, inv = np.unique(time, return_inverse=True)
        n_risk = np.bincount(inv, weights=weights, minlength=utimes.size)
        n_risk = np.cumsum(n_risk[::-1])[::-1]
        if entry is not None:
            # rows with entry >= t_m are not yet at risk at t_m:
            # entry >= t_m  <=>  (number of times <= entry) > m
            pos_r = np.searchsorted(utimes, entry, side="right")
            not_yet = np.bincount(pos_r, weights=weights, minlength=utimes.size + 1)
            not_yet = np.cumsum(not_yet[::-1])[::-1][1:]
            n_risk = n_risk - not_yet
        n_event = np.bincount(inv, weights=weights * event, minlength=utimes.size)
        real_censor = 1 - event
        if id is not None:
            last = pd.Series(time).groupby(np.asarray(id)).transform("max").to_numpy()
            real_censor = real_censor * (time == last)
        n_censor = np.bincount(inv, weights=weights * real_censor, minlength=utimes.size)
        d_count = np.bincount(inv, weights=event.astype(float), minlength=utimes.size)

        has_event = (d_count > 0) & (n_event > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(has_event, (n_risk - n_event) / n_risk, 1.0)
            surv = np.cumprod(factor)
            green = np.where(has_event, n_event / (n_risk * (n_risk - n_event)), 0.0)
        if robust:
            se_surv = self._ij(utimes, has_event, n_risk, n_event, cluster_codes, labels.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                se_log = np.where(se_surv == 0, 0.0, se_surv / surv)
            self._cluster_codes, self._cluster_labels = cluster_codes, labels
            self.variance_ = "ij"
        else:
            se_log = np.sqrt(np.cumsum(green))
            self._cluster_codes = self._cluster_labels = None
            self.variance_ = "greenwood"
        self._has_event = has_event
        lower, upper = self._ci(surv, se_log)
        self.table_ = pd.DataFrame({
            "time": utimes, "n_risk": n_risk, "n_event": n_event, "n_censor": n_censor,
            "surv": surv, "std_err": se_log, "lower": lower, "upper": upper,
        })
        self.n_ = float(time.size)
        return self

    # ------------------------------------------------------------------ helpers
    def _ci(self, surv, se_log):
        if self.conf_type == "log-log":
            return _loglog_ci(surv, se_log, self.conf_level)
        z = stats.norm.ppf(1 - (1 - self.conf_level) / 2)
        if self.conf_type == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                xx = np.where(surv == 0, np.nan, surv)
                return np.exp(np.log(xx) - z * se_log), np.minimum(np.exp(np.log(xx) + z * se_log), 1)
        if self.conf_type == "plain":
            se = se_log * surv * z
            return np.maximum(surv - se, 0), np.minimum(surv + se, 1)
        raise ValueError(f"conf_type must be 'log-log', 'log' or 'plain', not {self.conf_type!r}")

    def _ij(self, utimes, has_event, n_risk, n_event, codes, n_clusters):
        """Infinitesimal jackknife SE of S at every time, as survfitkm.c (the influence vector is
        updated in place; :meth:`influence_at` gives it at one time in closed form)."""
        time, event, w, entry = self._time, self._event, self._weights, self._entry
        by_stop = np.argsort(time, kind="stable")
        stop_sorted = time[by_stop]
        gwt = np.zeros(n_clusters)
        if entry is None:
            np.add.at(gwt, codes, w)
        else:
            by_start = np.argsort(entry, kind="stable")
            start_sorted = entry[by_start]
            p1 = 0
        inf = np.zeros(n_clusters)
        se = np.zeros(utimes.size)
        p2 = 0
        km = 1.0
        v = 0.0
        for m, t in enumerate(utimes):
            if entry is not None:
                p1_new = np.searchsorted(start_sorted, t, side="left")  # entry < t
                if p1_new > p1:
                    rows = by_start[p1:p1_new]
                    np.add.at(gwt, codes[rows], w[rows])
                    p1 = p1_new
            p2_new = np.searchsorted(stop_sorted, t, side="right")
            rows = by_stop[p2:p2_new]
            if has_event[m]:
                nr = n_risk[m]
                haz = n_event[m] / nr
                inf = inf * (1.0 - haz) + gwt * km * haz / nr
                dead = rows[event[rows] == 1]
                np.add.at(inf, codes[dead], -km * w[dead] / nr)
                km *= 1.0 - haz
                v = float(inf @ inf)
            np.add.at(gwt, codes[rows], -w[rows])
            p2 = p2_new
            se[m] = np.sqrt(v)
        return se

    # ---------------------------------------------------------------- accessors
    def _row_at(self, t: float) -> int:
        """Index of the last table row with time <= t (-1 before the first time)."""
        return int(np.searchsorted(self.table_["time"].to_numpy(), t, side="right")) - 1

    def survival_at(self, t: float) -> tuple[float, float]:
        """``(S(t), se(log S(t)))``, right-continuous; ``(1, 0)`` before the first time."""
        i = self._row_at(t)
        if i < 0:
            return 1.0, 0.0
        row = self.table_.iloc[i]
        return float(row["surv"]), float(row["std_err"])

    def risk_at(self, t: float) -> RiskEstimate:
        """Cumulative risk ``1 - S(t)`` with SE ``S(t) * se(log S(t))`` and log-log CI.

        The CI is the log-log interval of ``S`` mapped to ``1 - S`` (so it stays in [0, 1]).
        """
        s, se_log = self.survival_at(t)
        lower_s, upper_s = self._ci(np.array([s]), np.array([se_log]))
        return RiskEstimate(time=float(t), risk=1.0 - s, se=s * se_log,
                            lower=float(1.0 - upper_s[0]), upper=float(1.0 - lower_s[0]),
                            variance=self.variance_)

    def influence_at(self, t: float) -> pd.Series:
        """Per-cluster influence ``sum_{i in k} w_i dS(t)/dw_i`` (robust fits only).

        Closed form, linear in rows: with ``a_m = d_m / (n_m (n_m - d_m))`` summed into
        ``A(s)`` over event times ``<= s``, row ``i`` at risk on ``(entry_i, stop_i]``
        contributes ``S(t) w_i [A(min(stop_i, t)) - A(entry_i) - event_i 1(stop_i <= t) /
        (n - d)(stop_i)]``.  If ``S`` reaches 0 at ``t* <= t`` (everyone at risk dies), only
        that factor has a non-zero derivative: ``S(t*-) w_i (Y_i(t*) - dN_i(t*)) / n(t*)``.
        """
        if self.variance_ != "ij":
            raise ValueError("influence_at needs a robust (infinitesimal jackknife) fit")
        time, event, w, entry = self._time, self._event, self._weights, self._entry
        tab = self.table_
        utimes, n_risk, n_event = (tab[c].to_numpy() for c in ("time", "n_risk", "n_event"))
        k_t = int(np.searchsorted(utimes, t, side="right"))  # table rows with time <= t
        stop_row = np.searchsorted(utimes, time)  # exact: every stop time is in the table
        entry_row = (np.zeros(time.size, dtype=np.intp) if entry is None
                     else np.searchsorted(utimes, entry, side="right"))
        died = (event == 1) & self._has_event[stop_row]
        ev = self._has_event[:k_t]
        nr, ne = n_risk[:k_t], n_event[:k_t]
        wiped = np.flatnonzero(ev & (ne >= nr))
        if wiped.size:  # S(t) = 0: the derivative of the zero factor at t* = utimes[m]
            m = int(wiped[0])
            with np.errstate(divide="ignore", invalid="ignore"):
                after = np.prod(np.where(ev[m + 1:], 1.0 - ne[m + 1:] / nr[m + 1:], 1.0))
            s_before = float(tab["surv"].iloc[m - 1]) if m > 0 else 1.0
            at_risk = ((entry_row <= m) & (stop_row >= m)).astype(float)
            per_row = s_before * after * w * (at_risk - (died & (stop_row == m))) / nr[m]
        else:
            a = np.where(ev, ne / (nr * (nr - ne)), 0.0)
            cum = np.concatenate([[0.0], np.cumsum(a)])  # cum[j] = A(utimes[j - 1])
            own = np.zeros(time.size)
            dies_by_t = died & (stop_row < k_t)
            own[dies_by_t] = 1.0 / (nr - ne)[stop_row[dies_by_t]]
            s_t = float(tab["surv"].iloc[k_t - 1]) if k_t > 0 else 1.0
            per_row = s_t * w * (cum[np.minimum(stop_row + 1, k_t)] - cum[np.minimum(entry_row, k_t)]
                                 - own)
        values = np.bincount(self._cluster_codes, weights=per_row, minlength=self._cluster_labels.size)
        return pd.Series(values, index=pd.Index(self._cluster_labels, name="cluster"))

    def n_at_risk(self, t: float) -> float:
        """(Weighted) number at risk at ``t``: ``entry < t <= time``; at ``t <= 0`` everyone
        whose follow-up starts at or before ``t``."""
        time, w, entry = self._time, self._weights, self._entry
        if entry is None:
            return float(w[time >= t].sum())
        if t <= 0:
            return float(w[(entry <= t) & (time > t)].sum())
        return float(w[(entry < t) & (time >= t)].sum())


def km_by_group(time, event, group, weights=None, entry=None, cluster=None,
                robust: bool | None = None, conf_level: float = 0.95,
                labels: dict | None = None, id=None) -> dict:
    """Fit one :class:`KaplanMeier` per group (R's ``survfit(Surv(...) ~ group)``).

    ``robust=None`` decides once for the whole data (as R), so all groups use the same variance.

    Returns
    -------
    dict
        ``{label: KaplanMeier}`` in sorted group order; ``labels`` renames group values.
    """
    time = _as_float(time, "time")
    group = np.asarray(group)
    w = None if weights is None else _as_float(weights, "weights", time.size)
    if robust is None:
        robust = cluster is not None or (w is not None and bool(np.any(w != np.floor(w))))
    out = {}
    for value in sorted(pd.unique(group)):
        keep = group == value
        km = KaplanMeier(conf_level=conf_level).fit(
            time[keep], np.asarray(event)[keep],
            None if w is None else w[keep],
            None if entry is None else np.asarray(entry, float)[keep],
            None if cluster is None else np.asarray(cluster)[keep],
            robust=robust, id=None if id is None else np.asarray(id)[keep])
        out[labels.get(value, value) if labels else value] = km
    return out


def at_risk_table(fits: dict, days: Sequence[float]) -> pd.DataFrame:
    """At-risk table of fitted curves: one row per group and day.

    Columns ``arm, time, n_risk, n_event, n_censor, surv, lower, upper``: number at risk at the
    day, cumulative events and censorings up to and including the day, and ``S(day)``.
    """
    rows = []
    for arm, km in fits.items():
        tab = km.table_
        for day in days:
            i = km._row_at(day)
            upto = tab.iloc[: i + 1]
            if i < 0:
                surv, lower, upper = 1.0, np.nan, np.nan
            else:
                surv, lower, upper = (float(tab["surv"].iloc[i]), float(tab["lower"].iloc[i]),
                                      float(tab["upper"].iloc[i]))
            rows.append({"arm": arm, "time": float(day), "n_risk": km.n_at_risk(day),
                         "n_event": float(upto["n_event"].sum()),
                         "n_censor": float(upto["n_censor"].sum()),
                         "surv": surv, "lower": lower, "upper": upper})
    return pd.DataFrame(rows)


def risk_difference(treated: RiskEstimate, control: RiskEstimate, conf_level: float = 0.95,
                    se: float | None = None) -> dict:
    """Risk difference ``treated - control`` with a Wald CI.

    The standard error is ``sqrt(se_t^2 + se_c^2)`` (independent arms; with Greenwood SEs this
    is the usual Greenwood-based interval) unless ``se`` is given (e.g. from clustered
    influence functions or a bootstrap).
    """
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    rd = treated.risk - control.risk
    if se is None:
        se = float(np.hypot(treated.se, control.se))
    return {"risk_difference": rd, "se": se, "lower": rd - z * se, "upper": rd + z * se}


def clustered_risk_difference_se(treated: KaplanMeier, control: KaplanMeier, t: float) -> float:
    """SE of ``risk_t(t) - risk_c(t)`` from infinitesimal-jackknife influences summed within
    clusters (valid when the same cluster appears in both curves, e.g. clones of a patient)."""
    it = treated.influence_at(t)
    ic = control.influence_at(t)
    both = pd.concat([-it.rename("t"), -ic.rename("c")], axis=1).fillna(0.0)
    diff = both["t"] - both["c"]
    return float(np.sqrt(np.sum(diff.to_numpy() ** 2)))
