"""Matching on a scalar score (the logit of the propensity score).

Nearest-neighbour (greedy) matching follows MatchIt's ``method = "nearest"`` for a
distance *vector* (MatchIt 4.5.1, ``nn_matchC_vec``), so that the same inputs give the same
matched set:

* All units are ordered by the key ``(score, id)``.  For a treated unit, the *candidates*
  are the nearest still-available control below it and the nearest still-available control
  above it in that order.  The closer candidate wins; at equal distance the one below wins,
  i.e. the lower score.  Among controls with the treated unit's own score, the candidate
  below is the one with the largest id smaller than the treated unit's id and the one above
  the one with the smallest id larger than it; both are 0 away, so the one below wins when
  it exists.  A candidate farther than the caliper is no candidate (``distance <= caliper``
  is inside).
* Treated units are processed in ``order``: ``"largest"`` score first (ties: smaller id
  first), ``"smallest"`` score first (ties: smaller id first) or ``"data"`` (input order).
* ``ratio = k``: k rounds; in round r every treated unit that found a control in round
  r - 1 takes its r-th control, in the same order (MatchIt's round structure).
* ``replace = True``: controls stay available; a treated unit never takes the same control
  twice, so its k controls are its k nearest (ties as above).

With ids = patient ids and rows in patient-id order (the cohort's order), this is exactly
MatchIt's stable sort of the rows by score (tests/test_matchit_agreement.py checks identical
matched sets).  Two defects of MatchIt 4.5.1 are deliberately not reproduced: its integer
``abs()`` (truncates score differences to whole numbers) and, for ``ratio > 1``, an
off-by-one in "already matched to this treated unit" (see that test module).

The greedy algorithm is O(n log n): one sort,
then for each match two "nearest available control to the left / right" look-ups in
union-find next-pointer arrays with path halving; no distance matrix is formed.

Optimal matching minimises the total |score difference| among assignments that match the
largest possible number of treated-control slots within the caliper
(:func:`scipy.optimize.linear_sum_assignment` on the caliper-restricted cost).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

ORDERS = ("largest", "smallest", "data")
METHODS = ("nearest", "optimal")
PAIR_COLUMNS = ["pair_id", "treated_row", "control_row", "rank", "distance", "weight"]


def caliper_width(score: np.ndarray, caliper_sd: float | None) -> float | None:
    """Caliper in score units: ``caliper_sd`` times the SD (n - 1) of ``score`` over all units.

    This is MatchIt's ``std.caliper = TRUE``: the SD is taken over treated and control
    units together, not pooled within arms.
    """
    if caliper_sd is None:
        return None
    return float(caliper_sd) * float(np.std(np.asarray(score, dtype=float), ddof=1))


def treated_order(score: np.ndarray, ids: np.ndarray, rows: np.ndarray, order: str) -> np.ndarray:
    """Rows of treated units in the order they are matched (see module docstring)."""
    rows = np.asarray(rows)
    if order == "largest":
        return rows[np.lexsort((ids[rows], -score[rows]))]
    if order == "smallest":
        return rows[np.lexsort((ids[rows], score[rows]))]
    if order == "data":
        return np.sort(rows)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def _check_inputs(score, treated, ids):
    score = np.asarray(score, dtype=float)
    treated = np.asarray(treated)
    n = score.shape[0]
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if treated.shape != (n,) or ids.shape != (n,):
        raise ValueError("score, treated and ids must be 1-d arrays of the same length")
    if not np.isfinite(score).all():
        raise ValueError(f"score has {int((~np.isfinite(score)).sum())} missing or infinite value(s)")
    if not np.isin(treated, (0, 1)).all():
        raise ValueError("treated must be 0/1")
    if pd.Index(ids).has_duplicates:
        raise ValueError("ids must be unique")
    return score, treated.astype(bool), ids


def _sorted_controls(score, treated, ids):
    """Control rows sorted by (score, id) and, per unit, the number of controls before it."""
    key = np.lexsort((ids, score))
    is_control = ~treated[key]
    before = np.empty(score.shape[0], dtype=np.int64)
    before[key] = np.cumsum(is_control) - is_control
    return key[is_control], before


def _pairs_frame(t_rows, c_rows, ranks, dists, processed) -> pd.DataFrame:
    """Pairs table from match records; pair_id follows the treated processing order."""
    t_rows = np.asarray(t_rows, dtype=np.int64)
    if t_rows.size == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c not in ("distance", "weight")
                                          else "float64") for c in PAIR_COLUMNS})
    position = np.empty(int(max(processed.max(), t_rows.max())) + 1, dtype=np.int64)
    position[processed] = np.arange(processed.size)
    pairs = pd.DataFrame({"treated_row": t_rows, "control_row": np.asarray(c_rows, dtype=np.int64),
                          "rank": np.asarray(ranks, dtype=np.int64),
                          "distance": np.asarray(dists, dtype=float)})
    pairs["_pos"] = position[t_rows]
    pairs = pairs.sort_values(["_pos", "rank"], kind="stable").reset_index(drop=True)
    pairs.insert(0, "pair_id", (pairs["_pos"].rank(method="dense").astype(np.int64)))
    pairs = pairs.drop(columns="_pos")
    pairs["weight"] = _control_row_weights(pairs)
    return pairs[PAIR_COLUMNS]


def _control_row_weights(pairs: pd.DataFrame) -> np.ndarray:
    """MatchIt-style weight of each control row: 1/k_i scaled to sum to the controls used."""
    k = pairs.groupby("pair_id")["control_row"].transform("size").to_numpy()
    n_used = pairs["control_row"].nunique()
    n_pairs = pairs["pair_id"].nunique()
    return (1.0 / k) * (n_used / n_pairs)


def nearest_match(score, treated, ids=None, caliper: float | None = None, ratio: int = 1,
                  replace: bool = False, order: str = "largest") -> pd.DataFrame:
    """Greedy nearest-neighbour matching on ``score`` (MatchIt ``method = "nearest"``).

    Parameters
    ----------
    score : array-like of float
        Matching score of every unit (the logit of the propensity score).
    treated : array-like of {0, 1}
        Treatment indicator.
    ids : array-like, optional
        Unique ids that break ties (default: row numbers).
    caliper : float, optional
        Maximum |score difference| of a match, in score units (see :func:`caliper_width`).
    ratio : int, default 1
        Controls per treated unit (k:1).
    replace : bool, default False
        Whether a control may be matched to several treated units.
    order : {"largest", "smallest", "data"}, default "largest"
        Order in which treated units are matched.

    Returns
    -------
    pandas.DataFrame
        One row per (treated, control) match, columns ``pair_id`` (1.. in matching order),
        ``treated_row`` and ``control_row`` (row positions in the inputs), ``rank`` (1..k),
        ``distance`` (|score difference|) and ``weight`` (MatchIt-style control weight of
        the row; the rows of one control add up to its MatchIt weight).  Ordered by
        ``pair_id`` then ``rank``.

    Notes
    -----
    Tie-breaking and the round structure are described in the module docstring.  The
    running time is O(n log n) and memory O(n).
    """
    score, treated, ids = _check_inputs(score, treated, ids)
    ratio = _check_ratio(ratio)
    cal = np.inf if caliper is None else float(caliper)
    controls, before = _sorted_controls(score, treated, ids)
    t_rows = treated_order(score, ids, np.flatnonzero(treated), order)
    match = _greedy_with_replacement if replace else _greedy_without_replacement
    j, k, r, d = match(score[controls], score[t_rows], before[t_rows], cal, ratio)
    return _pairs_frame(t_rows[j], controls[k], r, d, t_rows)


def _check_ratio(ratio) -> int:
    if int(ratio) != ratio or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    return int(ratio)


def _greedy_without_replacement(cs, ts, pos, cal, ratio):
    """Sequential greedy matching with union-find 'next available' pointers.

    ``cs``: control scores sorted by (score, id); ``ts``/``pos``: treated scores and the
    number of controls before each treated unit in that order, both in processing order.
    ``left[i]`` (i = control + 1, 0 = none) and ``right[i]`` (i = control, n0 = none) point
    towards the nearest available control on each side.
    """
    n0 = len(cs)
    csl, tsl, posl = cs.tolist(), ts.tolist(), pos.tolist()
    left, right = list(range(n0 + 1)), list(range(n0 + 1))
    inf = float("inf")
    out_j, out_k, out_r, out_d = [], [], [], []
    active = range(len(tsl))
    for rnd in range(1, ratio + 1):
        still = []
        for j in active:
            s, p = tsl[j], posl[j]
            x = p
            while left[x] != x:
                left[x] = left[left[x]]
                x = left[x]
            a = x - 1
            x = p
            while right[x] != x:
                right[x] = right[right[x]]
                x = right[x]
            b = x
            dl = s - csl[a] if a >= 0 else inf
            dr = csl[b] - s if b < n0 else inf
            if dl > cal:
                dl = inf
            if dr > cal:
                dr = inf
            if dl <= dr and dl != inf:
                k, d = a, dl
            elif dr != inf:
                k, d = b, dr
            else:
                continue
            left[k + 1] = k
            right[k] = k + 1
            out_j.append(j), out_k.append(k), out_r.append(rnd), out_d.append(d)
            still.append(j)
        active = still
    return (np.asarray(out_j, dtype=np.int64), np.asarray(out_k, dtype=np.int64),
            np.asarray(out_r, dtype=np.int64), np.asarray(out_d, dtype=float))


def _greedy_with_replacement(cs, ts, pos, cal, ratio):
    """Each treated unit walks outwards from its position: k rounds of two pointers."""
    n0 = len(cs)
    lo, hi = pos - 1, pos.copy()
    idx = np.arange(len(ts))
    out = []
    for rnd in range(1, ratio + 1):
        dl = np.where(lo >= 0, ts - cs[np.clip(lo, 0, None)], np.inf) if n0 else np.full(len(ts), np.inf)
        dr = np.where(hi < n0, cs[np.clip(hi, None, n0 - 1)] - ts, np.inf) if n0 else np.full(len(ts), np.inf)
        dl[dl > cal] = np.inf
        dr[dr > cal] = np.inf
        ok = np.isfinite(dl) | np.isfinite(dr)
        take_left = ok & (dl <= dr)
        k = np.where(take_left, lo, hi)
        d = np.where(take_left, dl, dr)
        out.append((idx[ok], k[ok], np.full(int(ok.sum()), rnd), d[ok]))
        lo = lo - take_left
        hi = hi + (ok & ~take_left)
    j, k, r, d = (np.concatenate(parts) for parts in zip(*out))
    return j.astype(np.int64), k.astype(np.int64), r.astype(np.int64), d.astype(float)


def naive_nearest_match(score, treated, ids=None, caliper: float | None = None, ratio: int = 1,
                        replace: bool = False, order: str = "largest") -> pd.DataFrame:
    """All-pairs reference for :func:`nearest_match` (O(n_treated x n_control) time).

    For each treated unit in turn it computes the distance to every control, takes the
    minimum over available controls and resolves ties by the documented rule.  Meant for
    tests and the benchmark baseline only; same parameters and result as
    :func:`nearest_match`.
    """
    score, treated, ids = _check_inputs(score, treated, ids)
    ratio = _check_ratio(ratio)
    cal = np.inf if caliper is None else float(caliper)
    controls, before = _sorted_controls(score, treated, ids)
    cs = score[controls]
    t_rows = treated_order(score, ids, np.flatnonzero(treated), order)
    available = np.ones(cs.size, dtype=bool)
    taken = {j: [] for j in range(t_rows.size)}
    out = []
    active = list(range(t_rows.size))
    for rnd in range(1, ratio + 1):
        still = []
        for j in active:
            s, p = score[t_rows[j]], before[t_rows[j]]
            d = np.abs(cs - s)
            d[~available] = np.inf
            d[taken[j]] = np.inf
            best = d.min() if d.size else np.inf
            if not (np.isfinite(best) and best <= cal):
                continue
            tied = np.flatnonzero(d == best)
            below = tied[tied < p]
            k = below.max() if below.size else tied[tied >= p].min()
            out.append((j, k, rnd, best))
            taken[j].append(k)
            if not replace:
                available[k] = False
            still.append(j)
        active = still
    j, k, r, d = (np.asarray(v) for v in zip(*out)) if out else ([], [], [], [])
    return _pairs_frame(t_rows[np.asarray(j, dtype=np.int64)], controls[np.asarray(k, dtype=np.int64)],
                        r, d, t_rows)


def optimal_match(score, treated, ids=None, caliper: float | None = None, ratio: int = 1,
                  order: str = "largest", max_cells: int = 25_000_000) -> pd.DataFrame:
    """Optimal k:1 matching without replacement on |score difference|.

    Among all assignments of at most ``ratio`` distinct controls per treated unit that use
    no pair outside the caliper, it first maximises the number of matched slots and then
    minimises the total distance (a big-M cost on out-of-caliper pairs, solved by
    :func:`scipy.optimize.linear_sum_assignment` on the dense treated-slot x control cost).
    Equal-cost solutions are resolved by the solver, deterministically for given inputs.

    Parameters
    ----------
    score, treated, ids, caliper, ratio, order
        As :func:`nearest_match`; ``order`` only numbers the pairs.
    max_cells : int, default 25_000_000
        Largest cost matrix (treated x ratio x controls) accepted; beyond it use greedy.

    Returns
    -------
    pandas.DataFrame
        Same layout as :func:`nearest_match`; within a pair, controls by distance then
        (score, id).
    """
    score, treated, ids = _check_inputs(score, treated, ids)
    ratio = _check_ratio(ratio)
    controls, _ = _sorted_controls(score, treated, ids)
    t_rows = treated_order(score, ids, np.flatnonzero(treated), order)
    cells = t_rows.size * ratio * controls.size
    if cells > max_cells:
        raise ValueError(f"optimal matching needs a {t_rows.size * ratio} x {controls.size} cost "
                         f"matrix ({cells} cells > max_cells={max_cells}); use method='nearest'")
    if cells == 0:
        return _pairs_frame([], [], [], [], t_rows)
    slots = np.repeat(t_rows, ratio)
    cost = np.abs(score[slots][:, None] - score[controls][None, :])
    allowed = cost <= (np.inf if caliper is None else float(caliper))
    big = float(cost[allowed].sum()) + 1.0 if allowed.any() else 1.0
    cost[~allowed] = big
    r_idx, c_idx = linear_sum_assignment(cost)
    keep = allowed[r_idx, c_idx]
    r_idx, c_idx = r_idx[keep], c_idx[keep]
    j = r_idx // ratio
    d = cost[r_idx, c_idx]
    sort = np.lexsort((c_idx, d, j))
    j, c_idx, d = j[sort], c_idx[sort], d[sort]
    rank = np.ones(j.size, dtype=np.int64)
    for i in range(1, j.size):
        if j[i] == j[i - 1]:
            rank[i] = rank[i - 1] + 1
    return _pairs_frame(t_rows[j], controls[c_idx], rank, d, t_rows)


def unit_weights(pairs: pd.DataFrame, treated) -> np.ndarray:
    """MatchIt matching weights per unit: 1 for matched treated, summed row weights for controls."""
    treated = np.asarray(treated)
    w = np.zeros(treated.shape[0], dtype=float)
    w[pairs["treated_row"].unique()] = 1.0
    np.add.at(w, pairs["control_row"].to_numpy(), pairs["weight"].to_numpy())
    return w


class PropensityScoreMatcher:
    """Caliper matching on a score, in the scikit-learn style.

    Parameters
    ----------
    method : {"nearest", "optimal"}, default "nearest"
        Greedy nearest neighbour (MatchIt semantics) or optimal matching.
    ratio : int, default 1
        Controls per treated unit.
    replace : bool, default False
        Match with replacement (for ``"optimal"`` this is the same as nearest with
        replacement: every treated unit simply takes its nearest controls).
    caliper_sd : float or None, default 0.2
        Caliper in SDs of the score over all units; None for no caliper.
    order : {"largest", "smallest", "data"}, default "largest"
        Order in which treated units are matched (and pairs numbered).

    Attributes
    ----------
    sd_ : float
        SD (n - 1) of the score over all units.
    caliper_ : float or None
        Caliper in score units.
    pairs_ : pandas.DataFrame
        The matches (see :func:`nearest_match`).
    weights_ : numpy.ndarray
        MatchIt-style matching weight of every unit (0 if unmatched).
    n_treated_matched_, n_controls_used_ : int
        Matched treated units and distinct controls used.
    """

    def __init__(self, method: str = "nearest", ratio: int = 1, replace: bool = False,
                 caliper_sd: float | None = 0.2, order: str = "largest"):
        self.method = method
        self.ratio = ratio
        self.replace = replace
        self.caliper_sd = caliper_sd
        self.order = order

    def fit(self, score, treated, ids=None) -> "PropensityScoreMatcher":
        """Match treated to control units on ``score``; returns self."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        score, treated_b, ids = _check_inputs(score, treated, ids)
        self.sd_ = float(np.std(score, ddof=1)) if score.size > 1 else float("nan")
        self.caliper_ = caliper_width(score, self.caliper_sd)
        args = dict(caliper=self.caliper_, ratio=self.ratio, order=self.order)
        if self.method == "optimal" and not self.replace:
            self.pairs_ = optimal_match(score, treated_b, ids, **args)
        else:
            self.pairs_ = nearest_match(score, treated_b, ids, replace=self.replace, **args)
        self.weights_ = unit_weights(self.pairs_, treated_b)
        self.n_treated_matched_ = int(self.pairs_["treated_row"].nunique())
        self.n_controls_used_ = int(self.pairs_["control_row"].nunique())
        return self
