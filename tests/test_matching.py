"""Matching on the score: hand-made examples with the expected matches written by hand.

Scores are small integers where a tie in distance matters, so that float rounding cannot
decide a tie.  Matches are compared exactly; weights to 1e-12.
"""

import numpy as np
import pandas as pd
import pytest

from hdank.match_stage import run_matching
from hdank.matching import (PropensityScoreMatcher, caliper_width, naive_nearest_match,
                            nearest_match, optimal_match, unit_weights)


def matches(pairs: pd.DataFrame, ids) -> dict:
    """{treated id: [control ids in rank order]} in pair_id order."""
    ids = np.asarray(ids)
    out = {}
    for _, g in pairs.groupby("pair_id", sort=True):
        out[int(ids[g["treated_row"].iloc[0]])] = [int(i) for i in ids[g["control_row"]]]
    return out


def units(rows):
    """(ids, treated, score) arrays from [(id, treated, score), ...]."""
    ids, treated, score = (np.array(c) for c in zip(*rows))
    return ids, treated, score.astype(float)


def test_caliper_excludes_far_control():
    ids, t, s = units([(1, 1, 0.0), (2, 0, 0.05), (3, 0, 3.0), (4, 1, 1.0)])
    # T4 (1.0) goes first: C2 is 0.95 and C3 2.0 away, both beyond the caliper of 0.5, so T4
    # stays unmatched; T1 (0.0) then takes C2 (0.05 away).
    pairs = nearest_match(s, t, ids, caliper=0.5)
    assert matches(pairs, ids) == {1: [2]}
    pairs = nearest_match(s, t, ids, caliper=None)
    assert matches(pairs, ids) == {4: [2], 1: [3]}   # without caliper T4 (largest) takes C2


def test_caliper_is_inclusive():
    ids, t, s = units([(1, 1, 10.0), (2, 0, 12.0)])
    assert matches(nearest_match(s, t, ids, caliper=2.0), ids) == {1: [2]}
    assert matches(nearest_match(s, t, ids, caliper=1.999), ids) == {}


def test_equidistant_controls_lower_score_wins():
    # T5 at 10 has C3 at 12 and C8 at 8, both 2 away: the lower score (C8) wins, whatever the ids.
    ids, t, s = units([(3, 0, 12.0), (5, 1, 10.0), (8, 0, 8.0)])
    assert matches(nearest_match(s, t, ids), ids) == {5: [8]}
    ids, t, s = units([(3, 0, 8.0), (5, 1, 10.0), (8, 0, 12.0)])
    assert matches(nearest_match(s, t, ids), ids) == {5: [3]}


def test_equal_scores_broken_by_id():
    # All five share one score.  Treated in id order (T1 then T5).  In the (score, id) order
    # T1 C2 C4 T5 C9: T1 has no control below and takes C2 above; T5 has C4 below and C9
    # above, both at distance 0, and takes the one below: C4.  (MatchIt does the same.)
    ids, t, s = units([(1, 1, 1.0), (2, 0, 1.0), (4, 0, 1.0), (5, 1, 1.0), (9, 0, 1.0)])
    pairs = nearest_match(s, t, ids)
    assert matches(pairs, ids) == {1: [2], 5: [4]}
    # row order does not matter, only ids
    perm = [4, 2, 0, 3, 1]
    pairs = nearest_match(s[perm], t[perm], ids[perm])
    assert matches(pairs, ids[perm]) == {1: [2], 5: [4]}


def test_largest_first_order_matters():
    ids, t, s = units([(1, 1, 10.0), (2, 1, 9.0), (3, 0, 9.5), (4, 0, 0.0)])
    assert matches(nearest_match(s, t, ids, caliper=2.0, order="largest"), ids) == {1: [3]}
    assert matches(nearest_match(s, t, ids, caliper=2.0, order="smallest"), ids) == {2: [3]}
    assert matches(nearest_match(s, t, ids, caliper=2.0, order="data"), ids) == {1: [3]}


def test_pair_ids_follow_matching_order():
    ids, t, s = units([(1, 1, 1.0), (2, 0, 1.1), (3, 1, 5.0), (4, 0, 5.2), (5, 1, 3.0), (6, 0, 3.1)])
    pairs = nearest_match(s, t, ids)
    assert pairs["pair_id"].tolist() == [1, 2, 3]
    assert list(matches(pairs, ids)) == [3, 5, 1]          # largest score first


