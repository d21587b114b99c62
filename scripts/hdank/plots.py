"""Figures of the report as deterministic SVG strings (matplotlib, no pyplot state).

Each function takes aggregates that are already disclosure-controlled (counts as the strings to
print) and returns an :class:`Svg`: ``inline`` for the HTML (no XML prolog, no metadata, ids
prefixed so that several figures can share one page, counts marked ``data-count``) and
``standalone`` for ``results/report/figures/*.svg``.  Text stays text (``svg.fonttype`` none),
the hash salt is fixed and the date left out, so the same data give byte-identical SVG.
"""

from __future__ import annotations

import functools
import io
import re
import textwrap
from dataclasses import dataclass
from html import escape

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

HDANK = "#0072B2"   # Okabe-Ito blue
SOC = "#D55E00"     # Okabe-Ito vermillion
INK = "#222222"
MUTED = "#6b6b6b"
GRID = "#e3e3e3"
ARM_COLOURS = {"HD-ANK": HDANK, "SOC": SOC}

RC = {
    "svg.hashsalt": "hdank-report",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.edgecolor": "#555555",
    "axes.labelcolor": INK,
    "axes.linewidth": 0.8,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "path.simplify": True,
}
_FONT = "font-family: 'DejaVu Sans', 'Helvetica Neue', Arial, Helvetica, sans-serif"


@dataclass(frozen=True)
class Svg:
    name: str
    title: str
    inline: str
    standalone: str


# --------------------------------------------------------------------------- SVG plumbing

