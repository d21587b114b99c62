"""Clone-censor-weight emulation of the target trial with a grace period.

Target trial: at T0, assign "start HD-ANK within the grace period G" (strategy A) or "no
anakinra" (strategy B).  On the extended cohort (primary cohort + patients who started HD-ANK
after G), every patient is cloned into both arms and each clone is followed while its
observed treatment agrees with its strategy:

* **A clone** (HD-ANK within G).  Started by G (``anakinra_start_day <= G``): followed as
  observed.  Not started by G and still in follow-up after G: artificially censored at G.
  Death or censoring at or before G without having started: kept as observed (compatible with
  A, since the grace period had not ended).
* **B clone** (no anakinra).  Never started: followed as observed.  Started at ``s``:
  artificially censored at ``s`` (a start on the day of the outcome counts as a deviation first;
  a start at day 0 removes the clone).

Inverse-probability-of-censoring weights, from models of the deviation on baseline covariates:

* A: censoring happens only at G, among clones still in follow-up after G.
  ``p_i = P(started by G | X_i, time > G)`` by logistic regression on patients with
  ``time > G``; uncensored A clones get weight 1 on ``(0, G]`` and ``1/p_i`` after G.
* B: censoring happens at the start time.  A Cox model (Efron) for time to anakinra start,
  censored at death / end of follow-up, gives ``K_i(t) = exp(-Lambda0(t) exp(x_i b))``
  (Breslow baseline hazard); a B clone's weight at ``t`` is ``1 / K_i(t-)``.

Clones are split into ``(start, stop]`` rows where their weight changes (A: at G; B: at every
start time of the deviation model), so that each row has one weight, the one valid just before
its stop (``1/K(t-)`` is constant on each row).  Estimates: weighted Kaplan-Meier risk per arm at
the horizon, their difference, and the weighted Cox hazard ratio (arm A vs B) with clustered
(patient) robust variance.  Confidence intervals: percentile bootstrap over patients (the
weight models refitted in every replicate), seeded.
"""

from __future__ import annotations

import multiprocessing
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from hdank.cox import CoxPH
from hdank.km import KaplanMeier

__all__ = ["make_clones", "ccw_weights", "split_clones", "ccw_estimate", "clone_censor_weight",
           "CCWResult"]

ARM_A, ARM_B = "hdank", "soc"

#: Times closer than this (days; 0.09 s) are one time: below the extracts' resolution (minutes),
#: above the tie tolerance of the survival fits (sqrt(machine epsilon) x time scale).
_SAME_TIME = 1e-6


def make_clones(df: pd.DataFrame, grace: float, *, id_col: str = "patient_id",
                time_col: str = "time", event_col: str = "event",
                start_col: str = "anakinra_start_day") -> pd.DataFrame:
    """Two clones per patient with artificial censoring at deviation.

    Returns
    -------
    DataFrame
        ``row`` (position in ``df``), ``patient_id``, ``arm`` (``"hdank"``/``"soc"``),
        ``a`` (1 = strategy A), ``time``, ``event``, ``artificial`` (censored at deviation),
        ``started_by_grace``.  B clones deviating at day 0 are dropped.
    """
    t = df[time_col].to_numpy(float)
    e = df[event_col].to_numpy(int)
    s = df[start_col].to_numpy(float)
    started = ~np.isnan(s)
    by_g = started & (s <= grace)
    n = len(df)
    # strategy A
    cens_a = ~by_g & (t > grace)
    ta = np.where(cens_a, grace, t)
    ea = np.where(cens_a, 0, e)
    # strategy B
    dev_b = started & (s <= t)
    tb = np.where(dev_b, s, t)
    eb = np.where(dev_b, 0, e)
    ids = df[id_col].to_numpy()
    a = pd.DataFrame({"row": np.arange(n), id_col: ids, "arm": ARM_A, "a": 1, "time": ta,
                      "event": ea, "artificial": cens_a, "started_by_grace": by_g})
    b = pd.DataFrame({"row": np.arange(n), id_col: ids, "arm": ARM_B, "a": 0, "time": tb,
                      "event": eb, "artificial": dev_b, "started_by_grace": by_g})
    b = b[b["time"] > 0]
    out = pd.concat([a, b], ignore_index=True)
    return out.rename(columns={id_col: "patient_id"})


