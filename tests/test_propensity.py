"""Propensity model and weights on hand-made examples (expected values computed by hand)."""

import numpy as np
import pandas as pd
import pytest

from hdank.propensity import (ConvergenceError, PropensityModel, PropensityModelError,
                              SeparationError, design_matrix, iptw_weights, learn_design,
                              overlap_weights)


def tiny():
    return pd.DataFrame({
        "patient_id": [1, 2, 3, 4, 5, 6],
        "treated": [1, 0, 1, 0, 1, 0],
        "cov_num_age": [70.0, np.nan, 50.0, 60.0, np.nan, 40.0],
        "cov_bin_dm": pd.array([1, 0, None, 1, 0, 0], dtype="Int8"),
        "cov_cat_sex": ["M", "F", "U", None, "M", "M"],
        "cov_num_const": [5.0] * 6,
        "cov_num_full": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0],
    })


def test_design_matrix_indicator_mode():
    df = tiny()
    # six rows cannot hold eight independent columns: switch the collinearity check off here
    spec = learn_design(df, ["cov_num_age", "cov_bin_dm", "cov_cat_sex", "cov_num_const",
                             "cov_num_full"], collinearity_tol=0.0)
    x = design_matrix(df, spec)
    assert list(x.columns) == [
        "cov_num_age", "cov_num_age_missing", "cov_bin_dm", "cov_bin_dm_missing",
        "cov_cat_sex[F]", "cov_cat_sex[U]", "cov_cat_sex_missing", "cov_num_full"]
    # median of 70, 50, 60, 40 = 55; median of 1, 0, 1, 0, 0 = 0; mode of sex = M
    assert x["cov_num_age"].tolist() == [70, 55, 50, 60, 55, 40]
    assert x["cov_num_age_missing"].tolist() == [0, 1, 0, 0, 1, 0]
    assert x["cov_bin_dm"].tolist() == [1, 0, 0, 1, 0, 0]
    # M (3 of 5) is the reference level; the missing sex of row 4 is imputed as M
    assert x["cov_cat_sex[F]"].tolist() == [0, 1, 0, 0, 0, 0]
    assert x["cov_cat_sex[U]"].tolist() == [0, 0, 1, 0, 0, 0]
    assert x["cov_cat_sex_missing"].tolist() == [0, 0, 0, 1, 0, 0]
    assert "cov_num_full_missing" not in x                          # no missing values
    assert spec.levels["cov_cat_sex"] == ["M", "F", "U"]            # reference first
    assert any(w.startswith("cov_num_const: constant") for w in spec.warnings)
    assert spec.source["cov_cat_sex[U]"] == "cov_cat_sex"


def test_design_matrix_complete_case():
    df = tiny()
    spec = learn_design(df, ["cov_num_age", "cov_cat_sex"], "complete_case")
    x = design_matrix(df.dropna(subset=["cov_num_age", "cov_cat_sex"]), spec)
    # complete rows 1, 3, 6: sex M, U, M -> reference M
    assert list(x.columns) == ["cov_num_age", "cov_cat_sex[U]"]
    assert len(x) == 3 and not any(c.endswith("_missing") for c in x)


def test_duplicate_missingness_pattern_is_dropped_with_a_warning():
    df = tiny()
    df["cov_num_crp"] = [1.0, np.nan, 3.0, 4.0, np.nan, 6.0]        # same pattern as age
    spec = learn_design(df, ["cov_num_age", "cov_num_crp"])
    assert "cov_num_crp_missing" not in spec.columns
    assert any(w.startswith("cov_num_crp_missing: a linear combination") for w in spec.warnings)


def test_bad_inputs_name_the_column():
    df = tiny()
    with pytest.raises(PropensityModelError, match="cov_num_nope"):
        learn_design(df, ["cov_num_nope"])
    with pytest.raises(PropensityModelError, match="role prefix"):
        learn_design(df.assign(age=1.0), ["age"])
    df["cov_bin_dm"] = [0, 1, 2, 0, 1, 0]
    with pytest.raises(PropensityModelError, match="cov_bin_dm.*other than 0/1"):
        learn_design(df, ["cov_bin_dm"])


def test_single_binary_covariate_gives_the_log_odds_ratio():
    # x = 1: 3 treated, 1 control; x = 0: 2 treated, 4 controls.
    # MLE: intercept = log(2/4), coefficient = log(3/1) - log(2/4) = log 6.
    df = pd.DataFrame({"treated": [1, 1, 1, 0, 1, 1, 0, 0, 0, 0],
                       "cov_bin_x": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]})
    m = PropensityModel(["cov_bin_x"]).fit(df)
    assert m.coef_["const"] == pytest.approx(np.log(0.5), abs=1e-8)
    assert m.coef_["cov_bin_x"] == pytest.approx(np.log(6), abs=1e-8)
    np.testing.assert_allclose(m.ps_, [0.75] * 4 + [1 / 3] * 6, atol=1e-8)
    np.testing.assert_allclose(m.decision_function(df), m.logit_, atol=1e-12)


def _confounded(n=200, seed=5):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"cov_num_a": rng.normal(size=n), "cov_num_b": rng.normal(size=n),
                       "cov_cat_g": rng.choice(["x", "y", "z"], n)})
    df["treated"] = (rng.random(n) < 1 / (1 + np.exp(-df["cov_num_a"]))).astype(int)
    return df


