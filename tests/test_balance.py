"""Balance statistics on hand-computed examples (tolerance 1e-12 unless stated)."""

import numpy as np
import pandas as pd
import pytest

from hdank.balance import (BALANCE_COLUMNS, balance_gate, balance_matrix, balance_table,
                           smd, variance_ratio, weighted_mean, weighted_var)

TOL = dict(rel=1e-12, abs=1e-12)

# treated 1, 2, 3 (mean 2, var 1); controls 2, 4, 6, 8 (mean 5, var 20/3)
X = np.array([1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 8.0])
T = np.array([1, 1, 1, 0, 0, 0, 0])
DENOM = np.sqrt((1 + 20 / 3) / 2)


def test_smd_before_by_hand():
    assert smd(X, T) == pytest.approx((2 - 5) / DENOM, **TOL)          # -1.5322...
    assert smd(X, T) == pytest.approx(-1.532262, abs=1e-6)


def test_smd_after_uses_the_unmatched_denominator():
    w = np.array([1, 1, 0, 0, 1, 1, 0])            # treated 1, 2 (1.5); controls 4, 6 (5)
    assert smd(X, T, w) == pytest.approx((1.5 - 5) / DENOM, **TOL)
    # the matched sample's own SD would give a different number
    assert smd(X, T, w) != pytest.approx((1.5 - 5) / np.sqrt((0.5 + 2) / 2))


def test_binary_smd_uses_p_times_1_minus_p():
    x = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0], dtype=float)
    t = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    # p_t = 0.5, p_c = 0.2: (0.5 - 0.2) / sqrt((0.25 + 0.16) / 2)
    assert smd(x, t) == pytest.approx(0.3 / np.sqrt(0.205), **TOL)


def test_missing_values_are_left_out():
    x = np.array([1.0, np.nan, 3.0, 2.0, 4.0, 6.0, 8.0])
    # treated mean 2, var 2; controls mean 5, var 20/3
    assert smd(x, T) == pytest.approx(-3 / np.sqrt((2 + 20 / 3) / 2), **TOL)
    assert weighted_mean(x[:3]) == 2.0


def test_weighted_variance_and_ratio_by_hand():
    # w normalised 1/4, 1/4, 1/2; mean 2.25; sum w (x - m)^2 = 0.6875; 1 - sum w^2 = 0.625
    assert weighted_var([1.0, 2.0, 3.0], [1, 1, 2]) == pytest.approx(1.1, **TOL)
    assert weighted_var([1.0, 2.0, 3.0]) == pytest.approx(1.0, **TOL)
    assert weighted_var([1.0, 0.0, 0.0, 1.0], binary=True) == pytest.approx(0.25, **TOL)
    assert variance_ratio(X, T) == pytest.approx(1 / (20 / 3), **TOL)


def test_constant_column_has_zero_smd():
    assert smd(np.ones(7), T) == 0.0


def test_balance_matrix_columns():
    df = pd.DataFrame({"cov_num_age": [50.0, np.nan, 70.0],
                       "cov_cat_sex": ["M", "F", None],
                       "cov_bin_dm": pd.array([1, 0, 1], dtype="Int8")})
    x = balance_matrix(df, ["cov_num_age", "cov_cat_sex", "cov_bin_dm"])
    assert list(x.columns) == ["cov_num_age", "cov_num_age_missing", "cov_cat_sex[F]",
                               "cov_cat_sex[M]", "cov_cat_sex_missing", "cov_bin_dm"]
    np.testing.assert_array_equal(x["cov_cat_sex[F]"], [0, 1, np.nan])
    np.testing.assert_array_equal(x["cov_num_age_missing"], [0, 1, 0])
    assert (x.dtypes == float).all()


def test_balance_table_layout_and_values():
    x = pd.DataFrame({"cov_num_x": X, "cov_bin_b": [1, 0, 1, 0, 0, 1, 0]}, dtype=float)
    wm = np.array([1, 1, 0, 0, 1, 1, 0], dtype=float)
    wi = np.array([2, 1, 1, 1, 1, 1, 3], dtype=float)
    tab = balance_table(x, T, wm, wi)
    assert list(tab.columns) == BALANCE_COLUMNS
    row = tab.set_index("covariate").loc["cov_num_x"]
    assert row["mean_treated_before"] == 2 and row["mean_control_before"] == 5
    assert row["mean_treated_after"] == 1.5 and row["mean_control_after"] == 5
    assert row["smd_after"] == pytest.approx(-3.5 / DENOM, **TOL)
    # IPTW means: treated (2 + 2 + 3) / 4 = 1.75; controls (2 + 4 + 6 + 24) / 6 = 6
    assert row["smd_iptw"] == pytest.approx((1.75 - 6) / DENOM, **TOL)
    # matched: treated 1, 2 (var 0.5); controls 4, 6 (var 2)
    assert row["var_ratio_after"] == pytest.approx(0.25, **TOL)
    b = tab.set_index("covariate").loc["cov_bin_b"]
    assert np.isnan(b["var_ratio_before"])                     # not for binary columns
    assert b["smd_before"] == pytest.approx((2 / 3 - 1 / 4) / np.sqrt((2 / 9 + 3 / 16) / 2), **TOL)


def test_gate():
    tab = pd.DataFrame({"covariate": ["a", "b", "c"], "smd_after": [0.05, -0.12, np.nan]})
    gate = balance_gate(tab, 0.9, smd_threshold=0.1, min_share_treated_matched=0.8)
    assert gate["passed"] is False and gate["failing_covariates"] == ["b", "c"]
    assert gate["max_abs_smd_after"] == 0.12
    ok = balance_gate(tab.iloc[:1], 0.9)
    assert ok["passed"] is True and ok["failing_covariates"] == []
    low = balance_gate(tab.iloc[:1], 0.7)
    assert low["passed"] is False and low["share_ok"] is False
    assert balance_gate(tab.iloc[:1], 0.8)["passed"] is True       # share >= threshold
    assert balance_gate(tab.assign(smd_after=0.1).iloc[:1], 1.0)["passed"] is False  # |smd| < 0.1


def test_gate_ignores_rows_marked_not_gated():
    table = pd.DataFrame({"covariate": ["cov_num_a", "cov_num_a_missing"], "smd_after": [0.05, 0.4],
                          "gated": [True, False]})
    gate = balance_gate(table, 0.9, 0.1, 0.8)
    assert gate["passed"] and gate["failing_covariates"] == []
    table["gated"] = True
    assert balance_gate(table, 0.9, 0.1, 0.8)["failing_covariates"] == ["cov_num_a_missing"]
