"""Plain words for people: method names, scores said as sentences, times, and escaping.

Every sentence the pages show about a result is made here, so the wording is the same
on every page (and testable without Streamlit). Method names come from
:mod:`dgncore.drawing.registry`, so a method added there is named here too.
"""

from __future__ import annotations

import re
from typing import Any

from dgncore.drawing import registry

#: characters that make markup in Streamlit's markdown (a user's class name may hold them);
#: without [ ] no link or colour directive can form
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$])")
#: a list or a heading when a line starts with it
_MD_LINE_START = re.compile(r"^(\s*\d*)([-+=.)])")


def md(text: Any) -> str:
    """``text`` safe inside Streamlit markdown (labels, captions, st.markdown): no link,
    emphasis, colour directive, list, heading or HTML can come out of a user-supplied name."""
    out = _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), out)


def short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def method_label(method: str) -> str:
    """What a person gets, the paper's name second: "Image prior (paper, 4.2)"."""
    return registry.method_label(method)


def method_blurb(method: str) -> str:
    return registry.method_blurb(method)


def method_short(method: str) -> str:
    """The label's first words, for tight places: "Image prior", "Fourier", "Raw pixels"."""
    return re.split(r"\s*[(:]", method_label(method), maxsplit=1)[0] or method


def compact_verdict(rec: dict[str, Any]) -> str:
    """Both networks in one short line: "99% sure · a second network: 48%"."""
    if rec.get("p_target") is None:
        return result_sentence(rec)
    out = f"{percent(rec['p_target'])} sure"
    op = rec.get("second_opinion") or {}
    if op.get("nearest"):
        out += f" · looks like photos of {', '.join(short(n, 18) for n in op['nearest'][:2])}"
    elif op.get("p_target") is not None:
        out += f" · a second network: {percent(op['p_target'])}"
    return out


def percent(p: float) -> str:
    """99% / 62% / 0.4% / <0.1%; never "100%" unless it is exactly 1."""
    if p >= 1:
        return "100%"
    if p >= 0.01:
        return f"{int(p * 100)}%"
    if p >= 0.001:
        return f"{p * 100:.1f}%"
    return "<0.1%"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def guess(rank: int | None) -> str:
    return "its top guess" if rank == 1 else f"its {ordinal(rank)} guess" if rank else ""


def result_sentence(rec: dict[str, Any]) -> str:
    """The classifier's view of a saved image, as a person says it: "99% tench, its top
    guess"; for a filter: "fires at 2.31, more than 94% of random images"."""
    label = rec.get("target_label") or rec.get("target", "")
    if rec.get("p_target") is not None:
        return f"{percent(rec['p_target'])} {label}, {guess(rec.get('rank'))}"
    if rec.get("activation") is not None:
        return f"fires at {rec['activation']:.2f}" + percentile_text(rec.get("percentile"))
    return str(label)


def percentile_text(pct: float | None) -> str:
    if pct is None:
        return ""
    return ", more than any random image" if pct >= 100 else f", more than {pct:.0f}% of random images"


def second_opinion_sentence(rec: dict[str, Any]) -> str | None:
    """What the held-out network says of the same saved image: "a second network agrees:
    62% tench"; None where the result has no second opinion."""
    op = rec.get("second_opinion")
    if not op or op.get("p_target") is None:
        return None
    label = rec.get("target_label") or rec.get("target", "")
    said = f"{percent(op['p_target'])} {label}"
    rank = op.get("rank")
    if rank == 1:
        return f"a second network agrees: {said}"
    if rank is not None and rank <= 5:
        return f"a second network half agrees: {said}, {guess(rank)}"
    return f"a second network is not convinced: {said}" + (f", {guess(rank)}" if rank else "")


def nearest_sentence(rec: dict[str, Any]) -> str | None:
    """Which real photos the saved picture is nearest to, in the second network's features:
    "looks most like real photos of: beacon, lighthouse, breakwater", with where its own
    class's photo comes when that is not among them; for what has no photo to compare
    with, says so. None for old results made before this was measured."""
    op = rec.get("second_opinion") or {}
    if rec.get("target_kind") not in (None, "class"):
        return "a filter or neuron has no real photo to compare with: its score above is against random images"
    if not op:
        return "no real photos of this classifier's classes to compare with" if rec.get("p_target") is not None else None
    if not op.get("nearest"):
        return None
    out = f"looks most like real photos of: {', '.join(op['nearest'])}"
    label = rec.get("target_label") or rec.get("target", "")
    rank = op.get("photo_rank")
    if rank is None:
        return out + f" (there is no real {label} photo to compare with)"
    if rank > len(op["nearest"]):
        return out + f" (the real {label} photo comes {ordinal(rank)})"
    return out


