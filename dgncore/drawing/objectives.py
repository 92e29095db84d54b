"""What to maximise: the target grammar and the terms of the paper's Equation 2.

    loss = -a(target) + lambda * sum_{j not a target} a(c_j) + R(xi),   a = ReLU(logits)

Targets are written as text so that the CLI, the dashboard and saved results share one
form:

    class:<index|name>                  one class
    classes:<a>+<b>[*w][+...]           several classes with weights (compound images)
    filter:<layer>:<k>                  mean activation of channel k of a layer
    neuron:<layer>:<k>:<y>:<x>          one unit of a layer
    group:<layer>:<k1>[*w],<k2>,...     weighted sum of channel means

The ReLU trap: a target whose logit starts below zero has ReLU(z) = 0 and no gradient,
so the run would never move. The target term therefore uses the raw logit z, which
equals ReLU(z) wherever the target is active and acts as a warm-up where it is not; the
other classes keep the ReLU, as in the paper, so only their positive evidence is
penalised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import torch

from dgncore.data import slug
from dgncore.errors import InputError

if TYPE_CHECKING:
    from dgncore.models.classifiers import Classifier

TargetKind = Literal["class", "classes", "filter", "neuron", "group"]
MAX_TARGET_UNITS = 16
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Target:
    """A resolved target: class indices or channels of one layer, with weights."""

    kind: TargetKind
    units: tuple[int, ...]
    weights: tuple[float, ...]
    label: str
    layer: str | None = None
    position: tuple[int, int] | None = None

    @property
    def is_class(self) -> bool:
        return self.kind in ("class", "classes")

    @property
    def spec(self) -> str:
        """Canonical text form, by index, that parses back to the same target."""
        w = lambda u, x: f"{u}" if x == 1.0 else f"{u}*{x:g}"  # noqa: E731
        if self.kind == "class":
            return f"class:{self.units[0]}"
        if self.kind == "classes":
            return "classes:" + "+".join(w(u, x) for u, x in zip(self.units, self.weights))
        if self.kind == "filter":
            return f"filter:{self.layer}:{self.units[0]}"
        if self.kind == "neuron":
            assert self.position is not None
            return f"neuron:{self.layer}:{self.units[0]}:{self.position[0]}:{self.position[1]}"
        return f"group:{self.layer}:" + ",".join(w(u, x) for u, x in zip(self.units, self.weights))

    @property
    def slug(self) -> str:
        """A file-name-safe name: readable, unique per target."""
        base = self.label if self.is_class else self.spec
        text = slug(base, 60, "target")
        if self.is_class:
            text = "-".join(str(u) for u in self.units) + "_" + text
        return text


def _weighted(text: str, what: str) -> tuple[str, float]:
    name, star, weight = text.rpartition("*")
    if not star:
        return text.strip(), 1.0
    weight = weight.strip()
    if not _NUMBER.match(weight):
        raise InputError(f"bad weight {weight!r} in {what}: write NAME*0.5")
    value = float(weight)
    if not 0 < value <= 100:
        raise InputError(f"weight {value:g} in {what} must be in (0, 100]")
    return name.strip(), value


def _int(text: str, what: str, upper: int | None = None) -> int:
    text = text.strip()
    if not re.fullmatch(r"[0-9]{1,7}", text):
        raise InputError(f"{what} must be a non-negative whole number, got {text[:40]!r}")
    value = int(text)
    if upper is not None and value >= upper:
        raise InputError(f"{what} {value} is out of range: it must be below {upper}")
    return value


def parse_target(text: str, classifier: "Classifier") -> Target:
    """Parse and resolve a target against a classifier (class names, layers, channels)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("empty target: write e.g. class:tench or filter:blocks.3:5")
    text = text.strip()
    if len(text) > 500:
        raise InputError("target text is too long (over 500 characters)")
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep or not rest.strip():
        raise InputError(
            f"cannot read target {text[:60]!r}: use class:NAME, classes:A+B, filter:LAYER:K, "
            "neuron:LAYER:K:Y:X or group:LAYER:K1,K2"
        )
    if kind == "class":
        idx = classifier.class_index(rest.strip())
        return Target("class", (idx,), (1.0,), classifier.classes[idx])
    if kind == "classes":
        parts = [p for p in rest.split("+") if p.strip()]
        if not parts:
            raise InputError("classes: needs at least one class, e.g. classes:ostrich+bullfrog")
        if len(parts) > MAX_TARGET_UNITS:
            raise InputError(f"at most {MAX_TARGET_UNITS} classes in one compound target")
        units, weights = [], []
        for part in parts:
            name, weight = _weighted(part, "classes:")
            idx = classifier.class_index(name)
            if idx in units:
                raise InputError(f"class {classifier.classes[idx]!r} appears twice in {text[:80]!r}")
            units.append(idx)
            weights.append(weight)
        kind_ = "class" if len(units) == 1 and weights[0] == 1.0 else "classes"
        label = " + ".join(classifier.classes[u] for u in units)
        return Target(kind_, tuple(units), tuple(weights), label)
    if kind in ("filter", "neuron", "group"):
        fields = rest.split(":")
        layer = fields[0].strip()
        info = _layer(classifier, layer)
        channels = info.channels
        if kind == "filter":
            if len(fields) != 2:
                raise InputError("write a filter as filter:LAYER:K, e.g. filter:blocks.3:5")
            k = _int(fields[1], f"channel of {layer}", channels)
            return Target("filter", (k,), (1.0,), f"{layer} filter {k}", layer=layer)
        if kind == "neuron":
            if len(fields) != 4:
                raise InputError("write a neuron as neuron:LAYER:K:Y:X, e.g. neuron:blocks.3:5:7:7")
            k = _int(fields[1], f"channel of {layer}", channels)
            h, w = (info.shape[1], info.shape[2]) if len(info.shape) == 3 else (1, 1)
            y = _int(fields[2], f"row of {layer}", h)
            x = _int(fields[3], f"column of {layer}", w)
            return Target("neuron", (k,), (1.0,), f"{layer} unit {k} at ({y}, {x})", layer=layer, position=(y, x))
        if len(fields) != 2 or not fields[1].strip():
            raise InputError("write a group as group:LAYER:K1,K2[*W],..., e.g. group:blocks.3:1,5*0.5")
        items = [p for p in fields[1].split(",") if p.strip()]
        if len(items) > MAX_TARGET_UNITS:
            raise InputError(f"at most {MAX_TARGET_UNITS} filters in one group")
        units, weights = [], []
        for item in items:
            k_text, weight = _weighted(item, "group:")
            k = _int(k_text, f"channel of {layer}", channels)
            if k in units:
                raise InputError(f"filter {k} appears twice in the group")
            units.append(k)
            weights.append(weight)
        return Target("group", tuple(units), tuple(weights), f"{layer} filters {','.join(map(str, units))}", layer=layer)
    raise InputError(f"unknown target kind {kind[:30]!r}: use class, classes, filter, neuron or group")