def test_k_to_1_matches_in_rounds():
    # T1 = 50, T6 = 40; C2 = 50, C3 = 42, C4 = 10, C5 = 90, ratio 2.
    # Round 1: T1 -> C2 (0), T6 -> C3 (2).  Round 2: T1: below C4 (40), above C5 (40): tie,
    # lower wins -> C4; T6: C4 gone, C5 (50).  (Taking both controls per treated at once
    # would give T1 [C2, C3] and T6 [C4, C5].)
    ids, t, s = units([(1, 1, 50.0), (2, 0, 50.0), (3, 0, 42.0), (4, 0, 10.0), (5, 0, 90.0),
                       (6, 1, 40.0)])
    pairs = nearest_match(s, t, ids, ratio=2)
    assert matches(pairs, ids) == {1: [2, 4], 6: [3, 5]}
    assert pairs["rank"].tolist() == [1, 2, 1, 2]
    assert np.allclose(pairs["weight"], 1.0)


def test_k_to_1_weights_when_a_treated_gets_fewer_controls():
    # Round 1: T1 -> C2 (1), T4 -> C5 (1).  Round 2: T1: C3 and C7 both 2 away, lower wins
    # -> C3; T4: nothing within 3.  Weights follow MatchIt's rule (treated 1; control
    # 1/k per pair, rescaled to sum to the number of controls used).
    ids, t, s = units([(1, 1, 50.0), (2, 0, 49.0), (3, 0, 48.0), (4, 1, 30.0), (5, 0, 31.0),
                       (6, 0, 10.0), (7, 0, 52.0)])
    pairs = nearest_match(s, t, ids, caliper=3.0, ratio=2)
    assert matches(pairs, ids) == {1: [2, 3], 4: [5]}
    w = unit_weights(pairs, t)
    # raw control weights 1/2, 1/2, 1 (sum 2) rescaled to the 3 controls used
    np.testing.assert_allclose(w, [1, 0.75, 0.75, 1, 1.5, 0, 0], atol=1e-12)


