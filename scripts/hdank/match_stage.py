"""The match stage: propensity score, weights, matching, balance and the balance gate.

:func:`run_matching` turns ``results/cohort/cohort.parquet`` into the tables of
``results/match/`` (layouts in ``docs/data-model.md``) and a JSON-ready diagnostics dict.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hdank.balance import balance_gate, balance_matrix, balance_table
from hdank.errors import StudyError
from hdank.matching import PropensityScoreMatcher
from hdank.propensity import PropensityModel, PropensityModelError, iptw_weights, overlap_weights

PS_COLUMNS = ["patient_id", "treated", "ps", "logit_ps", "iptw", "overlap_weight"]
MATCHING_DEFAULTS = {"method": "nearest", "ratio": 1, "replace": False, "caliper_sd": 0.2,
                     "order": "largest"}


def _check_cohort(cohort: pd.DataFrame) -> None:
    for col in ("patient_id", "treated"):
        if col not in cohort.columns:
            raise PropensityModelError(f"cohort has no column {col!r}")
    dup = cohort["patient_id"].duplicated()
    if dup.any():
        raise PropensityModelError("cohort patient_id not unique, e.g. "
                                   f"{cohort.loc[dup, 'patient_id'].iloc[:5].tolist()}")


def _matched_rows(cohort: pd.DataFrame, positions: np.ndarray, pairs: pd.DataFrame) -> pd.DataFrame:
    """Cohort rows of the matched sample with pair_id and match_weight, treated first."""
    first = pairs.drop_duplicates("pair_id")
    parts = []
    for rows, pair_id, weight, rank in (
            (first["treated_row"], first["pair_id"], np.ones(len(first)), np.zeros(len(first))),
            (pairs["control_row"], pairs["pair_id"], pairs["weight"], pairs["rank"])):
        part = cohort.iloc[positions[rows.to_numpy()]].reset_index(drop=True)
        part["pair_id"] = pair_id.to_numpy(dtype=np.int64)
        part["match_weight"] = np.asarray(weight, dtype=float)
        part["_rank"] = np.asarray(rank)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True).sort_values(["pair_id", "_rank"], kind="stable")
    return out.drop(columns="_rank").reset_index(drop=True)


def run_matching(cohort: pd.DataFrame, propensity_cfg: dict, matching_cfg: dict,
                 weights_cfg: dict, balance_cfg: dict):
    """Propensity score, IPTW/overlap weights, caliper matching and balance of a cohort.

    Parameters
    ----------
    cohort : pandas.DataFrame
        ``cohort.parquet`` (patient_id, treated and the covariates), in cohort order.
    propensity_cfg : dict
        ``covariates`` and ``missing`` (``"indicator"`` or ``"complete_case"``).
    matching_cfg : dict
        ``method`` (nearest/optimal), ``ratio``, ``replace``, ``caliper_sd``, ``order``.
    weights_cfg : dict
        ``truncate_percentiles`` of the stabilised IPTW.
    balance_cfg : dict
        ``smd_threshold`` and ``min_share_treated_matched`` of the balance gate.

    Returns
    -------
    ps_df : pandas.DataFrame
        patient_id, treated, ps, logit_ps, iptw, overlap_weight, in cohort order (NaN for
        patients left out by complete-case analysis).
    matched_df : pandas.DataFrame
        Cohort columns of the matched patients plus ``pair_id`` and ``match_weight``,
        ordered by pair_id, treated first, then controls in match order.  Treated rows
        weigh 1; a control row weighs 1/k (k = controls in its pair) times
        (controls used / treated matched), so that the rows of one control add up to its
        MatchIt weight (1 throughout for 1:1 without replacement).  With replacement a
        control appears once in every pair it serves.
    balance_df : pandas.DataFrame
        One row per covariate, missing indicator and categorical level
        (:func:`hdank.balance.balance_table`).
    diagnostics : dict
        Counts, caliper, model warnings, weights and the balance gate (JSON-ready).
    """
    _check_cohort(cohort)
    covariates = list(propensity_cfg["covariates"])
    missing = propensity_cfg.get("missing", "indicator")
    mcfg = {**MATCHING_DEFAULTS, **(matching_cfg or {})}
    truncate = (weights_cfg or {}).get("truncate_percentiles", [1, 99])
    bcfg = {"smd_threshold": 0.1, "min_share_treated_matched": 0.8, **(balance_cfg or {})}

    model = PropensityModel(covariates, missing=missing,
                            log_transform=propensity_cfg.get("log_transform", ()),
                            min_missing=propensity_cfg.get("min_missing_for_indicator", 1)).fit(cohort)
    used = model.rows_.to_numpy()
    positions = np.flatnonzero(used)
    treated_all = cohort["treated"].to_numpy().astype(np.int8)
    treated = treated_all[used]
    iptw, iptw_info = iptw_weights(model.ps_, treated, truncate)

    ps_df = pd.DataFrame({"patient_id": cohort["patient_id"].to_numpy(dtype=np.int64),
                          "treated": treated_all})
    for col, values in (("ps", model.ps_), ("logit_ps", model.logit_), ("iptw", iptw),
                        ("overlap_weight", overlap_weights(model.ps_, treated))):
        ps_df[col] = np.nan
        ps_df.loc[used, col] = values
    ps_df = ps_df[PS_COLUMNS]

    matcher = PropensityScoreMatcher(mcfg["method"], int(mcfg["ratio"]), bool(mcfg["replace"]),
                                     mcfg["caliper_sd"], mcfg["order"])
    matcher.fit(model.logit_, treated, ids=ps_df["patient_id"].to_numpy()[used])
    matched_df = _matched_rows(cohort, positions, matcher.pairs_)

    analysed = cohort.iloc[positions]
    balance_df = balance_table(balance_matrix(analysed, covariates), treated,
                               matcher.weights_, iptw)
    # the gate judges the covariates and the missing indicators the model could use; an
    # indicator of rare missingness (fewer than min_missing_for_indicator) is reported only
    rare = [f"{c}_missing" for c in covariates if c not in model.spec_.indicators]
    balance_df["gated"] = ~balance_df["covariate"].isin(rare)
    n_treated = int(treated.sum())
    share = matcher.n_treated_matched_ / n_treated
    diagnostics = {
        "n_cohort": int(len(cohort)),
        "n_analysed": int(used.sum()),
        "n_excluded_missing": int((~used).sum()),
        "n_treated": n_treated,
        "n_control": int(len(treated) - n_treated),
        "n_treated_matched": matcher.n_treated_matched_,
        "n_treated_unmatched": n_treated - matcher.n_treated_matched_,
        "n_controls_used": matcher.n_controls_used_,
        "share_treated_matched": float(share),
        "matching": {k: mcfg[k] for k in MATCHING_DEFAULTS},
        "caliper_sd": None if mcfg["caliper_sd"] is None else float(mcfg["caliper_sd"]),
        "caliper_logit": matcher.caliper_,
        "sd_logit": matcher.sd_,
        "propensity": {"missing": missing, "n_iter": model.n_iter_,
                       "columns": list(model.spec_.columns),
                       "coefficients": {k: float(v) for k, v in model.coef_.items()}},
        "weights": {"truncate_percentiles": [float(p) for p in truncate], **iptw_info},
        "warnings": list(model.warnings_),
        "balance_gate": balance_gate(balance_df, share, bcfg["smd_threshold"],
                                     bcfg["min_share_treated_matched"]),
    }
    return ps_df, matched_df, balance_df, diagnostics


def match_files(cohort: str, propensity: dict, matching: dict, weights: dict, balance: dict,
                ps_out: str, matched_out: str, balance_out: str, diagnostics_out: str,
                sensitivity: bool = False) -> None:
    """File-level match stage (called by the Snakemake adapter).

    With ``sensitivity`` (the complete-case variant), a propensity model that cannot be
    fitted does not stop the workflow: the outputs are written empty, with the reason in
    ``diagnostics["failed"]``, and the analysis that uses them reports "not estimable".
    """
    import logging

    from hdank import io

    frame = pd.read_parquet(cohort)
    try:
        ps_df, matched_df, balance_df, diagnostics = run_matching(frame, propensity, matching, weights, balance)
    except PropensityModelError as error:
        if not sensitivity:
            raise
        logging.getLogger(__name__).warning("sensitivity matching not estimable: %s", error)
        io.write_parquet(pd.DataFrame({c: pd.Series(dtype="float64") for c in PS_COLUMNS}), ps_out)
        io.write_parquet(frame.iloc[:0].assign(pair_id=pd.Series(dtype="int64"),
                                               match_weight=pd.Series(dtype="float64")), matched_out)
        io.write_parquet(pd.DataFrame({"covariate": pd.Series(dtype="string")}), balance_out)
        io.write_json({"failed": str(error), "propensity": {"missing": propensity.get("missing")}},
                      diagnostics_out)
        return
    if not sensitivity and diagnostics["n_treated_matched"] == 0:
        width = diagnostics["caliper_logit"]
        raise StudyError(
            f"matching left both matched arms empty: 0 of {diagnostics['n_treated']} HD-ANK patients have a "
            f"SOC match (of {diagnostics['n_control']}) within the caliper of matching.caliper_sd = "
            f"{diagnostics['caliper_sd']} SD of the logit ({'none' if width is None else f'{width:.3g}'}); the "
            f"primary analysis needs matched pairs. Widen matching.caliper_sd or check the propensity model.")
    io.write_parquet(ps_df, ps_out)
    io.write_parquet(matched_df, matched_out)
    io.write_parquet(balance_df, balance_out)
    io.write_json(diagnostics, diagnostics_out)
    logging.getLogger(__name__).info("matched %d of %d treated; balance gate %s",
                                     diagnostics["n_treated_matched"], diagnostics["n_treated"],
                                     "passed" if diagnostics["balance_gate"]["passed"] else "FAILED")
