"""Inline SVG charts, made in Python: no script, no library, no external asset.

Each chart scales with its container (``viewBox`` and ``width=100%``), carries a ``<title>``
and ``<desc>`` for screen readers, and marks "no data" in words instead of drawing a bar.
Colours come from CSS classes, so print styles can turn them into patterns of grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 520
LABEL_WIDTH = 130
ROW = 22
GAP = 8


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: no data (drawn as words, never as a bar)
    text: str  # what is written at the end of the bar
    kind: str = "now"  # now | before | miss (CSS class)


def _frame(chart_id: str, title: str, desc: str, height: int, body: str) -> str:
    return (
        f'<svg class="chart" id="{escape(chart_id)}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>'
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>{body}</svg>'
    )


def bars(
    chart_id: str,
    title: str,
    desc: str,
    groups: Sequence[tuple[str, Sequence[Bar]]],
    maximum: float | None = None,
    target: float | None = None,
    target_label: str = "",
) -> str:
    """Horizontal bars in groups (e.g. a target with this week's and the previous week's bar),
    with an optional dashed target line."""
    values = [b.value for _, group in groups for b in group if b.value is not None]
    top = maximum if maximum is not None else max([*values, target or 0, 1])
    plot = WIDTH - LABEL_WIDTH - 60
    parts: list[str] = []
    y = GAP + (14 if target is not None else 0)
    for label, group in groups:
        for index, bar in enumerate(group):
            # The group's name labels its first bar; the others say what they are.
            if index == 0 and label:
                parts.append(f'<text class="group" x="0" y="{y + 15}">{escape(label)}</text>')
            else:
                parts.append(f'<text class="label" x="12" y="{y + 15}">{escape(bar.label)}</text>')
            if bar.value is None:
                parts.append(f'<text class="nodata" x="{LABEL_WIDTH}" y="{y + 15}">no data</text>')
            else:
                length = 0 if top <= 0 else max(0.0, min(1.0, bar.value / top)) * plot
                parts.append(
                    f'<rect class="bar {escape(bar.kind)}" x="{LABEL_WIDTH}" y="{y + 3}" '
                    f'width="{length:.1f}" height="{ROW - 6}"/>'
                    f'<text class="value" x="{LABEL_WIDTH + length + 4:.1f}" y="{y + 15}">'
                    f"{escape(bar.text)}</text>"
                )
            y += ROW
        y += GAP
    if target is not None and top > 0:
        x = LABEL_WIDTH + min(1.0, target / top) * plot
        parts.append(
            f'<line class="target" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{y}"/>'
            f'<text class="targetlabel" x="{x:.1f}" y="12" text-anchor="middle">'
            f"{escape(target_label)}</text>"
        )
    return _frame(chart_id, title, desc, y + GAP, "".join(parts))


def lines(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
) -> str:
    """A line per series over the days (x axis), with a legend and a light grid."""
    height, left, right, top, bottom = 240, 44, 40, 28, 40
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    highest = max([v for _, _, values in series for v in values] + [1])
    step = _nice_step(highest)
    ceiling = step * max(1, -(-highest // step))
    count = max(1, len(labels) - 1)
    parts: list[str] = []
    tick = 0.0
    while tick <= ceiling + 1e-9:
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(
            f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
        tick += step
    for index, label in enumerate(labels):
        x = left + plot_w * index / count if len(labels) > 1 else left + plot_w / 2
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    legend_x = left
    for name, css, values in series:
        points = []
        for index, value in enumerate(values):
            x = left + plot_w * index / count if len(labels) > 1 else left + plot_w / 2
            y = top + plot_h - plot_h * value / ceiling
            points.append((x, y))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="line {escape(css)}" points="{path}"/>')
        parts += [
            f'<circle class="dot {escape(css)}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
            for x, y in points
        ]
        parts.append(
            f'<rect class="swatch {escape(css)}" x="{legend_x}" y="6" width="12" height="12"/>'
            f'<text class="legend" x="{legend_x + 16}" y="16">{escape(name)}</text>'
        )
        legend_x += 24 + 8 * len(name)
    return _frame(chart_id, title, desc, height, "".join(parts))


def _nice_step(highest: float) -> float:
    """A round grid step giving about four lines."""
    rough = highest / 4
    magnitude = 1.0
    while magnitude * 10 <= rough:
        magnitude *= 10
    for factor in (1, 2, 5, 10):
        if rough <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude
