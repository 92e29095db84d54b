"""The audit's HTML report: one self-contained page (images embedded) to open or share."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from dgncore.data import slug


def _data_uri(path: Path) -> str:
    mime = "image/webp" if path.suffix.lower() == ".webp" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _img(out: Path, rel: str, caption: str, cls: str = "") -> str:
    path = out / rel
    src = _data_uri(path) if path.is_file() else ""
    return f'<figure class="{cls}"><img src="{src}" alt="{html.escape(caption)}"><figcaption>{caption}</figcaption></figure>'


def _bar_chart(report: dict[str, Any]) -> str:
    """Grouped bars (inline SVG): mean cue score per class, one group per source, error
    bars = sd over seeds; the dataset's per-class mean as its own group."""
    cue = report.get("cue") or {}
    sources = [(m, {c: (s["mean"], s["sd"]) for c, s in e["summary"].items()}) for m, e in cue.get("methods", {}).items()]
    if cue.get("dataset"):
        sources.append(("dataset", {c: (d["mean"], 0.0) for c, d in cue["dataset"].items()}))
    classes = report["classes"]
    if not sources or not classes:
        return ""
    vmax = max([v + e for _, d in sources for v, e in d.values()] + [1e-4]) * 1.1
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    bw, gap, h, left, top = 14, 18, 180, 50, 10
    group_w = len(classes) * bw + gap
    legend_w = sum(20 + 7 * len(c) for c in classes)
    width = max(left + len(sources) * group_w + 10, left + legend_w + 10)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 60}" font-size="10" font-family="sans-serif">']
    for frac in (0, 0.5, 1):
        y = top + h - frac * h
        parts.append(f'<line x1="{left}" x2="{width}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{left - 4}" y="{y + 3}" text-anchor="end">{frac * vmax:.3f}</text>')
    for g, (src, d) in enumerate(sources):
        x0 = left + g * group_w
        for i, c in enumerate(classes):
            v, e = d.get(c, (0.0, 0.0))
            bh = v / vmax * h
            x = x0 + i * bw
            colour = palette[i % len(palette)]
            edge = ' stroke="#000" stroke-width="1.5"' if c == cue.get("biased_class") else ""
            parts.append(f'<rect x="{x}" y="{top + h - bh:.1f}" width="{bw - 2}" height="{bh:.1f}" fill="{colour}"{edge}><title>{html.escape(src)} / {html.escape(c)}: {v:.4f} ± {e:.4f}</title></rect>')
            if e > 0:
                y1, y2 = top + h - (v + e) / vmax * h, top + h - max(v - e, 0) / vmax * h
                parts.append(f'<line x1="{x + bw / 2 - 1}" x2="{x + bw / 2 - 1}" y1="{y1:.1f}" y2="{y2:.1f}" stroke="#333"/>')
        parts.append(f'<text x="{x0 + (group_w - gap) / 2}" y="{top + h + 14}" text-anchor="middle" font-weight="bold">{html.escape(src)}</text>')
    lx = left
    for i, c in enumerate(classes):
        parts.append(f'<rect x="{lx}" y="{top + h + 28}" width="10" height="10" fill="{palette[i % len(palette)]}"/><text x="{lx + 13}" y="{top + h + 37}">{html.escape(c)}</text>')
        lx += 20 + 7 * len(c)
    parts.append("</svg>")
    return "".join(parts)


_VERDICT_CSS = {"confirmed shortcut": "confirmed", "suspected": "suspected", "none": "none"}


def percent_text(r: dict[str, Any] | None) -> str:
    """A flip rate with its interval, e.g. ``51% [44-58]``."""
    if not r or not r.get("n"):
        return "-"
    lo, hi = r["ci"]
    return f"{r['rate']:.0%} [{lo:.0%}-{hi:.0%}]"


