"""A finished audit as the bias-audit page shows it: the suspects table and chart, the cue
verdicts of a built-in model, one box per class in ranking order, the saved audits to
reopen and the downloads. :mod:`dashboard.audit_panel` runs the audit and calls
:func:`show_report`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, page, state, words
from dgncore.errors import InputError

#: one colour per method (none of them red: red is FAIL), grey for the dataset's real images
COLOURS = {"untrained": "#1f77b4", "pretrained": "#2ca02c", "pixel": "#ff7f0e", "fourier": "#9467bd", "dataset": "#9aa7b8"}

#: the suspects chart: what was pasted (the generated pictures' piece in the verdict's colour family, the controls grey)
SOURCES = {"generated": ("pasted from the generated images", "#d62728"), "located_real": ("pasted from real images of the class", "#1f77b4"),
           "real": ("control: random places of the class's real images", "#9aa7b8"), "random": ("control: random places of other classes' images", "#5f6b7a")}


BIASED_FILL = "#f3d3ee"

THUMB_W = 72


@st.cache_data(show_spinner=False, max_entries=8)
def _summaries(stamps: tuple[tuple[str, float], ...], root: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, _mtime in stamps:
        try:
            r = json.loads((Path(root) / name / "report.json").read_text(encoding="utf-8"))
            iv = r.get("intervention") or {}
            top = (iv.get("ranking") or [None])[0]
            out[name] = {"created": str(r.get("created", "")), "model": str(r.get("model", "?")), "classes": len(r.get("classes") or []),
                         "dataset": "its own pictures" if r.get("builtin") else Path(str(r.get("dataset") or "no dataset")).name,
                         "top": top, "verdict": (iv.get("classes") or {}).get(top, {}).get("verdict") if top else None}
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return out


def saved_audits(results_root: Path) -> dict[str, dict[str, Any]]:
    """Every report folder under ``<results>/audit/``, newest first: its model, dataset name
    (never a path), date, number of classes and top suspect."""
    base = results_root / "audit"
    stamps = sorted(((f.parent.name, f.stat().st_mtime) for f in base.glob("*/report.json")), key=lambda t: -t[1]) if base.is_dir() else []
    return _summaries(tuple(stamps), str(base))


def saved_label(s: dict[str, Any]) -> str:
    top = f" · top suspect: {s['top']} ({s['verdict']})" if s.get("top") and s.get("verdict") not in (None, "none") else \
        (" · no suspect" if s.get("top") else "")
    return f"{s['created'][:16].replace('T', ' ')} · {s['model']} on {s['dataset']} · {s['classes']} {'class' if s['classes'] == 1 else 'classes'}{top}"


def saved_select(results_root: Path) -> str:
    """The "Saved audits" select: CURRENT (the report of the settings above) or a folder name under ``<results>/audit``."""
    found = saved_audits(results_root)
    if not found:
        return CURRENT
    options = [CURRENT] + list(found)
    return state.widget(st.selectbox, f"Saved audits ({len(found)}, newest first)", "whole.open", CURRENT, "audit_open", options=options,
                        format_func=lambda n: "The audit of the settings above" if n == CURRENT else saved_label(found[n]),
                        help="Every audit run on this server is kept: open any of them again.")


def saved_report(folder: Path) -> dict[str, Any] | None:
    from dgncore.audit.run import load_report

    if not (folder / "report.json").is_file():
        return None
    try:
        return load_report(folder)
    except InputError as e:
        page.error(e)
        return None


def show_report(report: dict[str, Any], folder: Path, shipped: bool = False) -> None:
    """The report: its line and downloads, the suspects (table and chart), the built-in
    model's cue verdicts, then one box per class, top suspects first (``shipped``: one
    that comes with the app, made elsewhere)."""
    where = "" if state.limits().hosted or shipped else f", saved in `{folder}`"  # no server paths for visitors
    kept = "made once and shipped with the app." if shipped else "kept on disk, the same settings show it again."
    st.caption(f"Report of {words.md(report['model'])}, {report['created'][:16].replace('T', ' ')} ({report.get('seconds', '?')} s){where}: {kept}")
    downloads(folder, report)
    for m, why in report.get("skipped_methods", {}).items():
        st.caption(f"**{words.md(words.method_label(m))}** was skipped: {words.md(why)}")
    if report.get("intervention"):
        suspects(report["intervention"])
        st.plotly_chart(suspects_chart(report["intervention"]), key="audit.suspects", width="stretch")
    cue = report.get("cue")
    if cue and cue.get("biased_class"):
        st.markdown("##### The cue detector's view (built-in models only)")
        verdicts(cue)
        st.plotly_chart(cue_chart(report), key="audit.cue", width="stretch")
    class_boxes(report, folder)


def suspects(iv: dict[str, Any]) -> None:
    """The classes ranked by the intervention, top suspects first, as a table."""
    st.markdown("##### Suspects, most suspicious first")
    rows = ["| rank | class | verdict | what was pasted | pasted from the generated images | pasted from real images of the class "
            "| pasted from random places (controls) |", "|---:|---|---|---|---|---|---|"]
    for c in iv["ranking"]:
        r = iv["classes"][c]
        rows.append(f"| {r.get('rank', '')} | **{words.md(c)}** | {words.verdict_badge(r['verdict'])} | {words.PASTED.get(r.get('kind'), '-')} "
                    f"| {words.flip_rate(_generated(r))} | {words.flip_rate(r.get('located_real'))} | {controls_text(r)} |")
    st.markdown("\n".join(rows))
    st.caption("Each figure is the share of other classes' images that the classifier calls the class once a piece of a picture is pasted "
               "on (or, for a cue spread over the whole image, once its texture or colours are carried over), with its 95% interval. "
               "Pasted from the generated images: the piece of the pictures the audit drew that carries the class. From real images "
               "of the class: the same piece found in the class's own images (a shortcut is something the data carries). From random "
               "places: pieces of the same size taken anywhere, of the class's images and of other classes' (does pasting anything "
               "do this?). Verdict rule, fixed before any run (G: pasted from the generated images; L: from real images of the class): "
               f"{words.md(iv.get('criterion', ''))}")


def _generated(r: dict[str, Any]) -> dict[str, Any] | None:
    """The class's verdict-giving rate of its generated images (its method and kind)."""
    return {"n": 1, "rate": r.get("flip_rate"), "ci": r.get("ci")} if r.get("flip_rate") is not None else None


