"""Covariate balance: standardised mean differences, variance ratios, the balance gate.

Definitions (protocol section 4.1; those of R's cobalt with ``s.d.denom = "pooled"``):

* (weighted) mean of a column in an arm: ``sum(w x) / sum(w)`` over units whose value is
  not missing (missingness is carried by the ``<name>_missing`` indicator row);
* variance: binary columns (all observed values 0/1) ``p (1 - p)``; other columns the
  unbiased sample variance, weighted as ``sum(w (x - m)^2) / (1 - sum(w^2))`` with the
  weights normalised to sum 1 (``var(x)`` with n - 1 when unweighted);
* SMD ``= (mean_t - mean_c) / sqrt((var_t + var_c) / 2)`` where ``var_t`` and ``var_c`` are
  ALWAYS the unweighted variances of the unmatched (analysed) cohort, so the SMDs before
  matching, after matching and under IPTW share one denominator per column; only the
  means are weighted (match weights or IPTW).  A column constant in the cohort has SMD 0;
* variance ratio ``= var_t / var_c`` in the (weighted) sample, for non-binary columns only
  (NaN for binary columns, as in cobalt's ``bal.tab``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdank.propensity import covariate_role

BALANCE_COLUMNS = ["covariate", "mean_treated_before", "mean_control_before",
                   "mean_treated_after", "mean_control_after", "smd_before", "smd_after",
                   "smd_iptw", "var_ratio_before", "var_ratio_after", "var_ratio_iptw"]


def balance_matrix(df: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Columns whose balance is reported, as float with NaN for missing values.

    One column per numeric or binary covariate, one 0/1 column ``name[level]`` per level of
    a categorical covariate (levels sorted as strings; NaN where the covariate is missing),
    and ``name_missing`` (0/1) right after a covariate that has missing values.
    """
    cols: dict[str, pd.Series] = {}
    for name in covariates:
        role = covariate_role(name)
        miss = df[name].isna()
        if role == "cat":
            x = df[name].astype("string")
            for level in sorted(x.dropna().unique()):
                cols[f"{name}[{level}]"] = (x == level).astype(float).where(~miss)
        else:
            cols[name] = pd.to_numeric(df[name]).astype("Float64").astype(float)
        if miss.any():
            cols[f"{name}_missing"] = miss.astype(float)
    return pd.DataFrame(cols, index=df.index)


def is_binary(x) -> bool:
    """True if every observed value is 0 or 1."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return bool(np.isin(x, (0.0, 1.0)).all())


def weighted_mean(x, w=None) -> float:
    """Weighted mean over the non-missing values of ``x`` (NaN if no weight)."""
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=float)
    ok = ~np.isnan(x)
    total = w[ok].sum()
    return float((w[ok] * x[ok]).sum() / total) if total > 0 else float("nan")


def weighted_var(x, w=None, binary: bool = False) -> float:
    """Weighted variance over non-missing values: ``p(1-p)`` if binary, else unbiased.

    The unbiased weighted variance is ``sum(w (x - m)^2) / (1 - sum(w^2))`` with ``w``
    normalised to sum 1; with equal weights this is the usual n - 1 variance.
    """
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=float)
    ok = ~np.isnan(x) & (w != 0)
    x, w = x[ok], w[ok]
    if w.sum() <= 0:
        return float("nan")
    w = w / w.sum()
    m = float((w * x).sum())
    if binary:
        return m * (1.0 - m)
    den = 1.0 - float((w * w).sum())
    return float((w * (x - m) ** 2).sum() / den) if den > 0 else float("nan")


def smd(x, treated, weights=None, binary: bool | None = None) -> float:
    """Standardised mean difference, treated minus control.

    ``SMD = (m_t - m_c) / sqrt((v_t + v_c) / 2)``: ``m`` the (weighted) means over
    non-missing values, ``v`` the UNWEIGHTED variances of the arms in the data given (the
    unmatched cohort) -- ``p(1 - p)`` for binary columns, the n - 1 sample variance
    otherwise.  Weights change only the means, so SMDs before matching, after matching and
    under IPTW share the denominator (cobalt, ``s.d.denom = "pooled"``).  0 when both the
    difference and the denominator are 0.

    Parameters
    ----------
    x : array-like
        Covariate values (NaN = missing) of the unmatched cohort.
    treated : array-like of {0, 1}
    weights : array-like, optional
        Weights of the means (match weights or IPTW); the denominator is unweighted.
    binary : bool, optional
        Use ``p(1-p)`` variances; default: :func:`is_binary`.
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(treated).astype(bool)
    binary = is_binary(x) if binary is None else binary
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    diff = weighted_mean(x[t], w[t]) - weighted_mean(x[~t], w[~t])
    denom = np.sqrt((weighted_var(x[t], binary=binary) + weighted_var(x[~t], binary=binary)) / 2)
    return _ratio(diff, denom)