def _intervention_html(report: dict[str, Any], out: Path) -> list[str]:
    """The suspects table (classes ranked by the intervention) and the pictures of the suspects."""
    e = html.escape
    iv = report["intervention"]
    cfg = iv["config"]
    kinds = iv.get("kinds") or ["patch"]
    h = ["<h2>Suspects: confirmation by intervention</h2>",
         f"<p class='note'>For each generated image the {cfg['locate']} locator finds the {iv['patch_side']} px square (side {cfg['patch']:g} of the "
         f"image) that carries the class; it is pasted, in place, onto {cfg['images']} images of other classes that the model does not call the class "
         f"(from {iv['pool']['images']} held-out images of {iv['pool']['classes']} classes). Flip rate: share of pasted images then called the class, "
         "with a 95% Wilson interval. L: the same for the class's own real images' most class-carrying patches; controls: patches from random "
         f"places of real images of the class and of other classes, pasted at the same places. "
         + ("A cue spread over the whole image has no patch to paste, so the whole generated image's texture (its fine detail) and colours "
            "(mean and covariance) are also transferred onto the same images, with the class's real images as L and other classes' as control. "
            if len(kinds) > 1 else "")
         + f"Kinds: {e(', '.join(kinds))}; methods tested: {e(', '.join(iv['methods']))}.</p>",
         f"<p class='note'>Verdict (thresholds fixed before the run): {e(iv['criterion'])}</p>",
         "<table><tr><th>rank</th><th>class</th><th>verdict</th><th>kind</th><th>method</th><th>flip rate G [95% CI]</th><th>per seed</th>"
         "<th>class's own patches L</th><th>control: real patches</th><th>control: random patches</th><th>note</th></tr>"]
    for c in iv["ranking"]:
        r = iv["classes"][c]
        m = r.get("method")
        g = r["methods"].get(m) if m else None
        seeds = ", ".join(f"{v['rate']:.0%}" for v in (g or {}).get("per_seed", {}).values()) if g else ""
        note = r.get("note") or ("super-stimulus: moves images, but nothing in the class's real images does" if g and g.get("super_stimulus") else "")
        ctrl = r.get("controls") or {}
        h.append(f"<tr><td>{r['rank']}</td><td><a href='#c-{slug(c, empty='class')}'>{e(c)}</a></td><td><span class='{_VERDICT_CSS[r['verdict']]}'>{e(r['verdict'])}</span></td>"
                 f"<td>{e(r.get('kind') or '-')}</td><td>{e(m or '-')}</td><td>{percent_text(g)}</td><td>{seeds}</td><td>{percent_text(r.get('located_real'))}</td><td>{percent_text(ctrl.get('real'))}</td>"
                 f"<td>{percent_text(ctrl.get('random'))}</td><td>{e(note)}</td></tr>")
    h.append("</table>")
    shown = [c for c in iv["ranking"] if iv["classes"][c]["verdict"] != "none" and iv["classes"][c].get("picture")]
    for c in shown:
        r = iv["classes"][c]
        h.append(f"<div class='label'><b>{e(c)}</b>: {e(r['verdict'])}, flip rate {percent_text(r['methods'][r['method']])} ({e(r.get('kind') or 'patch')}, {e(r['method'])})</div>")
        h.append(_img(out, r["picture"], "", "wide"))
    return h


