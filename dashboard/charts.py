"""Plotly figures: how the target rose during a run, and what the classifier sees in a
saved picture. Colours come from the theme (``.streamlit/config.toml``,
``chartCategoricalColors``), not from code."""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go
import streamlit as st

from dashboard import words


def palette() -> list[str]:
    """The theme's categorical chart colours (plotly's own where the theme has none)."""
    try:
        colours = st.get_option("theme.chartCategoricalColors")
    except Exception:  # noqa: BLE001 - an option this Streamlit does not know
        colours = None
    if not colours:
        import plotly.colors

        colours = plotly.colors.qualitative.Plotly
    return list(colours)


def _nice_step(n: int) -> int:
    """A whole-number tick spacing giving at most about 8 ticks over n steps."""
    for d in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if n / d <= 8:
            return d
    return 10_000


def curve(activation: Sequence[Sequence[float]], checks: Sequence[Sequence[Any]], labels: Sequence[str] = (), height: int = 260) -> go.Figure:
    """How sure the classifier became, step by step: the probability of the 8-bit picture
    at each check (solid, right axis), and the raw score the optimisation pushes up
    (dotted, left axis); one colour per target."""
    fig = go.Figure()
    n = len(activation[0]) if activation else 0
    colours = palette()
    for i in range(min(n, 8)):
        name = words.short(labels[i]) if i < len(labels) else f"target {i + 1}"
        colour = colours[i % len(colours)]
        fig.add_trace(go.Scatter(x=list(range(1, len(activation) + 1)), y=[row[i] for row in activation], mode="lines",
                                 name=f"{name}: raw score", line=dict(color=colour, dash="dot"), legendgroup=str(i)))
        pts = [(c[0], c[1][i]) for c in checks if i < len(c[1]) and c[1][i] is not None and c[1][i] == c[1][i]]
        if pts:
            fig.add_trace(go.Scatter(x=[a for a, _ in pts], y=[b for _, b in pts], mode="lines+markers", yaxis="y2",
                                     name=f"{name}: how sure", line=dict(color=colour), legendgroup=str(i)))
    fig.update_layout(
        height=height, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
        xaxis=dict(title="step", tick0=0, dtick=_nice_step(len(activation))), yaxis=dict(title="raw score"),
        yaxis2=dict(title="how sure", overlaying="y", side="right", range=[0, 1.02], tickformat=".0%", tickmode="linear", tick0=0,
                    dtick=0.25, showgrid=False),
        title=dict(text="how the picture won the classifier over", font=dict(size=13)),
    )
    return fig


def record_curve(rec: dict[str, Any], key: str) -> None:
    hist = rec.get("history_activation") or []
    checks = [(s, [p]) for s, p in rec.get("history_checks") or []]
    if hist:
        st.plotly_chart(curve([[v] for v in hist], checks, [rec.get("target_label", "")], height=220), key=key, width="stretch")


def _units(rec: dict[str, Any]) -> list[str]:
    target = rec.get("target", "")
    if target.startswith("class:"):
        return [target.split(":", 1)[1]]
    if target.startswith("classes:"):
        return [u.split("*")[0] for u in target.split(":", 1)[1].split("+")]
    return []


def top5(rec: dict[str, Any], key: str, height: int = 200) -> None:
    """What the classifier sees in the saved picture: its five likeliest classes as bars,
    the asked-for class in the theme's first colour (added below, with its place, when it
    is not among the five)."""
    top = list(rec.get("top5") or [])
    if not top:
        return
    units = _units(rec)
    rows = [(words.short(t["name"], 22), t["p"], str(t["index"]) in units) for t in top]
    if rec.get("target_kind") == "class" and units and units[0] not in {str(t["index"]) for t in top} and rec.get("p_target") is not None:
        rows.append((f"{words.short(rec.get('target_label') or '', 14)} ({words.ordinal(rec.get('rank') or 0)})", rec["p_target"], True))
    rows = rows[::-1]
    colours = palette()
    fig = go.Figure()
    for mine, name, colour in ((True, "the class asked for", colours[0]), (False, "other classes", colours[min(5, len(colours) - 1)])):
        part = [r for r in rows if r[2] == mine]
        if part:
            fig.add_trace(go.Bar(x=[r[1] for r in part], y=[r[0] for r in part], orientation="h", name=name, marker_color=colour,
                                 text=[words.percent(r[1]) for r in part], textposition="auto"))
    fig.update_layout(height=height + 20 * (len(rows) - 5), margin=dict(l=10, r=10, t=26, b=10), showlegend=False,
                      xaxis=dict(range=[0, 1], title=None, tickformat=".0%"), yaxis=dict(categoryorder="array", categoryarray=[r[0] for r in rows]),
                      title=dict(text="what the classifier sees in the saved picture", font=dict(size=12)))
    st.plotly_chart(fig, key=key, width="stretch")