def controls_text(r: dict[str, Any]) -> str:
    ctrl = r.get("controls") or {}
    said = {"real": "of the class", "random": "of other classes"}
    return "; ".join(f"{said.get(k, words.md(k))} {words.flip_rate(v)}" for k, v in ctrl.items()) or "-"


def suspects_chart(iv: dict[str, Any]) -> go.Figure:
    """Flip rates per class, in ranking order: the generated images' pieces against the
    class's real images' and the two controls, each with its 95% interval."""
    classes = list(iv["ranking"])
    fig = go.Figure()
    for key, (name, colour) in SOURCES.items():
        rates = [_generated(iv["classes"][c]) if key == "generated" else
                 iv["classes"][c].get("located_real") if key == "located_real" else (iv["classes"][c].get("controls") or {}).get(key) for c in classes]
        if not any(r and r.get("rate") is not None for r in rates):
            continue
        y = [r["rate"] if r and r.get("rate") is not None else None for r in rates]
        fig.add_trace(go.Scatter(
            x=classes, y=y, mode="markers", name=name, offsetgroup=key, marker=dict(color=colour, size=10 if key == "generated" else 8),
            error_y=dict(type="data", symmetric=False, array=[(r["ci"][1] - r["rate"]) if v is not None else None for r, v in zip(rates, y)],
                         arrayminus=[(r["rate"] - r["ci"][0]) if v is not None else None for r, v in zip(rates, y)], color=colour, thickness=1.5, width=4),
            hovertemplate="%{x}: %{y:.0%}<extra>" + name + "</extra>",
        ))
    verdicts_ = [iv["classes"][c]["verdict"] for c in classes]
    marks = {"confirmed shortcut": "#d62728", "suspected": "#ff7f0e"}
    fig.update_layout(
        scattermode="group", height=380, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.2),
        title=dict(text="How often pasting a piece makes the classifier say the class (95% intervals)", font=dict(size=14)),
        xaxis=dict(tickvals=classes, ticktext=[f"<b>{c}</b>" if v in marks else c for c, v in zip(classes, verdicts_)]),
        yaxis=dict(title="other classes' images that flip", range=[0, 1.05], tickformat=".0%"),
    )
    for j, v in enumerate(verdicts_):
        if v in marks:
            fig.add_vrect(x0=j - 0.5, x1=j + 0.5, fillcolor=marks[v], opacity=0.08, layer="below", line_width=0)
    return fig