def _logistic(X: np.ndarray, y: np.ndarray, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood logistic regression (intercept added) by Newton-Raphson."""
    Z = np.column_stack([np.ones(len(y)), X])
    beta = np.zeros(Z.shape[1])
    ll_old = -np.inf
    for _ in range(max_iter):
        eta = Z @ beta
        p = 1 / (1 + np.exp(-eta))
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
        if abs(ll - ll_old) < tol * (abs(ll) + tol):
            return beta
        ll_old = ll
        W = p * (1 - p)
        H = (Z * W[:, None]).T @ Z
        step = np.linalg.lstsq(H, Z.T @ (y - p), rcond=None)[0]
        beta = beta + step
    warnings.warn("logistic model of deviation did not converge (separation?)", stacklevel=3)
    return beta


def _drop_degenerate(X: np.ndarray) -> np.ndarray:
    """Columns that are not constant and not linearly dependent on earlier ones."""
    if X.shape[1] == 0:
        return X
    keep = np.ptp(X, axis=0) > 0
    X = X[:, keep]
    if X.shape[1] == 0:
        return X
    Xc = X - X.mean(axis=0)
    Xc = Xc / np.sqrt((Xc ** 2).mean(axis=0))
    _, R = np.linalg.qr(Xc)
    ok = np.abs(np.diag(R)) > 1e-8 * np.sqrt(len(X))
    return X[:, ok]


def ccw_weights(df: pd.DataFrame, X: np.ndarray, grace: float, *,
                time_col: str = "time", start_col: str = "anakinra_start_day") -> dict:
    """Fit the two deviation models; return per-patient ``p_a`` and the B-censoring model.

    Returns
    -------
    dict
        ``p_a`` (array, P(start by G | X) for every patient, NaN if not in follow-up after G),
        ``lp_b`` (linear predictor of the start model), ``haz_times``/``haz_jumps`` (Breslow
        baseline hazard of starting).
    """
    t = df[time_col].to_numpy(float)
    s = df[start_col].to_numpy(float)
    X = _drop_degenerate(np.asarray(X, float))
    started = ~np.isnan(s)
    # A: logistic among those in follow-up after G
    at_g = t > grace
    y = (started & (s <= grace))[at_g].astype(float)
    p_a = np.full(len(df), np.nan)
    if at_g.any():
        if 0 < y.sum() < y.size:
            beta = _logistic(X[at_g], y)
            eta = np.column_stack([np.ones(int(at_g.sum())), X[at_g]]) @ beta
            p_a[at_g] = 1 / (1 + np.exp(-eta))
        else:
            p_a[at_g] = y.mean()
    # B: Cox model for time to start
    ts = np.where(started & (s <= t), s, t)
    es = (started & (s <= t)).astype(int)
    lp_b = np.zeros(len(df))
    if es.sum() > 0:
        if X.shape[1] > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = CoxPH().fit(X, ts, es)
            lp_b = (X - fit.means_.to_numpy()) @ fit.coef_.to_numpy()
        risk = np.exp(lp_b)
        jump_times, n_start = np.unique(ts[es == 1], return_counts=True)
        order = np.argsort(ts, kind="stable")
        tail = np.cumsum(risk[order][::-1])[::-1]          # sum of risk with ts >= ts[order[k]]
        at_risk = tail[np.searchsorted(ts[order], jump_times, side="left")]
        jumps = n_start / at_risk
    else:
        jump_times, jumps = np.array([]), np.array([])
    return {"p_a": p_a, "lp_b": lp_b, "haz_times": jump_times, "haz_jumps": jumps}


def split_clones(clones: pd.DataFrame, cuts: np.ndarray) -> pd.DataFrame:
    """Split each clone's ``(0, time]`` at the cut points below its time into
    ``(start, stop]`` rows; the event stays on the last row."""
    cuts = np.unique(np.asarray(cuts, float))
    cuts = cuts[cuts > 0]
    T = clones["time"].to_numpy(float)
    # cuts below T; a cut within _SAME_TIME of T (float noise of a grid) would make a row of
    # zero length, which the survival fits treat as a tie and reject
    k = np.searchsorted(cuts, T - _SAME_TIME, side="left")
    reps = k + 1
    idx = np.repeat(np.arange(len(clones)), reps)
    first = np.concatenate([[0], np.cumsum(reps)[:-1]])
    m = np.arange(idx.size) - np.repeat(first, reps)
    last = m == k[idx]
    start = np.where(m == 0, 0.0, cuts[np.maximum(m - 1, 0)])
    stop = np.where(last, T[idx], cuts[np.minimum(m, max(cuts.size - 1, 0))] if cuts.size else T[idx])
    out = clones.iloc[idx].reset_index(drop=True)
    out["start"] = start
    out["stop"] = stop
    out["event"] = np.where(last, out["event"].to_numpy(), 0)
    return out


def _b_cuts(haz_times: np.ndarray, horizon: float, grid: float | None) -> np.ndarray:
    """Where B clones are split: at every start time (``grid=None``), or on the grid up to the
    first grid point at or after the last start time (the weight is constant after it, so
    further cuts would only repeat rows with the same weight)."""
    if grid is None or haz_times.size == 0:
        return haz_times
    return np.arange(grid, min(horizon, haz_times.max() + grid), grid)


def _weight_rows(rows: pd.DataFrame, model: dict, grace: float) -> np.ndarray:
    r = rows["row"].to_numpy()
    stop = rows["stop"].to_numpy(float)
    a = rows["a"].to_numpy() == 1
    w = np.ones(len(rows))
    # A: 1/p after G (only clones that started by G are still followed after G)
    after = a & (stop > grace)
    w[after] = 1.0 / model["p_a"][r[after]]
    # B: 1/K(stop-)
    b = ~a
    if model["haz_times"].size:
        cum = np.concatenate([[0.0], np.cumsum(model["haz_jumps"])])
        lam = cum[np.searchsorted(model["haz_times"], stop[b], side="left")]  # jumps < stop
        w[b] = np.exp(lam * np.exp(model["lp_b"][r[b]]))
    return w


@dataclass
class CCWResult:
    """Point estimates of one clone-censor-weight analysis."""

    risk_a: float
    risk_b: float
    risk_difference: float
    log_hr: float
    hr_robust_se: float
    km: dict = field(repr=False)
    cox: CoxPH | None = field(repr=False)
    rows: pd.DataFrame = field(repr=False)
    events_a: int = 0
    events_b: int = 0
    max_weight: float = float("nan")


def ccw_estimate(df: pd.DataFrame, X: np.ndarray, grace: float, horizon: float, *,
                 cluster: np.ndarray | None = None, variance: bool = True,
                 grid: float | None = None) -> CCWResult:
    """Clone, censor, weight and estimate once (no bootstrap).

    A clones are split at G and B clones at the start times of the deviation model, the only
    points where their weights change (exact, but rows grow as clones x distinct start times,
    which is quadratic in the cohort size); with ``grid`` (days), B clones are split on that
    grid instead and each row carries the weight at its end (discrete-time IPCW; rows grow as
    clones x horizon / grid).

    Parameters
    ----------
    df : DataFrame
        Extended cohort: ``patient_id, time, event, anakinra_start_day``.
    X : array (n x p)
        Baseline covariates of the deviation models (no missing values).
    grace, horizon : float
        Grace period and risk horizon (days).
    grid : float, optional
        Width (days) of the grid on which B-clone weights are updated; None = exact.
    cluster : array, optional
        Cluster of each patient (bootstrap copies); default ``patient_id``.
    variance : bool
        Compute the KM influence (IJ) and Cox robust variance (off inside the bootstrap).
    """
    df = df.reset_index(drop=True)
    if cluster is not None:
        df = df.assign(patient_id=np.asarray(cluster))
    clones = make_clones(df, grace)
    model = ccw_weights(df, X, grace)
    # split where the weights change: A clones at G, B clones at the start times
    is_a = clones["a"] == 1
    rows = pd.concat([split_clones(clones[is_a], np.array([grace])),
                      split_clones(clones[~is_a], _b_cuts(model["haz_times"], horizon, grid))],
                     ignore_index=True)
    rows["weight"] = _weight_rows(rows, model, grace)
    rows = rows[rows["weight"] > 0]
    km = {}
    for arm in (ARM_A, ARM_B):
        sub = rows[rows["arm"] == arm]
        km[arm] = KaplanMeier().fit(sub["stop"], sub["event"], weights=sub["weight"],
                                    entry=sub["start"],
                                    cluster=sub["patient_id"] if variance else None,
                                    robust=variance, id=sub["patient_id"])
    risk_a = km[ARM_A].risk_at(horizon).risk
    risk_b = km[ARM_B].risk_at(horizon).risk
    cox = None
    log_hr, se = float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rows["event"].sum() > 0:
            cox = CoxPH().fit(rows[["a"]].astype(float), rows["stop"], rows["event"],
                              weights=rows["weight"], entry=rows["start"],
                              cluster=rows["patient_id"] if variance else None)
            log_hr = float(cox.coef_.iloc[0])
            if variance:
                se = float(cox.robust_se_.iloc[0])
    ev = clones[clones["event"] == 1]
    return CCWResult(risk_a=risk_a, risk_b=risk_b, risk_difference=risk_a - risk_b,
                     log_hr=log_hr, hr_robust_se=se, km=km, cox=cox, rows=rows,
                     events_a=int((ev["arm"] == ARM_A).sum()),
                     events_b=int((ev["arm"] == ARM_B).sum()),
                     max_weight=float(rows["weight"].max()))


def clone_censor_weight(df: pd.DataFrame, X: np.ndarray, grace: float, horizon: float, *,
                        n_boot: int = 200, seed: int = 4242, conf_level: float = 0.95,
                        grid: float | None = None, workers: int = 1) -> dict:
    """Clone-censor-weight estimate with a percentile bootstrap over patients.

    Replicate ``b`` draws its patients from its own generator (``SeedSequence(seed).spawn``),
    so the replicates, and the CI, are the same whatever the number of ``workers`` (processes).

    Returns
    -------
    dict
        ``estimate`` (:class:`CCWResult`), ``boot`` (DataFrame of replicate estimates),
        ``ci`` (``{quantity: (lower, upper)}`` for risk_a, risk_b, risk_difference, hr),
        ``se_log_hr`` (bootstrap SD of log HR), ``n_boot_ok``.
    """
    df = df.reset_index(drop=True)
    X = np.asarray(X, float)
    est = ccw_estimate(df, X, grace, horizon, grid=grid)
    seeds = np.random.SeedSequence(seed).spawn(n_boot)
    workers = max(1, min(int(workers), n_boot))
    if workers == 1:
        reps = _replicates(df, X, grace, horizon, grid, seeds)
    else:
        chunks = [seeds[i::workers] for i in range(workers)]
        # fork: the workers inherit the modules (spawn/forkserver would re-run the calling
        # script, e.g. a Snakemake script, as their __main__)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_replicates, *zip(*[(df, X, grace, horizon, grid, c) for c in chunks])))
        reps = [None] * n_boot
        for i, part in enumerate(parts):
            reps[i::workers] = part
    boot = pd.DataFrame(reps, columns=["risk_a", "risk_b", "risk_difference", "log_hr"])
    ok = boot.dropna()
    lo_q, hi_q = (1 - conf_level) / 2, 1 - (1 - conf_level) / 2
    ci = {}
    for col in ("risk_a", "risk_b", "risk_difference"):
        ci[col] = tuple(np.quantile(ok[col], [lo_q, hi_q])) if len(ok) else (np.nan, np.nan)
    lh = np.quantile(ok["log_hr"], [lo_q, hi_q]) if len(ok) else (np.nan, np.nan)
    ci["hr"] = (float(np.exp(lh[0])), float(np.exp(lh[1])))
    return {"estimate": est, "boot": boot, "ci": ci,
            "se_log_hr": float(ok["log_hr"].std(ddof=1)) if len(ok) > 1 else float("nan"),
            "n_boot_ok": int(len(ok))}


def _replicates(df: pd.DataFrame, X: np.ndarray, grace: float, horizon: float, grid: float | None,
                seeds: list[np.random.SeedSequence]) -> list[tuple]:
    """Bootstrap replicates (resampled patients, weight models refitted), one per seed."""
    n = len(df)
    out = []
    # one BLAS thread: the replicates' matrices are small, and parallelism comes from the
    # worker processes (BLAS threads in every worker would oversubscribe the cores)
    with threadpool_limits(1):
        for s in seeds:
            idx = np.random.default_rng(s).integers(0, n, n)
            try:
                r = ccw_estimate(df.iloc[idx], X[idx], grace, horizon, cluster=np.arange(n),
                                 variance=False, grid=grid)
                out.append((r.risk_a, r.risk_b, r.risk_difference, r.log_hr))
            except (ValueError, np.linalg.LinAlgError):
                out.append((np.nan,) * 4)
    return out