def _ratio(diff: float, denom: float) -> float:
    if denom == 0:
        return 0.0 if diff == 0 else float(np.copysign(np.inf, diff))
    return float(diff / denom)


def variance_ratio(x, treated, weights=None) -> float:
    """(Weighted) variance of the treated over that of the controls (non-binary columns)."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(treated).astype(bool)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    vc = weighted_var(x[~t], w[~t])
    return weighted_var(x[t], w[t]) / vc if vc > 0 else float("nan")


def balance_table(x: pd.DataFrame, treated, match_weights, iptw) -> pd.DataFrame:
    """Balance of every column of ``x`` before matching, after matching and under IPTW.

    Means and SMDs as :func:`smd` (one denominator per column, from the unweighted
    cohort); variance ratios as :func:`variance_ratio` for non-binary columns, NaN for
    binary ones.

    Parameters
    ----------
    x : pandas.DataFrame
        Balance columns of the analysed cohort (see :func:`balance_matrix`).
    treated : array-like of {0, 1}
    match_weights : array-like
        MatchIt-style matching weight of every unit (0 = not in the matched sample).
    iptw : array-like
        Stabilised, truncated IPTW of every unit.

    Returns
    -------
    pandas.DataFrame
        One row per column of ``x``, columns :data:`BALANCE_COLUMNS`.
    """
    t = np.asarray(treated).astype(bool)
    wm = np.asarray(match_weights, dtype=float)
    wi = np.asarray(iptw, dtype=float)
    rows = []
    for col in x.columns:
        v = x[col].to_numpy(dtype=float)
        binary = is_binary(v)
        denom = np.sqrt((weighted_var(v[t], binary=binary) + weighted_var(v[~t], binary=binary)) / 2)
        means = {}
        for label, w in (("before", None), ("after", wm), ("iptw", wi)):
            w = np.ones_like(v) if w is None else w
            means[label] = (weighted_mean(v[t], w[t]), weighted_mean(v[~t], w[~t]))
        vr = {label: (float("nan") if binary else variance_ratio(v, t, w))
              for label, w in (("before", None), ("after", wm), ("iptw", wi))}
        rows.append({
            "covariate": col,
            "mean_treated_before": means["before"][0], "mean_control_before": means["before"][1],
            "mean_treated_after": means["after"][0], "mean_control_after": means["after"][1],
            **{f"smd_{label}": _ratio(m[0] - m[1], denom) for label, m in means.items()},
            **{f"var_ratio_{label}": r for label, r in vr.items()},
        })
    out = pd.DataFrame(rows, columns=BALANCE_COLUMNS)
    out["covariate"] = out["covariate"].astype(str)
    return out


def balance_gate(table: pd.DataFrame, share_treated_matched: float, smd_threshold: float = 0.1,
                 min_share_treated_matched: float = 0.8) -> dict:
    """Protocol 4.4: every |smd_after| < threshold and enough treated patients matched.

    Rows with ``gated`` False (if the column exists) are reported but not judged.

    A NaN ``smd_after`` (e.g. nothing matched) counts as failing.

    Returns
    -------
    dict
        ``passed``, ``failing_covariates`` (in table order), ``max_abs_smd_after`` (None
        if no SMD could be computed),
        ``share_treated_matched``, ``share_ok``, ``smd_threshold``,
        ``min_share_treated_matched``.
    """
    if "gated" in table.columns:  # rows reported but not judged (rare missing indicators)
        table = table[table["gated"]]
    smd_after = table["smd_after"].abs()
    failing = table.loc[~(smd_after < smd_threshold), "covariate"].tolist()
    share_ok = bool(share_treated_matched >= min_share_treated_matched)
    max_smd = float(smd_after.max()) if smd_after.notna().any() else None
    return {"passed": bool(share_ok and not failing), "failing_covariates": failing,
            "max_abs_smd_after": max_smd, "share_treated_matched": float(share_treated_matched),
            "share_ok": share_ok, "smd_threshold": float(smd_threshold),
            "min_share_treated_matched": float(min_share_treated_matched)}