def verdicts(cue: dict[str, Any]) -> None:
    from dgncore.audit.run import CRITERION

    b = cue["biased_class"]
    for m, entry in cue["methods"].items():
        v = entry.get("verdict")
        if not v:
            continue
        said = (f"its {b} images carry the cue and the other classes' do not" if v["pass"]
                else f"the cue does not stand out in its {b} images")
        st.markdown(f"{':green-badge[PASS]' if v['pass'] else ':red-badge[FAIL]'} **{words.md(words.method_label(m))}**: {said} "
                    f"({v['passes']} of {words.plural(v['seeds'], 'seed')} pass).")
        st.caption(" · ".join(f"seed {r['seed']}: {b} {r['biased']:.3f} vs {r['max_other']:.3f}"
                              + (f" ({r['max_other_class']})" if r["max_other_class"] else "") for r in v["per_seed"]))
    st.caption(f"Pass rule, fixed before any run: {CRITERION}.")


def cue_chart(report: dict[str, Any]) -> go.Figure:
    """Mean cue score per class (bars, one colour per method and grey for the dataset's real
    images; error bars: sd over seeds), each seed as a dot, the planted class shaded."""
    from dgncore.audit.run import cue_rows

    rows = cue_rows(report)
    classes = list(report["classes"])
    biased = report["cue"].get("biased_class")
    what, _, measure = str(report["cue"].get("name") or "the cue: cue score").partition(": ")
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig = go.Figure()
    for i, src in enumerate(sources):
        vals = [[r["cue"] for r in rows if r["source"] == src and r["class"] == c and r["cue"] is not None] for c in classes]
        colour = COLOURS.get(src) or charts.palette()[i % len(charts.palette())]
        sd = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
        fig.add_trace(go.Bar(
            x=classes, y=[float(np.mean(v)) if v else 0.0 for v in vals], offsetgroup=src, marker_color=colour,
            name="real images of the dataset" if src == "dataset" else f"{words.method_short(src)} (mean over seeds)",
            error_y=dict(type="data", array=sd, visible=any(sd), color="#555", thickness=1, width=3),
            hovertemplate="%{x}: %{y:.4f}<extra>" + src + "</extra>",
        ))
        if src != "dataset" and len(report["seeds"]) > 1:
            fig.add_trace(go.Scatter(
                x=[c for c, v in zip(classes, vals) for _ in v], y=[x for v in vals for x in v], offsetgroup=src, mode="markers",
                marker=dict(color="#222", size=5, symbol="circle-open"), name="one seed", legendgroup="seed", showlegend=i == 0, legendrank=2000,
                hovertemplate="%{x}: %{y:.4f}<extra>" + src + " (one seed)</extra>",
            ))
    if biased in classes:
        j = classes.index(biased)
        fig.add_vrect(x0=j - 0.5, x1=j + 0.5, fillcolor=BIASED_FILL, opacity=0.6, layer="below", line_width=0)
        fig.add_annotation(x=biased, y=1, yref="paper", yanchor="bottom", showarrow=False, text="the cue was planted in this class",
                           font=dict(size=11, color="#9c2f8f"))
    fig.update_layout(
        barmode="group", scattermode="group", height=360, margin=dict(l=10, r=10, t=60, b=10),
        title=dict(text=f"How much {what} is in each class's images", font=dict(size=14)),
        legend=dict(orientation="h", y=-0.18), bargap=0.25,
        xaxis=dict(tickvals=classes, ticktext=[f"<b>{c}</b>" if c == biased else c for c in classes]),
        yaxis=dict(title=measure, rangemode="tozero", tickformat=".0%" if _peak(rows) >= 0.05 else ".1%"),
    )
    return fig


