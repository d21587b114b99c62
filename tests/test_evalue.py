"""E-values against the published worked example and hand calculations."""

from __future__ import annotations

import math

import pytest

from hdank.evalue import evalue_hr, evalue_rr, hr_to_rr


def test_published_example_vanderweele_ding_2017():
    """Ann Intern Med 2017;167:268: RR 3.9 (95% CI 1.8-8.7) -> E-values 7.26 and 3.0."""
    assert evalue_rr(3.9) == pytest.approx(7.26, abs=0.005)
    assert evalue_rr(1.8) == pytest.approx(3.0, abs=1e-12)  # 1.8 + sqrt(1.44)
    out = evalue_hr(3.9, 1.8, 8.7, rare=True)
    assert out["evalue"] == pytest.approx(3.9 + math.sqrt(3.9 * 2.9))
    assert out["evalue_ci"] == pytest.approx(1.8 + math.sqrt(1.8 * 0.8))
    assert out["conversion"] == "hr"


def test_protective_estimate_uses_inverse_and_upper_limit():
    # RR 0.8 -> 1/0.8 = 1.25 -> 1.25 + sqrt(1.25 * 0.25)
    assert evalue_rr(0.8) == pytest.approx(1.25 + math.sqrt(1.25 * 0.25))
    out = evalue_hr(0.5, 0.3, 0.8, rare=True)
    assert out["evalue_ci"] == pytest.approx(evalue_rr(0.8))


def test_common_outcome_square_root_conversion_by_hand():
    hr = 0.56
    rr = (1 - 0.5 ** math.sqrt(hr)) / (1 - 0.5 ** math.sqrt(1 / hr))
    assert hr_to_rr(hr, rare=False) == pytest.approx(rr)
    assert rr == pytest.approx(0.6701, abs=1e-4)  # milder than the HR itself
    out = evalue_hr(0.56, 0.46, 0.69, rare=False)
    assert out["evalue"] == pytest.approx(1 / rr + math.sqrt(1 / rr * (1 / rr - 1)))
    rr_hi = hr_to_rr(0.69, rare=False)
    assert out["evalue_ci"] == pytest.approx(evalue_rr(rr_hi))
    assert out["conversion"] == "sqrt-hr"
    assert hr_to_rr(1.0, rare=False) == pytest.approx(1.0)


def test_interval_containing_one_and_rule_selection():
    out = evalue_hr(0.9, 0.6, 1.3, outcome_risk=0.30)
    assert out["evalue_ci"] == 1.0 and out["rr_ci_limit"] is None
    assert out["rare"] is False and out["conversion"] == "sqrt-hr"
    assert evalue_hr(0.9, 0.6, 1.3, outcome_risk=0.05)["rare"] is True
    assert evalue_rr(1.0) == 1.0


def test_errors():
    with pytest.raises(ValueError):
        evalue_rr(0.0)
    with pytest.raises(ValueError, match="rare"):
        evalue_hr(1.2, 1.0, 1.5)
    with pytest.raises(ValueError, match="lower <= hr <= upper"):
        evalue_hr(1.2, 1.3, 1.5, rare=True)