def write_html(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write :func:`render_html` to ``OUT/report.html``."""
    from dgncore.data import write_bytes

    path = Path(out_dir) / "report.html"
    write_bytes(render_html(report, out_dir).encode("utf-8"), path)
    return path


def render_html(report: dict[str, Any], out_dir: str | Path) -> str:
    """The report as one self-contained page (every image of ``out_dir`` a data URI)."""
    out = Path(out_dir)
    e = html.escape
    cue = report.get("cue")
    h: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Bias audit: " + e(str(report["model"])) + "</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px;color:#222}"
        "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}"
        "td:first-child,th:first-child{text-align:left}.row{display:flex;flex-wrap:wrap;gap:6px;align-items:flex-start;margin:4px 0 10px}"
        "figure{margin:0;width:112px}figure img{width:112px;height:112px;image-rendering:pixelated;object-fit:contain;background:#eee;border:2px solid transparent}"
        "figcaption{font-size:11px;line-height:1.25;word-break:break-word}figure.wrong img{border-color:#d33}figure.cued img{outline:2px dashed #b0b}"
        ".pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}h3{margin:18px 0 4px}.label{font-size:12px;color:#555;margin:6px 0 2px}"
        "section{border-top:1px solid #ddd;margin-top:16px}.note{color:#555;font-size:13px}"
        "figure.wide{width:auto}figure.wide img{width:auto;height:auto;max-width:100%;image-rendering:auto;background:none}"
        ".confirmed,.suspected,.none{padding:1px 6px;border-radius:3px;font-size:13px;white-space:nowrap}.confirmed{color:#fff;background:#c00}.suspected{color:#000;background:#fc0}"
        ".none{color:#555;background:#eee}",
        "</style></head><body>",
        f"<h1>Bias audit: {e(str(report['model']))}</h1>",
        f"<p class='note'>Dataset: {e(Path(report['dataset']).name if report.get('dataset') else 'none')} &middot; methods: {e(', '.join(report['methods']))} &middot; seeds: {e(', '.join(map(str, report['seeds'])))}"
        f" &middot; k = {report['k']} image(s) per class, method and seed &middot; steps: {e(', '.join(f'{m} {s}' for m, s in report['steps'].items()))} &middot; {e(report['created'])}</p>",
        "<p class='note'>A generated image is a hypothesis about what the classifier responds to, not proof: compare it with the real images beside it, "
        "and confirm a suspected shortcut by pasting it onto real images of other classes.</p>",
    ]
    ckpt = (report.get("presets", {}).get("pretrained") or {}).get("checkpoint")
    pr = report.get("prior")
    if pr:
        h.append(f"<p class='note'>Pretrained method's decoder: the <b>dataset prior</b>, trained on this dataset's {pr.get('images') or ''} images "
                 f"({pr.get('steps')} steps, {pr.get('seconds')} s{', from the cache' if pr.get('cached') else ''}; {e(Path(pr['checkpoint']).name)})</p>")
    elif ckpt:
        h.append(f"<p class='note'>Pretrained method's decoder: {e(Path(ckpt).name)}</p>")
    for m, why in report.get("skipped_methods", {}).items():
        h.append(f"<p class='note'>Method <b>{e(m)}</b> was skipped: {e(why)}</p>")
    b = report.get("builtin")
    if b:
        h.append(f"<h2>Built-in case: {e(b['name'])}</h2><p>{e(b['description'])}. Trained in {b.get('train_seconds')} s.</p>")
        ev = b.get("shortcut_evidence")
        if ev:
            h.append("<p>Shortcut evidence (held-out images rendered without and with the stamp, "
                     f"{ev['n_per_class']} per class): adding the stamp makes the model answer <b>{e(ev['biased_class'])}</b> for "
                     f"{ev['others_predicted_biased_with_cue']:.1%} of other classes' images (without it: {ev['others_predicted_biased_without_cue']:.1%}); "
                     f"flip rate (right without the stamp, {e(ev['biased_class'])} with it): <b>{ev['flip_to_biased']:.1%}</b>. "
                     f"{e(ev['biased_class'])} accuracy: {ev['biased_accuracy_with_cue']:.1%} with its stamp, {ev['biased_accuracy_without_cue']:.1%} without. "
                     f"Mean accuracy on stamp-free images: {ev['mean_accuracy_without_cue']:.1%}.</p>")
            h.append("<table><tr><th>class</th><th>acc. without cue</th><th>acc. with cue</th><th>predicted biased without</th><th>predicted biased with</th></tr>")
            for c, r in ev["per_class"].items():
                h.append(f"<tr><td>{e(c)}</td><td>{r['accuracy_without_cue']:.3f}</td><td>{r['accuracy_with_cue']:.3f}</td><td>{r['predicted_biased_without_cue']:.3f}</td><td>{r['predicted_biased_with_cue']:.3f}</td></tr>")
            h.append("</table>")
    dx = report.get("decoder_expressibility")
    if dx:
        h.append(f"<p class='note'>Can the pretrained method's decoder draw the cue? Fitting alpha to reconstruct {len(dx['cue_of_targets'])} stamped images "
                 f"({dx['steps']} steps, MSE {dx['mse']:.4f}): cue score of the targets {', '.join(f'{v:.3f}' for v in dx['cue_of_targets'])}; "
                 f"of the reconstructions {', '.join(f'{v:.3f}' for v in dx['cue_of_reconstructions'])}.</p>")
    if cue:
        h.append(f"<h2>Cue score: {e(cue['name'])}</h2>")
        h.append(f"<p class='note'>Criterion (fixed before the run): {e(cue['criterion'])}. Biased class: <b>{e(str(cue.get('biased_class')))}</b> (outlined in the chart).</p>")
        h.append(_bar_chart(report))
        h.append("<table><tr><th>source</th>" + "".join(f"<th>{e(c)}</th>" for c in report["classes"]) + "<th>top class</th><th>verdict</th></tr>")
        for m, entry in cue["methods"].items():
            cells = "".join(f"<td>{entry['summary'][c]['mean']:.4f} ± {entry['summary'][c]['sd']:.4f}</td>" for c in report["classes"])
            v = entry.get("verdict")
            verdict = f"<span class='{'pass' if v['pass'] else 'fail'}'>{'PASS' if v['pass'] else 'FAIL'}</span> ({v['passes']}/{v['seeds']} seeds)" if v else ""
            h.append(f"<tr><td>{e(m)}</td>{cells}<td>{e(entry['top_class'] or '-')}</td><td>{verdict}</td></tr>")
        if cue.get("dataset"):
            cells = "".join(f"<td>{cue['dataset'][c]['mean']:.4f} ({cue['dataset'][c]['with_cue']:.0%} carry it)</td>" if c in cue["dataset"] else "<td></td>" for c in report["classes"])
            h.append(f"<tr><td>dataset</td>{cells}<td></td><td></td></tr>")
        h.append("</table>")
        for m, entry in cue["methods"].items():
            v = entry.get("verdict")
            if v:
                seeds_txt = "; ".join(f"seed {r['seed']}: {r['biased']:.4f} vs {r['max_other']:.4f}{' (' + e(r['max_other_class']) + ')' if r['max_other_class'] else ''} {'pass' if r['pass'] else 'fail'}" for r in v["per_seed"])
                h.append(f"<p class='note'><b>{e(m)}</b>: {seeds_txt}</p>")
    iv = report.get("intervention")
    if iv:
        h.extend(_intervention_html(report, out))
    elif report.get("intervention_skipped"):
        h.append(f"<p class='note'>Confirmation by intervention was skipped: {e(report['intervention_skipped'])}</p>")
    # per-class table
    dc = report.get("dataset_classes") or {}
    if dc:
        with_cue = cue is not None and any("top_other_classes_with_cue" in d for d in dc.values())
        h.append("<h2>Classifier on the dataset</h2><table><tr><th>class</th><th>folder</th><th>images</th><th>accuracy</th><th>predicted as</th>"
                 + ("<th>most class-like images of other classes: share with the cue</th>" if with_cue else "") + "</tr>")
        for c in report["classes"]:
            d = dc.get(c, {})
            acc = d.get("accuracy")
            pa = ", ".join(f"{e(k)} {v}" for k, v in (d.get("predicted_as") or {}).items())
            extra_cell = f"<td>{d['top_other_classes_with_cue']:.0%}</td>" if with_cue and "top_other_classes_with_cue" in d else ("<td></td>" if with_cue else "")
            h.append(f"<tr><td>{e(c)}</td><td>{e(str(d.get('folder')))}</td><td>{d.get('n_images', '')}</td><td>{'' if acc is None else f'{acc:.3f}'}</td><td>{pa}</td>{extra_cell}</tr>")
        h.append("</table>")
    for c in (iv["ranking"] if iv else report["classes"]):
        ivc = (iv or {}).get("classes", {}).get(c)
        badge = f" <span class='{_VERDICT_CSS[ivc['verdict']]}'>{e(ivc['verdict'])}</span>" if ivc else ""
        h.append(f"<section id='c-{slug(c, empty='class')}'><h3>{e(c)}{badge}</h3>")
        if ivc and ivc.get("picture"):
            what = ("the generated images' class-carrying patch (outlined), pasted onto other classes' images" if ivc.get("kind", "patch") == "patch"
                    else f"the generated images' {ivc['kind']}, transferred onto other classes' images")
            if report.get("photos") is False:
                what += " (the images it was applied to are not shown: this report holds no photo)"
            h.append(f"<div class='label'>Intervention ({e(ivc['verdict'])}): {what}</div>")
            h.append(_img(out, ivc["picture"], "", "wide"))
        d = dc.get(c, {})
        if d.get("samples"):
            h.append("<div class='label'>Dataset samples (caption: prediction; red frame: wrong" + ("; dashed: carries the cue" if cue else "") + ")</div><div class='row'>")
            for s in d["samples"]:
                cap = f"{e(s['predicted'])} {s['p_predicted']:.2f}" + (f"<br>cue {s['cue']:.3f}" if "cue" in s else "")
                h.append(_img(out, s["thumb"], cap, ("" if s["correct"] else "wrong") + (" cued" if s.get("cue", 0) > 0 else "")))
            h.append("</div>")
        ex = d.get("exemplars") or {}
        for key, title in (("top", "Top exemplars in the folder (highest logit)"), ("top_other_classes", "Most class-like images of other classes"), ("bottom", "Bottom exemplars (lowest logit)")):
            if ex.get(key):
                h.append(f"<div class='label'>{title}</div><div class='row'>")
                for s in ex[key]:
                    cap = f"[{e(s['label'])}] logit {s['logit']:.2f}<br>pred {e(s['predicted'])}" + (f"<br>cue {s['cue']:.3f}" if "cue" in s else "")
                    h.append(_img(out, s["thumb"], cap, " cued" if s.get("cue", 0) > 0 else ""))
                h.append("</div>")
        for m, per_class in report["generated"].items():
            rows = per_class.get(c, [])
            if not rows:
                continue
            h.append(f"<div class='label'>Generated: {e(m)}</div><div class='row'>")
            for r in rows:
                p = "-" if r.get("p_target") is None else f"{r['p_target']:.2f}"
                cap = f"seed {r['seed']}{'' if report['k'] == 1 else '.' + str(r['replicate'])}: p {p}"
                if "cue" in r:
                    cap += f"<br>cue {r['cue']:.3f}"
                h.append(_img(out, r["png"], cap))
            h.append("</div>")
        h.append("</section>")
    h.append(f"<p class='note'>Made by DGN Explorer in {report.get('seconds', '?')} s. Figures: report.json beside this page.</p></body></html>")
    return "\n".join(h)