def _peak(rows: list[dict[str, Any]]) -> float:
    return max((r["cue"] or 0.0 for r in rows), default=0.0)


def class_boxes(report: dict[str, Any], folder: Path) -> None:
    """Per class, top suspects first: its verdict with the numbers and the intervention
    picture, then the generated images beside the dataset's samples and exemplars."""
    photos = report.get("photos", True)
    dc = (report.get("dataset_classes") or {}) if photos else {}
    iv = report.get("intervention") or {}
    biased = (report.get("cue") or {}).get("biased_class")
    has_cue = bool(report.get("cue"))
    per_method = len(report["seeds"]) * report.get("k", 1)
    ratios = [max(2, min(per_method, 6)), 4, 4] if dc else [1]
    order = list(iv.get("ranking") or []) + [c for c in report["classes"] if c not in (iv.get("ranking") or [])]
    st.markdown("##### Each class" + (", most suspicious first" if iv else "") + ": what each method drew, beside real images")
    if not photos:
        st.caption("This report holds no photo (their terms keep them out of it): the generated images and the figures measured on the photos.")
    head = st.columns(ratios)
    head[0].caption("**Generated**: seed · p(class)" + (" · cue score" if has_cue else ""))
    if dc:
        head[1].caption("**Dataset samples**: the classifier's answer (✗ wrong)" + (" · cue" if has_cue else ""))
        head[2].caption("**Real images**: their folder · the classifier's raw score for the class")
    for c in order:
        d = dc.get(c, {})
        with st.container(border=True):
            st.markdown(class_line(c, (report.get("dataset_classes") or {}).get(c, {}), c == biased))
            entry = (iv.get("classes") or {}).get(c)
            if entry:
                st.markdown(suspect_line(c, entry))
                if entry.get("picture") and (folder / entry["picture"]).is_file():
                    said = f"what the audit pasted for {words.md(c)}, and onto what" if photos else \
                        (f"the generated images of {words.md(c)}, the patch the audit pasted outlined" if entry.get("kind") == "patch" else
                         f"the generated images of {words.md(c)}, whose {words.PASTED.get(entry.get('kind'), 'piece').removeprefix('the ')} the audit carried over")
                    st.image(str(folder / entry["picture"]), caption=said, width="stretch" if photos else "content")
            cols = st.columns(ratios)
            with cols[0]:
                for m in report["methods"]:
                    made = report["generated"].get(m, {}).get(c, [])
                    st.caption(words.md(words.method_short(m)))
                    thumbs(folder, [r["png"] for r in made], [gen_caption(r) for r in made])
            if not dc:
                continue
            with cols[1]:
                samples_ = d.get("samples") or []
                thumbs(folder, [s["thumb"] for s in samples_],
                       [("" if s["correct"] else "✗ ") + f"{s['predicted']} {s['p_predicted']:.2f}" + stamp(s) for s in samples_])
            with cols[2]:
                ex = d.get("exemplars") or {}
                for key, label in (("top", "most class-like, anywhere in the folder"),
                                   ("top_other_classes", "most class-like in the other classes' folders (where a shortcut shows first)"),
                                   ("bottom", "least class-like")):
                    if ex.get(key):
                        st.caption(label)
                        thumbs(folder, [e["thumb"] for e in ex[key]], [f"{e['label']} · {e['logit']:.1f}" + stamp(e) for e in ex[key]])