def test_fit_agrees_with_statsmodels_on_dummies():
    import statsmodels.api as sm
    df = _confounded()
    m = PropensityModel(["cov_num_a", "cov_cat_g"]).fit(df)
    x = sm.add_constant(pd.get_dummies(df[["cov_num_a", "cov_cat_g"]], drop_first=True, dtype=float))
    ref = sm.Logit(df["treated"], x).fit(disp=False)
    # the linear predictor does not depend on the reference level
    np.testing.assert_allclose(m.logit_, ref.fittedvalues, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.coef_["cov_num_a"], ref.params["cov_num_a"], rtol=1e-8)
    reference = df["cov_cat_g"].value_counts().idxmax()
    assert m.spec_.levels["cov_cat_g"][0] == reference
    assert list(m.coef_.index) == ["const", "cov_num_a"] + [
        f"cov_cat_g[{v}]" for v in sorted({"x", "y", "z"} - {reference})]


def test_rare_level_in_one_arm_only_raises_naming_the_covariate():
    df = _confounded()
    df.loc[df.index[:3], "cov_cat_g"] = "rare"
    df.loc[df.index[:3], "treated"] = 1
    with pytest.raises(SeparationError, match=r"cov_cat_g.*cov_cat_g\[rare\]: all 3 patients "
                       r"with value 1 are treated"):
        PropensityModel(["cov_num_a", "cov_cat_g"]).fit(df)


def test_arm_pure_missing_indicator_is_dropped_with_a_warning():
    df = _confounded()
    df["cov_num_crp"] = np.where(np.arange(len(df)) % 9 == 0, 50.0, 60.0)
    df.loc[df.index[df["treated"] == 0][:2], "cov_num_crp"] = np.nan
    model = PropensityModel(["cov_num_a", "cov_num_crp"]).fit(df)
    assert "cov_num_crp_missing" not in model.spec_.columns
    assert "cov_num_crp" in model.spec_.columns  # median-imputed value kept
    assert any("cov_num_crp_missing: all 2 patients with value 1 are control" in w for w in model.warnings_)


def test_numeric_separation_raises_naming_the_covariate():
    df = _confounded()
    df["cov_num_age"] = np.where(df["treated"] == 1, 70.0, 40.0) + np.arange(len(df)) * 1e-3
    with pytest.raises(SeparationError, match=r"\['cov_num_age'\]"):
        PropensityModel(["cov_num_a", "cov_num_age"]).fit(df)


def test_multivariable_separation_raises_naming_the_covariates():
    df = _confounded()
    df["treated"] = (df["cov_num_a"] + df["cov_num_b"] > 0).astype(int)   # no single column separates
    with pytest.raises(SeparationError, match=r"cov_num_a.*cov_num_b"):
        PropensityModel(["cov_num_a", "cov_num_b", "cov_cat_g"]).fit(df)


def test_non_convergence_raises():
    with pytest.raises(ConvergenceError, match="did not converge in 1 iterations"):
        PropensityModel(["cov_num_a", "cov_num_b"], maxiter=1).fit(_confounded())


def test_one_arm_only_raises():
    df = _confounded().assign(treated=1)
    with pytest.raises(PropensityModelError, match="both treated and control"):
        PropensityModel(["cov_num_a"]).fit(df)


def test_stabilised_iptw_and_overlap_weights_by_hand():
    ps = np.array([0.25, 0.5, 0.75, 0.375])
    t = np.array([1, 1, 0, 0])
    # P(T) = 0.5: treated 0.5/0.25, 0.5/0.5; controls 0.5/0.25, 0.5/0.625
    w, info = iptw_weights(ps, t, truncate_percentiles=None)
    np.testing.assert_allclose(w, [2.0, 1.0, 2.0, 0.8], rtol=1e-15)
    assert info["p_treated"] == 0.5 and info["n_truncated"] == 0
    # sorted weights 0.8, 1, 2, 2: 25th percentile = 0.8 + 0.75 (1 - 0.8) = 0.95,
    # 75th percentile = 2 (linear interpolation, R's quantile type 7)
    w, info = iptw_weights(ps, t, truncate_percentiles=[25, 75])
    np.testing.assert_allclose(w, [2.0, 1.0, 2.0, 0.95], rtol=1e-14)
    np.testing.assert_allclose(info["bounds"], [0.95, 2.0], rtol=1e-14)
    assert info["n_truncated"] == 1
    np.testing.assert_allclose(overlap_weights(ps, t), [0.75, 0.5, 0.75, 0.375], rtol=1e-15)


def test_single_level_categorical_is_dropped_with_a_warning():
    df = _confounded().assign(cov_cat_site="A")
    m = PropensityModel(["cov_num_a", "cov_cat_site"]).fit(df)
    assert list(m.coef_.index) == ["const", "cov_num_a"]
    assert m.warnings_ == ["cov_cat_site: a single level ('A') among the rows used; "
                           "dropped from the propensity model"]


def test_log_transform_enters_the_log_and_rejects_non_positive_values():
    from hdank.propensity import design_matrix, learn_design

    df = pd.DataFrame({"cov_num_crp": [1.0, np.e, np.nan, np.e**2], "treated": [0, 1, 0, 1]})
    spec = learn_design(df, ["cov_num_crp"], log=["cov_num_crp"])
    x = design_matrix(df, spec)
    assert x["cov_num_crp"].tolist() == pytest.approx([0.0, 1.0, 1.0, 2.0])  # median of logs imputed
    assert x["cov_num_crp_missing"].tolist() == [0, 0, 1, 0]
    df.loc[0, "cov_num_crp"] = 0.0
    with pytest.raises(PropensityModelError, match=r"log-transformed .* values <= 0 in rows \[0\]"):
        learn_design(df, ["cov_num_crp"], log=["cov_num_crp"])