def _layer(classifier: "Classifier", name: str):
    layers = {info.name: info for info in classifier.layers()}
    if name not in layers:
        import difflib

        close = difflib.get_close_matches(name, list(layers), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; list them with: python -m dgncore layers"
        if not layers:
            raise InputError(f"model {classifier.name} has no layers that can be targeted (TorchScript models allow class targets only)")
        raise InputError(f"unknown layer {name[:60]!r}{hint}")
    return layers[name]


@dataclass
class Objective:
    """Equation 2 for a batch of targets, one per row; built once, evaluated every step."""

    targets: Sequence[Target]
    n_classes: int
    penalty: float = 0.01
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        b = len(self.targets)
        w = torch.zeros(b, self.n_classes)
        others = torch.zeros(b, self.n_classes)
        for i, t in enumerate(self.targets):
            if t.is_class:
                w[i, list(t.units)] = torch.tensor(t.weights)
                others[i] = 1.0
                others[i, list(t.units)] = 0.0
        self.class_weights = w.to(self.device)
        self.others = (others * self.penalty).to(self.device)
        self.layers = sorted({t.layer for t in self.targets if t.layer is not None})

    def activation(self, logits: torch.Tensor, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """a(target) per row: weighted raw logits, or channel means / units of a layer."""
        out = (logits * self.class_weights).sum(1)
        if not self.layers:
            return out
        extra = []
        for i, t in enumerate(self.targets):
            if t.is_class:
                extra.append(out.new_zeros(()))
                continue
            a = acts[t.layer][i]  # type: ignore[index]
            if a.dim() == 1:  # (C,) from a linear layer
                a = a[:, None, None]
            if t.kind == "neuron":
                assert t.position is not None
                extra.append(a[t.units[0], t.position[0], t.position[1]])
            else:
                w = a.new_tensor(t.weights)
                extra.append((a[list(t.units)].mean((1, 2)) * w).sum())
        return out + torch.stack(extra)

    def loss(self, logits: torch.Tensor, acts: dict[str, torch.Tensor], reg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row loss of Equation 2 (rows are independent problems) and the per-row
        target activation a(target) (detached). ``logits`` (and ``acts``) may hold several
        views of every row, view after view: each row's loss and activation are then the
        means over its views."""
        b = len(self.targets)
        views, rest = divmod(logits.shape[0], b)
        if rest or not views:
            raise ValueError(f"{logits.shape[0]} rows of logits for {b} targets: expected a whole number of views")
        losses, activations = [], []
        for v in range(views):
            part = slice(v * b, (v + 1) * b)
            act = self.activation(logits[part], {k: a[part] for k, a in acts.items()})
            penalty = (torch.relu(logits[part]) * self.others).sum(1)
            losses.append(-act + penalty)
            activations.append(act.detach())
        return torch.stack(losses).mean(0) + reg, torch.stack(activations).mean(0)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax mass on the target classes per row (NaN for layer targets)."""
        p = (torch.softmax(logits.float(), 1) * (self.class_weights > 0)).sum(1)
        is_class = self.class_weights.sum(1) > 0
        return torch.where(is_class, p, torch.full_like(p, float("nan")))
