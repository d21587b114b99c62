"""Propensity score: design matrix, logistic model of treatment, IPTW and overlap weights.

Covariates are named by role (``docs/data-model.md``): ``cov_num_*`` numeric, ``cov_bin_*``
0/1 (nullable) and ``cov_cat_*`` categorical.  The design matrix is built deterministically:

* numeric and binary covariates enter as they are;
* a categorical covariate enters as one 0/1 column per level except the reference level,
  which is the most frequent level (ties: the first in string order) so that a rare level
  is never the reference; the other levels in string order; columns named ``name[level]``;
* ``missing="indicator"``: a missing value is replaced by the median of the observed values
  (categorical: the most frequent level, ties to the first in sort order) and a column
  ``<name>_missing`` (1 = missing) is added, only for covariates with at least ``min_missing``
  missing values;
  ``missing="complete_case"``: rows with any missing covariate are left out of the model;
* a column that is constant among the rows used, or an exact linear combination of earlier
  columns (e.g. two missing indicators with the same pattern), is dropped, and the reason
  is recorded in ``warnings_``;
* a missing indicator whose missing values all fall in one arm (rare missingness, so its
  coefficient does not exist) is dropped with a warning; the median imputation stays.

The model is a statsmodels ``Logit`` fitted by Newton-Raphson.  A fit that does not converge,
a design in which one column separates the arms (quasi-)completely, fitted probabilities
numerically 0 or 1, or a standardised coefficient beyond ``max_abs_std_coef`` raises
:class:`SeparationError` or :class:`ConvergenceError` naming the covariates involved; the model
never returns NaN scores silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import expit

from hdank.errors import UserError

MISSING_MODES = ("indicator", "complete_case")
ROLES = {"cov_num_": "num", "cov_bin_": "bin", "cov_cat_": "cat"}


class PropensityModelError(UserError, ValueError):
    """The propensity model cannot be fitted as specified."""


class SeparationError(PropensityModelError):
    """Treatment is (quasi-)perfectly predicted by some covariates; names them."""


class ConvergenceError(PropensityModelError):
    """The logistic regression did not converge."""


def covariate_role(name: str) -> str:
    """Role of a covariate from its prefix: ``"num"``, ``"bin"`` or ``"cat"``."""
    for prefix, role in ROLES.items():
        if name.startswith(prefix):
            return role
    raise PropensityModelError(f"covariate {name!r} has no known role prefix {tuple(ROLES)}")


def _as_float(df: pd.DataFrame, name: str, role: str, log: bool = False) -> pd.Series:
    """Numeric or 0/1 covariate as float with NaN for missing; errors name the bad rows.

    With ``log``, the natural log of the value (for right-skewed labs); values <= 0 are an
    error naming the rows.
    """
    try:
        x = pd.to_numeric(df[name], errors="raise").astype("Float64").astype(float)
    except (TypeError, ValueError) as exc:
        raise PropensityModelError(f"covariate {name!r} is not numeric: {exc}") from exc
    bad = np.isinf(x) if role == "num" else ~(x.isna() | x.isin([0.0, 1.0]))
    if bad.any():
        what = "infinite values" if role == "num" else "values other than 0/1"
        raise PropensityModelError(f"covariate {name!r} has {what} in rows "
                                   f"{list(df.index[bad][:5])}")
    if log:
        bad = x <= 0
        if bad.any():
            raise PropensityModelError(f"covariate {name!r} is log-transformed (propensity.log_transform) "
                                       f"but has values <= 0 in rows {list(df.index[bad][:5])}")
        x = np.log(x)
    return x


def _as_category(df: pd.DataFrame, name: str) -> pd.Series:
    x = df[name]
    return x.astype("string").astype(object).where(x.notna(), None)


@dataclass
class DesignSpec:
    """What :func:`learn_design` learned: enough to rebuild the same columns on any rows."""

    covariates: list[str]
    missing: str
    fill: dict = field(default_factory=dict)         # covariate -> imputed value
    levels: dict = field(default_factory=dict)       # categorical -> [reference, others sorted]
    indicators: list = field(default_factory=list)   # covariates given a _missing column
    columns: list = field(default_factory=list)      # design columns kept, in order
    source: dict = field(default_factory=dict)       # design column -> covariate
    warnings: list = field(default_factory=list)
    log: list = field(default_factory=list)          # numeric covariates entered as log(x)


def complete_rows(df: pd.DataFrame, covariates: list[str]) -> pd.Series:
    """Boolean mask of rows without any missing covariate."""
    return df[list(covariates)].notna().all(axis=1)


def _raw_columns(df: pd.DataFrame, spec: DesignSpec) -> tuple[pd.DataFrame, dict]:
    """All candidate design columns (before dropping constant/collinear ones) and their source."""
    cols: dict[str, pd.Series] = {}
    source: dict[str, str] = {}
    for name in spec.covariates:
        role = covariate_role(name)
        if role == "cat":
            x = _as_category(df, name)
            miss = x.isna()
            x = x.where(~miss, spec.fill.get(name))
            new = {f"{name}[{level}]": (x == level).astype(float) for level in spec.levels[name][1:]}
        else:
            x = _as_float(df, name, role, log=name in spec.log)
            miss = x.isna()
            new = {name: x.fillna(spec.fill.get(name, np.nan))}
        if name in spec.indicators:
            new[f"{name}_missing"] = miss.astype(float)
        cols.update(new)
        source.update(dict.fromkeys(new, name))
    return pd.DataFrame(cols, index=df.index), source


def learn_design(df: pd.DataFrame, covariates: list[str], missing: str = "indicator",
                 collinearity_tol: float = 1e-7, log: tuple[str, ...] | list[str] = (),
                 min_missing: int = 1) -> DesignSpec:
    """Learn imputation values, levels and the kept columns of the design matrix.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows to learn from (for complete-case, only the complete rows are used).
    covariates : list of str
        Covariate columns, with role prefixes.
    missing : {"indicator", "complete_case"}
        Missing-data handling (see module docstring).
    log : list of str
        Numeric covariates entered as their natural log (imputed with the median of the log).
    min_missing : int
        A missing indicator is added only for covariates with at least this many missing
        values; rarer missingness gets the median only (a handful of patients cannot support
        a coefficient and makes the fit (quasi-)separate).
    collinearity_tol : float
        A centred, unit-norm column whose residual on the earlier columns has a norm below
        this is treated as a linear combination of them and dropped.

    Returns
    -------
    DesignSpec
    """
    if missing not in MISSING_MODES:
        raise PropensityModelError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
    absent = [c for c in covariates if c not in df.columns]
    if absent:
        raise PropensityModelError(f"covariates not in the cohort: {absent}")
    spec = DesignSpec(covariates=list(covariates), missing=missing, log=[c for c in log if c in covariates])
    if missing == "complete_case":
        df = df.loc[complete_rows(df, covariates)]
    for name in covariates:
        role = covariate_role(name)
        observed = (_as_category(df, name) if role == "cat"
                    else _as_float(df, name, role, log=name in spec.log)).dropna()
        if observed.empty:
            spec.warnings.append(f"{name}: no observed value; dropped from the propensity model")
            continue
        if role == "cat":
            counts = observed.value_counts()
            mode = min(counts.index[counts == counts.max()])
            spec.levels[name] = [mode] + sorted(set(counts.index) - {mode})
            spec.fill[name] = mode
            if len(counts) == 1:
                spec.warnings.append(f"{name}: a single level ({mode!r}) among the rows used; "
                                     "dropped from the propensity model")
        else:
            spec.fill[name] = float(observed.median())
        if len(df) - len(observed) >= max(min_missing, 1) and missing == "indicator":
            spec.indicators.append(name)
    spec.covariates = [c for c in covariates if c in spec.fill]
    raw, spec.source = _raw_columns(df, spec)
    spec.columns = _independent_columns(raw, spec, collinearity_tol)
    return spec


def _independent_columns(raw: pd.DataFrame, spec: DesignSpec, tol: float) -> list[str]:
    """Drop constant columns, then columns that are linear combinations of earlier ones."""
    keep = []
    for col in raw.columns:
        if raw[col].nunique(dropna=False) <= 1:
            value = raw[col].iloc[0] if len(raw) else "no rows"
            spec.warnings.append(f"{col}: constant ({value}) among the rows used; "
                                 "dropped from the propensity model")
        else:
            keep.append(col)
    if not keep:
        return keep
    x = raw[keep].to_numpy(dtype=float)
    x = x - x.mean(axis=0)
    x = x / np.linalg.norm(x, axis=0)
    r_diag = np.zeros(x.shape[1])
    r = np.abs(np.diag(np.linalg.qr(x, mode="r")))
    r_diag[: r.size] = r
    for col, r in zip(list(keep), r_diag):
        if r < tol:
            keep.remove(col)
            spec.warnings.append(f"{col}: a linear combination of earlier design columns (e.g. "
                                 "the same missingness pattern); dropped from the propensity model")
    return keep


def design_matrix(df: pd.DataFrame, spec: DesignSpec) -> pd.DataFrame:
    """The design matrix (without intercept) of ``df`` under a learned :class:`DesignSpec`."""
    return _raw_columns(df, spec)[0][spec.columns]


def _separating_columns(x: pd.DataFrame, y: np.ndarray) -> dict[str, str]:
    """Columns whose values alone (quasi-)completely separate treated from controls.

    Returns {column: what separates}, e.g. ``"all 3 patients with value 1 are control"``.
    """
    out = {}
    for col in x.columns:
        v = x[col].to_numpy()
        t, c = v[y == 1], v[y == 0]
        binary = set(np.unique(v)) <= {0.0, 1.0}
        # numeric columns: only strict separation; ties at the boundary (e.g. a nearly constant
        # dose) are quasi-separation of a few patients, left to the fit (their score goes to 0/1)
        if not (c.max() <= t.min() or t.max() <= c.min()) or (
                not binary and not (c.max() < t.min() or t.max() < c.min())):
            continue
        if binary:
            for value in (1.0, 0.0):
                arms = y[v == value]
                if arms.min() == arms.max():
                    out[col] = (f"all {arms.size} patients with value {value:g} are "
                                f"{'treated' if arms[0] == 1 else 'control'}")
                    break
        else:
            low, high = ("control", "treated") if c.max() <= t.min() else ("treated", "control")
            out[col] = f"every {low} value <= every {high} value"
    return out


class PropensityModel:
    """Logistic propensity model of a binary treatment on role-prefixed covariates.

    Parameters
    ----------
    covariates : list of str
        Covariate columns of the cohort (``cov_num_*``, ``cov_bin_*``, ``cov_cat_*``).
    missing : {"indicator", "complete_case"}, default "indicator"
        Median (mode) imputation plus missing indicators, or complete-case.
    log_transform : sequence of str, default ()
        Numeric covariates entered as their natural log (right-skewed labs).
    min_missing : int, default 1
        Fewest missing values that earn a covariate a missing indicator.
    treatment : str, default "treated"
        0/1 treatment column.
    maxiter : int, default 100
        Newton-Raphson iterations.
    max_abs_std_coef : float, default 10.0
        Largest accepted |coefficient x SD of its column| (log odds ratio per SD).
    prob_tol : float, default 1e-10
        Fitted probabilities below ``prob_tol`` or above ``1 - prob_tol`` mean separation.

    Attributes
    ----------
    spec_ : DesignSpec
        Imputation values, levels, kept columns and warnings.
    rows_ : pandas.Series of bool
        Rows of the fitted cohort used by the model (all rows unless complete-case).
    coef_, bse_ : pandas.Series
        Coefficients and standard errors, ``const`` first.
    logit_, ps_ : numpy.ndarray
        Linear predictor and probability of treatment of the rows used.
    n_iter_ : int
    warnings_ : list of str
        Dropped columns and their reasons.
    """

    def __init__(self, covariates, missing: str = "indicator", log_transform=(), min_missing: int = 1,
                 treatment: str = "treated",
                 maxiter: int = 100, max_abs_std_coef: float = 10.0, prob_tol: float = 1e-10):
        self.covariates = covariates
        self.missing = missing
        self.log_transform = log_transform
        self.min_missing = min_missing
        self.treatment = treatment
        self.maxiter = maxiter
        self.max_abs_std_coef = max_abs_std_coef
        self.prob_tol = prob_tol

    def fit(self, df: pd.DataFrame) -> "PropensityModel":
        """Fit the model on the cohort ``df``; returns self."""
        y_all = pd.to_numeric(df[self.treatment], errors="coerce")
        if y_all.isna().any() or not y_all.isin([0, 1]).all():
            raise PropensityModelError(f"{self.treatment!r} must be 0/1 without missing values")
        self.rows_ = (complete_rows(df, self.covariates) if self.missing == "complete_case"
                      else pd.Series(True, index=df.index))
        used = df.loc[self.rows_]
        y = y_all[self.rows_].to_numpy(dtype=float)
        if y.size == 0 or y.min() == y.max():
            raise PropensityModelError("the rows used need both treated and control patients "
                                       f"(treated: {int(y.sum())}, control: {int((1 - y).sum())})")
        self.spec_ = learn_design(used, list(self.covariates), self.missing, log=self.log_transform,
                                  min_missing=self.min_missing)
        self.warnings_ = list(self.spec_.warnings)
        x = design_matrix(used, self.spec_)
        culprits = _separating_columns(x, y)
        indicators = [c for c in culprits if c.endswith("_missing")]
        if indicators:  # rare missingness all in one arm: keep the median imputation only
            for col in indicators:
                self.warnings_.append(f"{col}: {culprits.pop(col)}; indicator dropped (median "
                                      "imputation kept) because its coefficient is not estimable")
            self.spec_.columns = [c for c in self.spec_.columns if c not in indicators]
            x = x[self.spec_.columns]
        if culprits:
            raise SeparationError(self._message(
                "treatment is perfectly or quasi-perfectly predicted by", list(culprits),
                "; ".join(f"{k}: {v}" for k, v in culprits.items()) +
                " (the maximum-likelihood estimate does not exist); remove or recode the "
                "covariate, or merge rare levels"))
        exog = sm.add_constant(x, has_constant="add")
        self._fit_logit(exog, y)
        return self

    def _fit_logit(self, exog: pd.DataFrame, y: np.ndarray) -> None:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                res = sm.Logit(y, exog).fit(method="newton", maxiter=self.maxiter, disp=False)
            except np.linalg.LinAlgError as exc:
                raise ConvergenceError(f"propensity model: singular Hessian ({exc}); "
                                       f"columns {list(exog.columns[1:])}") from exc
        coef = pd.Series(res.params, index=exog.columns)
        sd = exog.std(ddof=0).replace(0.0, 1.0)
        std_coef = (coef * sd).drop("const")
        eta = exog.to_numpy() @ coef.to_numpy()
        ps = expit(eta)
        huge = list(std_coef.index[~np.isfinite(std_coef) | (std_coef.abs() > self.max_abs_std_coef)])
        extreme = (ps < self.prob_tol) | (ps > 1 - self.prob_tol)
        separated = bool(extreme.all()) or bool(huge)
        if extreme.any() and not separated:  # like R's glm: a warning, the patients stay unmatched
            self.warnings_.append(f"{int(extreme.sum())} patient(s) with a propensity score numerically "
                                  "0 or 1 (quasi-separation); they cannot be matched")
        if separated:
            degenerate = bool(extreme.any())
            named = huge or list(std_coef.abs().sort_values(ascending=False).index[:3])
            raise SeparationError(self._message(
                "quasi-perfect separation in the propensity model" +
                (" (fitted probabilities numerically 0 or 1)" if degenerate else ""),
                named, f"standardised coefficients {std_coef[named].round(2).to_dict()}"))
        if not res.mle_retvals.get("converged", False) or not np.isfinite(eta).all():
            named = list(std_coef.abs().sort_values(ascending=False).index[:3])
            raise ConvergenceError(self._message(
                f"propensity model did not converge in {self.maxiter} iterations; largest "
                "standardised coefficients", named, "check these covariates"))
        self.coef_ = coef
        self.bse_ = pd.Series(res.bse, index=exog.columns)
        self.logit_ = eta
        self.ps_ = ps
        self.n_iter_ = int(res.mle_retvals.get("iterations", -1))

    def _message(self, what: str, columns: list[str], hint: str) -> str:
        covs = sorted({self.spec_.source.get(c, c) for c in columns}, key=self.covariates.index)
        return f"{what}: covariate(s) {covs} (design columns {columns}); {hint}"

    def decision_function(self, df: pd.DataFrame) -> np.ndarray:
        """Logit of the propensity score of any rows (missing values imputed as learned)."""
        exog = sm.add_constant(design_matrix(df, self.spec_), has_constant="add")
        return exog.to_numpy() @ self.coef_.to_numpy()

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        """Propensity score (probability of treatment) of any rows."""
        return expit(self.decision_function(df))


def iptw_weights(ps, treated, truncate_percentiles=(1, 99)) -> tuple[np.ndarray, dict]:
    """Stabilised inverse-probability-of-treatment weights, truncated.

    ``w = P(T) / ps`` for treated and ``(1 - P(T)) / (1 - ps)`` for controls, with P(T)
    the share treated; then clipped to the given lower and upper percentiles of all
    weights (both arms pooled; numpy's linear interpolation, R's type 7).

    Returns
    -------
    weights : numpy.ndarray
    info : dict
        ``p_treated``, ``bounds`` (the clipping values) and ``n_truncated``.
    """
    ps = np.asarray(ps, dtype=float)
    t = np.asarray(treated).astype(bool)
    p = float(t.mean())
    w = np.where(t, p / ps, (1 - p) / (1 - ps))
    lo, hi = (np.percentile(w, truncate_percentiles) if truncate_percentiles is not None
              else (-np.inf, np.inf))
    clipped = np.clip(w, lo, hi)
    info = {"p_treated": p, "bounds": [float(lo), float(hi)],
            "n_truncated": int((clipped != w).sum())}
    return clipped, info


def overlap_weights(ps, treated) -> np.ndarray:
    """Overlap weights: ``1 - ps`` for treated, ``ps`` for controls."""
    ps = np.asarray(ps, dtype=float)
    return np.where(np.asarray(treated).astype(bool), 1.0 - ps, ps)