def test_with_replacement_reuses_controls():
    ids, t, s = units([(1, 1, 50.0), (2, 0, 49.0), (3, 0, 10.0), (6, 1, 48.0)])
    pairs = nearest_match(s, t, ids, replace=True)
    assert matches(pairs, ids) == {1: [2], 6: [2]}
    np.testing.assert_allclose(pairs["weight"], [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(unit_weights(pairs, t), [1, 1, 0, 1], atol=1e-12)
    assert matches(nearest_match(s, t, ids, replace=False), ids) == {1: [2], 6: [3]}


def test_with_replacement_k_to_1_never_repeats_a_control():
    ids, t, s = units([(1, 1, 50.0), (2, 0, 49.0), (3, 0, 10.0), (4, 0, 52.0), (6, 1, 48.0)])
    pairs = nearest_match(s, t, ids, replace=True, ratio=2)
    assert matches(pairs, ids) == {1: [2, 4], 6: [2, 4]}


def test_optimal_matches_more_within_caliper_than_greedy():
    # Greedy (largest first): T1 takes C3 (1 away, vs C4 1.5), T2 is left with C4 3.5 away.
    # Optimal: T1 -> C4, T2 -> C3, both within the caliper of 2.
    ids, t, s = units([(1, 1, 10.0), (2, 1, 8.0), (3, 0, 9.0), (4, 0, 11.5)])
    assert matches(nearest_match(s, t, ids, caliper=2.0), ids) == {1: [3]}
    assert matches(optimal_match(s, t, ids, caliper=2.0), ids) == {1: [4], 2: [3]}


def test_optimal_minimises_total_distance_k_to_1():
    ids, t, s = units([(1, 1, 10.0), (2, 1, 20.0), (3, 0, 9.0), (4, 0, 12.0), (5, 0, 19.0),
                       (6, 0, 15.0)])
    pairs = optimal_match(s, t, ids, ratio=2)
    # T2 (first: largest) keeps C5 (1) and C6 (5); T1 keeps C3 (1) and C4 (2): total 9
    assert matches(pairs, ids) == {2: [5, 6], 1: [3, 4]}
    assert pairs["distance"].sum() == 9.0


def test_optimal_refuses_huge_problems():
    s = np.arange(10.0)
    with pytest.raises(ValueError, match="max_cells"):
        optimal_match(s, np.array([1, 0] * 5), max_cells=10)


def test_caliper_width_uses_sd_of_all_units():
    s = np.array([0.0, 1.0, 2.0, 3.0])          # SD (n - 1) = sqrt(5/3)
    assert caliper_width(s, 0.2) == pytest.approx(0.2 * np.sqrt(5 / 3), rel=1e-15)
    assert caliper_width(s, None) is None


def test_matcher_estimator_attributes():
    ids, t, s = units([(1, 1, 0.0), (2, 0, 0.1), (3, 0, 3.0), (4, 1, 1.0), (5, 0, 0.9)])
    m = PropensityScoreMatcher(caliper_sd=0.2).fit(s, t, ids)
    assert m.caliper_ == pytest.approx(0.2 * np.std(s, ddof=1))
    assert m.n_treated_matched_ == 2 and m.n_controls_used_ == 2
    assert matches(m.pairs_, ids) == {4: [5], 1: [2]}
    np.testing.assert_array_equal(m.weights_, [1, 1, 0, 1, 1])


@pytest.mark.parametrize("seed", range(40))
def test_greedy_equals_all_pairs_reference(seed):
    """The O(n log n) greedy gives the same matches as the all-pairs search (ties galore)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))
    s = rng.integers(0, 6, n).astype(float)
    t = rng.integers(0, 2, n)
    ids = rng.permutation(n) * 7 + 3
    cal = [None, 1.0, caliper_width(s, 0.2)][seed % 3]
    for ratio in (1, 2, 3):
        for replace in (False, True):
            order = ["largest", "smallest", "data"][(seed + ratio) % 3]
            fast = nearest_match(s, t, ids, cal, ratio, replace, order)
            slow = naive_nearest_match(s, t, ids, cal, ratio, replace, order)
            pd.testing.assert_frame_equal(fast, slow)


def _cohort(n=240, seed=11):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"patient_id": np.arange(1, n + 1) * 2,
                       "admission_id": np.arange(1, n + 1) * 10,
                       "cov_num_age": rng.normal(65, 10, n).round(1),
                       "cov_cat_sex": rng.choice(["F", "M"], n),
                       "cov_bin_diabetes": pd.array(rng.integers(0, 2, n), dtype="Int8"),
                       "cov_num_crp": rng.lognormal(4, 0.6, n)})
    df.loc[rng.random(n) < 0.15, "cov_num_crp"] = np.nan
    lp = -1.0 + 0.04 * (df["cov_num_age"] - 65)
    df.insert(2, "treated", (rng.random(n) < 1 / (1 + np.exp(-lp))).astype("int8"))
    return df


CFG = dict(propensity_cfg={"covariates": ["cov_num_age", "cov_cat_sex", "cov_bin_diabetes",
                                          "cov_num_crp"], "missing": "indicator"},
           weights_cfg={"truncate_percentiles": [1, 99]},
           balance_cfg={"smd_threshold": 0.1, "min_share_treated_matched": 0.8})


@pytest.mark.parametrize("matching_cfg", [
    {"method": "nearest", "ratio": 1, "replace": False, "caliper_sd": 0.2, "order": "largest"},
    {"method": "nearest", "ratio": 2, "replace": False, "caliper_sd": 0.2, "order": "largest"},
    {"method": "nearest", "ratio": 1, "replace": True, "caliper_sd": 0.2, "order": "largest"},
    {"method": "optimal", "ratio": 1, "replace": False, "caliper_sd": 0.2, "order": "largest"},
])
def test_run_matching_layouts(matching_cfg):
    cohort = _cohort()
    ps, matched, balance, diag = run_matching(cohort, matching_cfg=matching_cfg, **CFG)
    assert list(ps.columns) == ["patient_id", "treated", "ps", "logit_ps", "iptw", "overlap_weight"]
    assert ps["patient_id"].tolist() == cohort["patient_id"].tolist()
    assert ps[["ps", "logit_ps", "iptw", "overlap_weight"]].notna().all().all()
    np.testing.assert_allclose(ps["logit_ps"], np.log(ps["ps"] / (1 - ps["ps"])), atol=1e-9)
    assert list(matched.columns) == list(cohort.columns) + ["pair_id", "match_weight"]
    assert matched["pair_id"].dtype == np.int64
    assert matched["pair_id"].is_monotonic_increasing
    first = matched.groupby("pair_id").head(1)
    assert (first["treated"] == 1).all()                       # treated first in each pair
    assert (matched.groupby("pair_id")["treated"].sum() == 1).all()
    assert matched["pair_id"].max() == diag["n_treated_matched"]
    if not matching_cfg["replace"]:
        assert not matched["patient_id"].duplicated().any()
    if matching_cfg["ratio"] == 1 and not matching_cfg["replace"]:
        assert (matched["match_weight"] == 1.0).all()
    # weights of the control rows add up to the number of controls used (MatchIt scaling)
    ctrl = matched.loc[matched["treated"] == 0, "match_weight"].sum()
    assert ctrl == pytest.approx(diag["n_controls_used"])
    assert balance["covariate"].tolist() == [
        "cov_num_age", "cov_cat_sex[F]", "cov_cat_sex[M]", "cov_bin_diabetes", "cov_num_crp",
        "cov_num_crp_missing"]
    assert diag["n_treated"] + diag["n_control"] == len(cohort)
    assert diag["n_treated_matched"] + diag["n_treated_unmatched"] == diag["n_treated"]
    assert diag["caliper_logit"] == pytest.approx(0.2 * ps["logit_ps"].std(ddof=1))
    gate = diag["balance_gate"]
    failing = balance.loc[balance["smd_after"].abs() >= 0.1, "covariate"].tolist()
    assert gate["failing_covariates"] == failing
    assert gate["passed"] == (not failing and diag["share_treated_matched"] >= 0.8)


def test_run_matching_complete_case_leaves_incomplete_rows_out():
    cohort = _cohort()
    cfg = dict(CFG, propensity_cfg={**CFG["propensity_cfg"], "missing": "complete_case"})
    ps, matched, balance, diag = run_matching(cohort, matching_cfg={}, **cfg)
    incomplete = cohort["cov_num_crp"].isna().to_numpy()
    assert ps.loc[incomplete, ["ps", "iptw"]].isna().all().all()
    assert ps.loc[~incomplete, ["ps", "iptw"]].notna().all().all()
    assert diag["n_excluded_missing"] == incomplete.sum()
    assert not matched["patient_id"].isin(cohort.loc[incomplete, "patient_id"]).any()
    assert "cov_num_crp_missing" not in balance["covariate"].tolist()


def test_run_matching_is_deterministic():
    cohort = _cohort()
    a = run_matching(cohort, matching_cfg={}, **CFG)
    b = run_matching(cohort.sample(frac=1, random_state=3).sort_values("patient_id"),
                     matching_cfg={}, **CFG)
    for x, y in zip(a[:3], b[:3]):
        pd.testing.assert_frame_equal(x.reset_index(drop=True), y.reset_index(drop=True))
    assert a[3] == b[3]


def test_run_matching_with_no_match_reports_a_failed_gate():
    cohort = _cohort()
    cfg = {"method": "nearest", "caliper_sd": 1e-12}
    ps, matched, balance, diag = run_matching(cohort, matching_cfg=cfg, **CFG)
    assert diag["n_treated_matched"] == 0 and len(matched) == 0
    assert list(matched.columns) == list(cohort.columns) + ["pair_id", "match_weight"]
    assert balance["smd_after"].isna().all()
    gate = diag["balance_gate"]
    assert gate["passed"] is False and gate["share_ok"] is False
    assert gate["failing_covariates"] == balance["covariate"].tolist()


def test_diagnostics_are_strict_json():
    import json
    diag = run_matching(_cohort(), matching_cfg={}, **CFG)[3]
    text = json.dumps(diag, allow_nan=False, sort_keys=True)
    assert json.loads(text)["n_cohort"] == 240