def nearest_help(rec: dict[str, Any]) -> str:
    return ("The saved picture beside 950 real ImageNet photos, one per class, compared in the features of a second network "
            f"({(rec.get('second_opinion') or {}).get('model', 'EfficientNet-Lite2')}) that had no part in making it. A picture a person "
            "would name usually sits near a photo of its class; like any network's opinion, it can still be fooled by a pattern in the class's colours.")


def second_opinion_help(rec: dict[str, Any]) -> str:
    op = rec.get("second_opinion") or {}
    return (f"The same saved picture, shown to another network ({op.get('model', 'a held-out one')}) that had no part in making it. "
            "A picture that fools only the network it was made for scores low here.")


def seconds_text(seconds: float | None) -> str:
    """about 8 s / about 1 min 20 s / a few seconds."""
    if seconds is None:
        return "a moment"
    s = max(1, int(round(seconds)))
    if s < 60:
        return f"about {s} s"
    m, s = divmod(s, 60)
    if m >= 60:
        h, m = divmod(m, 60)
        return f"about {h} h {m} min"
    return f"about {m} min" + (f" {s} s" if s and m < 10 else "")


def details_line(rec: dict[str, Any]) -> str:
    """How the image was made, in one short line: method · steps · seed · time."""
    bits = [method_label(rec.get("method") or "?")]
    if rec.get("steps") is not None:
        bits.append(plural(int(rec["steps"]), "step"))
    bits.append(f"variant {rec.get('seed', 0)}")
    if rec.get("cancelled"):
        bits.append("stopped early")
    if rec.get("example"):
        bits.append("a ready-made example")
    elif rec.get("cached"):
        bits.append("saved earlier")
    elif rec.get("seconds") is not None:
        bits.append(f"{rec['seconds']:.0f} s" if rec["seconds"] >= 10 else f"{rec['seconds']:.1f} s")
    return " · ".join(bits)


# --------------------------------------------------------------------------- the bias audit

#: an audit's phases (:data:`dgncore.audit.pipeline.PHASES`) as a person says them
PHASE_WORDS = {
    "model": "training the built-in model (once, then kept)",
    "prior": "training a picture prior on your images (once per folder, then kept)",
    "index": "reading the dataset's images",
    "generate": "drawing what the classifier imagines for each class",
    "intervention": "testing each class: pasting pieces of the pictures onto other classes' images",
    "report": "writing the report",
}
#: the intervention's verdicts as coloured badges (red: a confirmed shortcut; grey: nothing found)
VERDICT_BADGES = {"confirmed shortcut": ":red-badge[confirmed shortcut]", "suspected": ":orange-badge[suspected]", "none": ":gray-badge[none found]"}
#: what an intervention moved, by its kind (dgncore.audit.intervention.KINDS)
PASTED = {"patch": "a patch", "texture": "the texture", "colour": "the colours"}


def verdict_badge(verdict: str) -> str:
    return VERDICT_BADGES.get(verdict, f":gray-badge[{md(verdict)}]")


def flip_rate(r: dict[str, Any] | None) -> str:
    """A flip rate with its 95% interval: "64% (51-75%)"; "-" where nothing was measured."""
    if not r or not r.get("n") or r.get("rate") is None:
        return "-"
    lo, hi = r["ci"]
    said = lambda p: "0%" if p == 0 else percent(p)  # noqa: E731 - a measured zero is 0%, not "<0.1%"
    return f"{said(r['rate'])} ({said(lo)}–{said(hi)})"


def audit_phase(phase: str, phase_no: int, phases: int) -> str:
    """"step 3 of 5: drawing what the classifier imagines for each class"."""
    said = PHASE_WORDS.get(phase, phase or "starting")
    return f"step {phase_no} of {phases}: {said}" if phase_no and phases else said