def suspect_line(name: str, r: dict[str, Any]) -> str:
    """The class's verdict with its numbers, in words."""
    if r.get("flip_rate") is None:
        return f"{words.verdict_badge(r['verdict'])} not tested" + (f": {words.md(r['note'])}" if r.get("note") else "")
    pasted = words.PASTED.get(r.get("kind"), "a piece")
    out = (f"{words.verdict_badge(r['verdict'])} rank {r.get('rank', '?')} · {pasted} of the generated images "
           f"({words.md(words.method_short(r.get('method') or '?'))}) made the classifier say *{words.md(name)}* for "
           f"{words.flip_rate(_generated(r))} of other classes' images; from real images of the class: {words.flip_rate(r.get('located_real'))}; "
           f"from random places: {controls_text(r)}")
    best = (r.get("methods") or {}).get(r.get("method")) or {}
    if best.get("super_stimulus"):
        out += " · it moves images although nothing in the class's real images does: a super-stimulus, not a dataset bias"
    return out


def class_line(name: str, d: dict[str, Any], biased: bool) -> str:
    bits = [f"**{words.md(name)}**" + (" · :violet[**the class with the planted cue**]" if biased else "")]
    if d.get("accuracy") is not None:
        bits.append(f"the classifier gets {d['accuracy']:.0%} of its {d.get('n_images')} folder images right")
    if (d.get("cue") or {}).get("with_cue") is not None:
        bits.append(f"{d['cue']['with_cue']:.0%} of them carry the cue")
    return " · ".join(bits)


def gen_caption(r: dict[str, Any]) -> str:
    p = "-" if r.get("p_target") is None else f"{r['p_target']:.2f}"
    return f"s{r['seed']} · p {p}" + (f" · {r['cue']:.3f}" if "cue" in r else "")


def stamp(row: dict[str, Any]) -> str:
    return " · cue" if row.get("cue", 0) > 0 else ""


def thumbs(folder: Path, rels: list[str], captions: list[str]) -> None:
    files = [folder / r for r in rels if (folder / r).is_file()]
    if files:
        st.image([str(f) for f in files], caption=[words.md(c) for r, c in zip(rels, captions) if (folder / r).is_file()], width=THUMB_W)
    else:
        st.caption("none")


def downloads(folder: Path, report: dict[str, Any]) -> None:
    html = folder / "report.html"
    c1, c2, _ = st.columns([1, 1, 2])

    def page_bytes() -> bytes:  # a shipped report has no page on disk: it is drawn when asked for
        from dgncore.audit.report import render_html

        return html.read_bytes() if html.is_file() else render_html(report, folder).encode("utf-8")

    c1.download_button("Report page (HTML)", data=page_bytes, file_name="bias-audit-report.html", mime="text/html",
                       key="whole.html", on_click="ignore", icon=":material/download:", width="stretch",
                       help="One self-contained page with every image: open it in a browser or send it to someone.")
    c2.download_button("Report folder (ZIP)", data=lambda: zip_folder(folder), file_name=f"bias-audit-{folder.name}.zip",
                       mime="application/zip", key="whole.zip", on_click="ignore", icon=":material/folder_zip:", width="stretch",
                       help="report.json with every number and every image the report shows.")


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file() and not f.is_symlink():
                zf.write(f, f.relative_to(folder).as_posix())
    return buf.getvalue()


CURRENT = ""  # the "Saved audits" entry that means: the report of the settings above