_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(?:url\(#|href="#)([^")]+)')


def _svg_text(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None,
                                                 "Type": None})
    return buf.getvalue()


def _clean(svg: str, prefix: str, title: str, *, inline: bool) -> str:
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r"font-family: [^;\"]*", _FONT, svg)
    referenced = set(_REF.findall(svg))

    def rename(match: re.Match) -> str:
        ident = match.group(1)
        m = re.fullmatch(r"count-(n|mid6|exact)-(\d+)", ident)
        if m:
            return f' data-count="{m.group(1)}"'
        if ident in referenced:
            return f' id="{prefix}-{ident}"'
        return ""

    svg = _ID.sub(rename, svg)
    svg = re.sub(r'url\(#([^")]+)\)', lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    head_end = svg.index(">")
    head = svg[:head_end]
    if inline:  # page CSS styles the figure; a <style> here would apply to the whole page
        svg = re.sub(r"\s*<defs>\s*<style[^>]*>.*?</style>\s*</defs>", "", svg, count=1, flags=re.S)
        head_end = svg.index(">")
        head = svg[:head_end]
        head = re.sub(r'\s(width|height)="[^"]*"', "", head)
        head = re.sub(r'\sxmlns(:xlink)?="[^"]*"', "", head)
        head += f' class="figure" role="img" aria-labelledby="{prefix}-title"'
    svg = head + svg[head_end:]
    first = svg.index(">") + 1
    title_el = f'\n <title id="{prefix}-title">{escape(title)}</title>' if inline else \
        f"\n <title>{escape(title)}</title>"
    svg = svg[:first] + title_el + svg[first:]
    return svg.strip() + "\n"


def to_svg(fig: Figure, name: str, title: str) -> Svg:
    raw = _svg_text(fig)
    return Svg(name=name, title=title, inline=_clean(raw, f"fig-{name}", title, inline=True),
               standalone=_clean(raw, f"fig-{name}", title, inline=False))


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(RC):
        return Figure(figsize=(width, height), dpi=72)


def _styled(fn):
    """Run a plotting function inside the report's matplotlib style (axes are styled on creation)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


class _Counter:
    """Gives each count text of a figure a gid that becomes a ``data-count`` mark."""

    def __init__(self) -> None:
        self.i = 0

    def __call__(self, kind: str) -> str:
        self.i += 1
        return f"count-{kind}-{self.i}"


# --------------------------------------------------------------------------- CONSORT

@dataclass(frozen=True)
class FlowBox:
    title: str
    count: str                      # released count text
    lines: tuple[tuple[str, str], ...] = ()   # (description, released count) listed in the box


@dataclass(frozen=True)
class Flow:
    """CONSORT-style flow: main boxes with side boxes of exclusions, then the two arms."""

    start: FlowBox
    steps: tuple[tuple[FlowBox, FlowBox], ...]   # (exclusions, box remaining after them)
    arms: tuple[tuple[str, FlowBox, FlowBox], ...]  # (arm, cohort box, matched box)
    count_kind: str = "n"


@_styled
def consort_svg(flow: Flow) -> Svg:
    width = 9.6
    line_h = 0.17
    main_x, main_w = 0.15, 3.6
    side_x, side_w = 4.25, width - 4.25 - 0.1
    wrap = 74
    counter = _Counter()

    # measure the layout first (inches from the top), then draw
    def side_height(box: FlowBox) -> float:
        n = 1 + sum(len(textwrap.wrap(d, wrap)) or 1 for d, _ in box.lines)
        return 0.18 + n * line_h + 0.08

    main_h = 0.56
    y = 0.1
    layout = []
    layout.append(("main", flow.start, y))
    y += main_h
    for excl, after in flow.steps:
        sh = side_height(excl)
        gap = max(sh + 0.3, 0.6)
        layout.append(("side", excl, y + (gap - sh) / 2))
        y += gap
        layout.append(("main", after, y))
        y += main_h
    split_y = y + 0.25
    arm_y = split_y + 0.3
    matched_y = arm_y + main_h + 0.35
    extra_lines = max((len(m.lines) for _, _, m in flow.arms), default=0)
    height = matched_y + main_h + 0.12 + extra_lines * line_h + (0.1 if extra_lines else 0)

    fig = _figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")

    def box(x, y0, w, h, face="#ffffff", edge="#8a8a8a"):
        ax.add_patch(FancyBboxPatch((x, y0), w, h, boxstyle="round,pad=0,rounding_size=0.05",
                                    linewidth=0.9, edgecolor=edge, facecolor=face))

    def main_box(b: FlowBox, x, y0, w, face="#f6f8fb", edge="#7d8ea3"):
        box(x, y0, w, main_h, face=face, edge=edge)
        ax.text(x + w / 2, y0 + 0.2, b.title, ha="center", va="center", fontsize=9.5, color=INK,
                fontweight="bold")
        ax.text(x + w / 2 - 0.02, y0 + 0.41, "n =", ha="right", va="center", fontsize=9.5, color=INK)
        ax.text(x + w / 2 + 0.05, y0 + 0.41, b.count, ha="left", va="center", fontsize=9.5, color=INK,
                gid=counter(flow.count_kind))

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="#7d7d7d", lw=0.9, shrinkA=0, shrinkB=0,
                                    mutation_scale=9))

    cx = main_x + main_w / 2
    previous_bottom = None
    for kind_, b, y0 in layout:
        if kind_ == "main":
            if previous_bottom is not None:
                arrow(cx, previous_bottom, cx, y0)
            main_box(b, main_x, y0, main_w)
            previous_bottom = y0 + main_h
        else:
            h = side_height(b)
            box(side_x, y0, side_w, h, face="#ffffff", edge="#a9a9a9")
            mid = y0 + h / 2
            ax.plot([cx, side_x], [mid, mid], color="#7d7d7d", lw=0.9)
            ty = y0 + 0.12 + line_h / 2
            ax.text(side_x + 0.12, ty, b.title, ha="left", va="center", fontsize=8.5, color=INK,
                    fontweight="bold")
            ax.text(side_x + side_w - 0.12, ty, b.count, ha="right", va="center", fontsize=8.5,
                    color=INK, fontweight="bold", gid=counter(flow.count_kind))
            for desc, cnt in b.lines:
                parts = textwrap.wrap(desc, wrap) or [""]
                ty += line_h
                ax.text(side_x + 0.22, ty, parts[0], ha="left", va="center", fontsize=8, color="#333333")
                ax.text(side_x + side_w - 0.12, ty, cnt, ha="right", va="center", fontsize=8,
                        color="#333333", gid=counter(flow.count_kind))
                for extra in parts[1:]:
                    ty += line_h
                    ax.text(side_x + 0.32, ty, extra, ha="left", va="center", fontsize=8, color="#333333")

    # split into the arms
    arm_w = 3.6
    centres = [main_x + main_w / 2, main_x + main_w / 2 + arm_w + 0.6][: len(flow.arms)]
    ax.plot([cx, cx], [previous_bottom, split_y], color="#7d7d7d", lw=0.9)
    if len(centres) > 1:
        ax.plot([centres[0], centres[-1]], [split_y, split_y], color="#7d7d7d", lw=0.9)
    for (arm, cohort_box, matched_box), c in zip(flow.arms, centres):
        colour = ARM_COLOURS.get(arm, "#7d8ea3")
        arrow(c, split_y, c, arm_y)
        main_box(cohort_box, c - arm_w / 2, arm_y, arm_w, face="#ffffff", edge=colour)
        arrow(c, arm_y + main_h, c, matched_y)
        main_box(matched_box, c - arm_w / 2, matched_y, arm_w, face="#ffffff", edge=colour)
        for i, (desc, cnt) in enumerate(matched_box.lines):
            ty = matched_y + main_h + 0.17 + i * line_h
            ax.text(c - 0.02, ty, f"{desc}:", ha="right", va="center", fontsize=8.5, color=MUTED)
            ax.text(c + 0.05, ty, cnt, ha="left", va="center", fontsize=8.5, color=MUTED,
                    gid=counter(flow.count_kind))
    return to_svg(fig, "consort", "Flow of admissions into the study cohort and the matched sample")


# --------------------------------------------------------------------------- propensity score

def density(values: np.ndarray, grid: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Gaussian kernel density (Scott's bandwidth) reflected at 0 and 1, on ``grid``."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros_like(grid)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    n_eff = 1.0 / np.sum(w**2)
    sd = np.sqrt(np.cov(values, aweights=w)) if len(values) > 1 else 0.05
    bw = max(float(sd) * n_eff ** (-1 / 5), 0.01)
    if len(values) > 2000:  # large cohorts: kernel over 1,000 weighted bins (bin width << bandwidth)
        edges = np.linspace(0, 1, 1001)
        w, _ = np.histogram(np.clip(values, 0, 1), bins=edges, weights=w)
        values = (edges[:-1] + edges[1:]) / 2
    out = np.zeros_like(grid, dtype=float)
    for centre in (values, -values, 2 - values):  # reflection keeps the mass inside [0, 1]
        z = (grid[:, None] - centre[None, :]) / bw
        out += (np.exp(-0.5 * z**2) * w[None, :]).sum(axis=1)
    return out / (bw * np.sqrt(2 * np.pi))


@_styled
def ps_overlap_svg(panels: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray | None]]]) -> Svg:
    """Mirrored smoothed densities of the propensity score: HD-ANK above, SOC below the axis.

    ``panels``: (title, {arm: scores}, {arm: weights or None}) per panel.
    """
    grid = np.linspace(0, 1, 201)
    fig = _figure(9.6, 3.3)
    axes = fig.subplots(1, len(panels), sharey=True)
    axes = np.atleast_1d(axes)
    dens = []
    for _, scores, weights in panels:
        dens.append({arm: density(v, grid, weights.get(arm)) for arm, v in scores.items()})
    top = max(max(float(d.max()) for d in ds.values()) for ds in dens) * 1.1 or 1.0
    for ax, (title, _, _), ds in zip(axes, panels, dens):
        for arm, sign in (("HD-ANK", 1), ("SOC", -1)):
            if arm in ds:
                ax.fill_between(grid, 0, sign * ds[arm], color=ARM_COLOURS[arm], alpha=0.35, lw=0)
                ax.plot(grid, sign * ds[arm], color=ARM_COLOURS[arm], lw=1.2, label=arm)
        ax.axhline(0, color="#555555", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(-top, top)
        ax.set_title(title, fontsize=9.5, color=INK, loc="left")
        ax.set_xlabel("Propensity score (probability of HD-ANK)")
        ax.text(0.99, 0.96, "HD-ANK", transform=ax.transAxes, ha="right", va="top", color=HDANK, fontsize=8.5)
        ax.text(0.99, 0.04, "SOC", transform=ax.transAxes, ha="right", va="bottom", color=SOC, fontsize=8.5)
        ax.grid(axis="x", color=GRID, lw=0.6)
        ax.set_axisbelow(True)
    axes[0].set_ylabel("Density")
    ticks = axes[0].get_yticks()
    axes[0].set_yticks(ticks)
    axes[0].set_yticklabels([f"{abs(t):g}" for t in ticks])
    axes[0].set_ylim(-top, top)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.16, top=0.9, wspace=0.08)
    return to_svg(fig, "ps_overlap", "Propensity-score distributions by arm before and after matching")


# --------------------------------------------------------------------------- love plot

@_styled
def love_svg(labels: list[str], before: list[float], after: list[float], weighted: list[float] | None,
             threshold: float) -> Svg:
    """|SMD| per covariate before and after matching (and with IPTW), threshold line."""
    n = len(labels)
    height = 1.0 + 0.2 * n
    fig = _figure(8.2, height)
    ax = fig.add_axes((0.36, 0.55 / height, 0.6, 1 - 0.95 / height))
    y = np.arange(n)[::-1]
    b, a = np.abs(np.asarray(before, float)), np.abs(np.asarray(after, float))
    for yi in y:
        ax.axhline(yi, color=GRID, lw=0.6, zorder=0)
    ax.scatter(b, y, s=26, facecolors="white", edgecolors="#555555", linewidths=1.0, label="Before matching", zorder=3,
               clip_on=False)
    if weighted is not None:
        w = np.abs(np.asarray(weighted, float))
        ax.scatter(w, y, s=22, marker="^", color="#999999", label="IPTW", zorder=3, clip_on=False)
    ax.scatter(a, y, s=26, color=INK, label="After matching", zorder=4, clip_on=False)
    ax.axvline(threshold, color="#b22222", lw=1.0, ls=(0, (4, 3)), zorder=2, label=f"Threshold {threshold:g}")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    finite = np.concatenate([b[np.isfinite(b)], a[np.isfinite(a)], [threshold * 1.5]])
    ax.set_xlim(0, max(float(finite.max()) * 1.08, threshold * 1.5))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("Absolute standardized mean difference")
    ax.legend(loc="lower left", fontsize=8, ncol=4 if weighted is not None else 3,
              bbox_to_anchor=(0.0, 1.0), borderaxespad=0.6, handletextpad=0.3, columnspacing=1.4)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    return to_svg(fig, "love", "Covariate balance: absolute standardized mean differences")


# --------------------------------------------------------------------------- Kaplan-Meier

@_styled
def km_svg(curves: dict[str, dict[str, np.ndarray]], at_risk: dict[str, list[str]], days: list[float],
           horizon: float, count_kind: str, subtitle: str = "") -> Svg:
    """Survival curves with 95% CI bands by arm, and the numbers at risk under the axis.

    ``curves``: {arm: {"time", "surv", "lower", "upper"}} step functions starting at time 0.
    ``at_risk``: {arm: released counts at ``days``}.
    """
    arms = [a for a in ("HD-ANK", "SOC") if a in curves]
    fig = _figure(8.2, 4.6)
    ax = fig.add_axes((0.11, 0.33, 0.86, 0.6))
    low = 1.0
    for arm in arms:
        c = curves[arm]
        t = np.append(c["time"], horizon)
        s, lo, hi = (np.append(c[k], c[k][-1]) for k in ("surv", "lower", "upper"))
        ax.fill_between(t, lo, hi, step="post", color=ARM_COLOURS[arm], alpha=0.16, lw=0)
        ax.step(t, s, where="post", color=ARM_COLOURS[arm], lw=1.6, label=arm)
        low = min(low, float(np.nanmin(lo)))
    floor = max(0.0, np.floor((low - 0.05) * 10) / 10)
    ax.set_ylim(floor, 1.005)
    ax.set_xlim(0, horizon)
    ax.set_xticks(days)
    ax.set_xticklabels([f"{d:g}" for d in days])
    ax.set_xlabel("Days since T0")
    ax.set_ylabel("Probability of survival")
    ax.grid(axis="y", color=GRID, lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="lower left", fontsize=8.5)
    if subtitle:
        ax.set_title(subtitle, fontsize=8.5, color=MUTED, loc="left")
    counter = _Counter()
    fig.text(0.01, 0.17, "Number at risk", fontsize=8.5, fontweight="bold", color=INK)
    to_fig = ax.transData + fig.transFigure.inverted()
    for row, arm in enumerate(arms):
        y = 0.11 - row * 0.06
        fig.text(0.01, y, arm, fontsize=8.5, color=ARM_COLOURS[arm], va="center")
        for d, value in zip(days, at_risk.get(arm, [])):
            x = to_fig.transform((d, floor))[0]
            fig.text(x, y, value, fontsize=8.5, ha="center", va="center", color=INK, gid=counter(count_kind))
    return to_svg(fig, "km", "Kaplan-Meier survival by arm in the matched sample, with numbers at risk")


# --------------------------------------------------------------------------- forest plot

@dataclass(frozen=True)
class ForestRow:
    label: str
    hr: float
    low: float
    high: float
    primary: bool = False
    biased: bool = False


@_styled
def forest_svg(rows: list[ForestRow]) -> Svg:
    """Hazard ratios with 95% CI on a log axis, reference line at 1."""
    n = len(rows)
    height = 0.95 + 0.3 * n
    fig = _figure(8.2, height)
    ax = fig.add_axes((0.36, 0.6 / height, 0.6, 1 - 0.75 / height))
    y = np.arange(n)[::-1]
    finite = [v for r in rows for v in (r.low, r.high, r.hr) if np.isfinite(v) and v > 0]
    lo = min(finite + [0.5]) / 1.15
    hi = max(finite + [2.0]) * 1.15
    for yi, r in zip(y, rows):
        colour = "#9a9a9a" if r.biased else (INK if not r.primary else HDANK)
        if r.primary:
            ax.axhspan(yi - 0.45, yi + 0.45, color="#eef4fa", lw=0, zorder=0)
        if np.isfinite(r.hr) and r.hr > 0:
            if np.isfinite(r.low) and np.isfinite(r.high):
                ax.plot([max(r.low, lo), min(r.high, hi)], [yi, yi], color=colour, lw=1.4, zorder=2)
            ax.plot([r.hr], [yi], marker="D" if r.primary else "s", ms=7 if r.primary else 5.5,
                    color=colour, mfc="white" if r.biased else colour, zorder=3)
        else:
            ax.text(1.0, yi, "not estimable", ha="center", va="center", fontsize=8, color=MUTED)
    ax.axvline(1.0, color="#555555", lw=0.9, zorder=1)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 5, 10) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_yticks(y)
    ax.set_yticklabels([r.label + (" (biased by design)" if r.biased else "") for r in rows], fontsize=8.5)
    for tick, r in zip(ax.get_yticklabels(), rows):
        if r.biased:
            tick.set_color("#8a8a8a")
        if r.primary:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, n - 0.4)
    ax.tick_params(axis="y", length=0)
    ax.spines["left"].set_visible(False)
    ax.set_xlabel("Hazard ratio, HD-ANK vs SOC (95% CI, log scale)")
    ax.text(0.0, 1.0, "\u2190 favours HD-ANK", transform=ax.transAxes, ha="left", va="bottom", fontsize=8,
            color=MUTED)
    ax.text(1.0, 1.0, "favours SOC \u2192", transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
            color=MUTED)
    return to_svg(fig, "forest", "Hazard ratios of the primary and sensitivity analyses")
