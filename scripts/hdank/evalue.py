"""E-values for hazard ratios (VanderWeele & Ding, Ann Intern Med 2017;167:268-274).

The E-value of a risk ratio ``RR >= 1`` is ``RR + sqrt(RR (RR - 1))`` (use ``1/RR`` below 1):
the minimum strength of association, on the risk-ratio scale, that an unmeasured confounder
would need with both treatment and outcome to explain the estimate away.  For the confidence
interval the same formula is applied to the limit closest to 1 (E-value 1 if the interval
contains 1).

A hazard ratio approximates a risk ratio only when the outcome is rare at the end of
follow-up (VanderWeele's rule of thumb: cumulative incidence < 15%).  For a common outcome
VanderWeele (Biometrics 2020, "Optimal approximate conversions of odds ratios and hazard
ratios to risk ratios") converts it first::

    RR ~ (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR))

This pipeline's outcome (28-day in-hospital death after NIV, ~30%) is common, so
:func:`evalue_hr` uses the conversion whenever the observed risk is >= ``threshold`` (0.15),
and says which it used.
"""

from __future__ import annotations

import math

__all__ = ["evalue_rr", "hr_to_rr", "evalue_hr", "RARE_OUTCOME_THRESHOLD"]

#: Cumulative incidence below which the outcome counts as rare (VanderWeele & Ding 2017).
RARE_OUTCOME_THRESHOLD = 0.15


def evalue_rr(rr: float) -> float:
    """E-value of a risk ratio: ``RR + sqrt(RR (RR-1))`` with ``RR`` taken >= 1."""
    if not (rr > 0) or math.isinf(rr):
        raise ValueError(f"risk ratio must be positive and finite, got {rr}")
    if rr < 1:
        rr = 1 / rr
    return rr + math.sqrt(rr * (rr - 1))


def hr_to_rr(hr: float, rare: bool) -> float:
    """Risk ratio approximated from a hazard ratio (identity when the outcome is rare)."""
    if not (hr > 0) or math.isinf(hr):
        raise ValueError(f"hazard ratio must be positive and finite, got {hr}")
    if rare:
        return hr
    return (1 - 0.5 ** math.sqrt(hr)) / (1 - 0.5 ** math.sqrt(1 / hr))


def evalue_hr(hr: float, lower: float, upper: float, *, rare: bool | None = None,
              outcome_risk: float | None = None,
              threshold: float = RARE_OUTCOME_THRESHOLD) -> dict:
    """E-values of a hazard ratio and of its confidence limit closest to 1.

    Parameters
    ----------
    hr, lower, upper : float
        Point estimate and confidence limits.
    rare : bool, optional
        Whether the outcome is rare; if None, decided from ``outcome_risk < threshold``.
    outcome_risk : float, optional
        Observed cumulative risk at the end of follow-up (e.g. pooled KM risk at 28 days).
    threshold : float
        Rare-outcome threshold.

    Returns
    -------
    dict
        ``evalue``, ``evalue_ci``, ``rr``, ``rr_ci_limit`` (the converted limit closest to 1,
        or None), ``rare`` and ``conversion`` (``"hr"`` or ``"sqrt-hr"``).
    """
    if rare is None:
        if outcome_risk is None:
            raise ValueError("give rare=True/False or the observed outcome_risk")
        rare = outcome_risk < threshold
    if not (lower <= hr <= upper):
        raise ValueError(f"need lower <= hr <= upper, got {lower}, {hr}, {upper}")
    rr = hr_to_rr(hr, rare)
    if lower <= 1 <= upper:
        limit, e_ci = None, 1.0
    else:
        limit = hr_to_rr(lower if hr > 1 else upper, rare)
        e_ci = evalue_rr(limit)
    return {"evalue": evalue_rr(rr), "evalue_ci": e_ci, "rr": rr, "rr_ci_limit": limit,
            "rare": bool(rare), "conversion": "hr" if rare else "sqrt-hr"}
