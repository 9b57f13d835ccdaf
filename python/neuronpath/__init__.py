"""neuronpath in Python: influential neuron paths in Vision Transformers
(Wang et al., "Discovering Influential Neuron Path in Vision Transformers", ICLR 2025).

The same engine and the same answers as the ``neuronpath`` command line::

    import neuronpath
    model = neuronpath.load("assets/vit-cifar10")
    records = model.paths("assets/images", method=["jas", "activation"])
    table = neuronpath.to_pandas(records)

Records are dicts with exactly the fields of the command line's JSON lines.
numpy is needed only where arrays cross (``forward``, ``jas``, ``pixels``, array
images: without it they raise :class:`NeuronpathError` saying so; folders and
files need no numpy), pandas for ``to_pandas``; a tqdm bar shows progress when
tqdm is installed. Errors raise :class:`NeuronpathError` with the command line's
message.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from . import _native
from ._native import NeuronpathError

__all__ = [
    "Model",
    "NeuronpathError",
    "devices",
    "load",
    "manipulate",
    "neurons",
    "read_records",
    "report",
    "stats",
    "summarize",
    "to_pandas",
]

Record = Dict[str, Any]
PathLike = Union[str, "os.PathLike[str]"]
#: ``progress``: ``None`` shows a tqdm bar when tqdm is installed; ``False`` shows
#: nothing; a callable is called as ``progress(done, total)`` after every batch.
ProgressArg = Union[None, bool, Callable[[int, int], Any]]


class _Progress:
    """The engine's progress events (start, advance, note, finish) for a notebook."""

    def __init__(self, progress: ProgressArg) -> None:
        self.user = progress if callable(progress) else None
        self.show = progress is None
        self.bar: Any = None
        self.done = 0
        self.total = 0

    def __call__(self, event: str, n: int, text: str) -> None:
        if event == "start":
            self.done, self.total = 0, n
            if self.show:
                try:
                    from tqdm.auto import tqdm
                except ImportError:
                    tqdm = None
                if tqdm is not None:
                    self.bar = tqdm(total=n, unit=" " + text)
        elif event == "advance":
            self.done += n
            if self.bar is not None:
                self.bar.update(n)
            if self.user is not None:
                self.user(self.done, self.total)
        elif event == "note":
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)
        elif event == "finish" and self.bar is not None:
            self.bar.close()
            self.bar = None


def _records(texts: Iterable[str]) -> List[Record]:
    return [json.loads(t) for t in texts]


def _texts(records: Iterable[Record]) -> List[str]:
    return [json.dumps(r) for r in records]


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


#: What an array of images is called in messages.
_AN_ARRAY = "images given as an array (not a folder, a file or a list of files)"


def _images(images: Any, *, arrays: bool = True) -> Any:
    """A folder or file as a path, a list of files as paths; anything else, where
    ``arrays``, as a float32 array of pixels (which needs numpy)."""
    if _is_path(images):
        return os.fspath(images)
    if isinstance(images, (list, tuple)) and all(_is_path(i) for i in images):
        return [os.fspath(i) for i in images]
    if not arrays:
        raise NeuronpathError(f"images: a folder, an image file or a list of image files, not {type(images).__name__}")
    return _pixels(images, _AN_ARRAY)


def _numpy(what: str) -> Any:
    """numpy, or a NeuronpathError saying that ``what`` needs it."""
    try:
        import numpy
    except ImportError as e:
        raise NeuronpathError(f"{what} needs numpy, which cannot be imported ({e}): pip install numpy") from e
    return numpy


class Model:
    """A loaded checkpoint; see :func:`load`."""

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def info(self) -> Dict[str, Any]:
        """family, layers, neurons (per layer), classes, class_names, hidden, heads,
        image_size, patch_size, tokens, parameters, layout, checkpoint."""
        return self._native.info

    def __repr__(self) -> str:
        i = self.info
        return (
            f"<neuronpath.Model {i['family']}: {i['layers']} layers x {i['neurons']} neurons, "
            f"{i['classes']} classes ({i['checkpoint']})>"
        )

    def forward(self, pixels: Any) -> Any:
        """The clean pass of normalised pixels ``(N, 3, H, W)`` float32.

        Returns ``(logits, activations)``: ``(N, classes)`` and each layer's FFN
        activations at the CLS token, ``(N, layers, neurons)`` (for a model whose
        neurons span several tokens, as MAE's patches, ``(N, layers, tokens,
        neurons)``). A C-contiguous float32 array is read in place.
        """
        return self._native.forward(_pixels(pixels, "Model.forward"))

    def jas(
        self,
        pixels: Any,
        neurons: Sequence[Any],
        target: Union[int, Sequence[int]],
        *,
        steps: int = 20,
        integration: str = "left-riemann",
        score_form: str = "reference",
    ) -> Union[Record, List[Record]]:
        """The Joint Attribution Score of a neuron set: per layer a neuron (or a list
        of neurons), on ``pixels`` ``(3, H, W)`` or ``(N, 3, H, W)`` for class
        ``target`` (one, or one per image). Returns a dict ``score``,
        ``activation``, ``gradient``, ``contribution`` (per layer), or a list of
        them for a batch."""
        np = _numpy("Model.jas")
        pixels = np.asarray(pixels, dtype=np.float32)
        single = pixels.ndim == 3
        batch = _pixels(pixels[None] if single else pixels, "Model.jas")
        targets = [int(target)] * len(batch) if isinstance(target, (int, np.integer)) else [int(t) for t in target]
        options = {"steps": steps, "integration": integration, "score_form": score_form}
        scores = _records(self._native.jas(batch, json.dumps(_plain(neurons)), targets, options))
        return scores[0] if single else scores

    def pixels(self, images: Any, *, preprocess: str = "checkpoint", label_map: Optional[PathLike] = None) -> Any:
        """Images (a folder, a file or a list of files) as ``paths`` prepares them:
        ``(pixels (N, 3, H, W) float32, labels, keys)``; needs numpy. Class folders
        that name none of the model's classes give labels ``None`` (with a note)."""
        _numpy("Model.pixels")
        label_map = None if label_map is None else os.fspath(label_map)
        return self._native.pixels(_images(images, arrays=False), preprocess, label_map, _Progress(False))

    def paths(
        self,
        images: Any,
        *,
        labels: Optional[Sequence[Optional[int]]] = None,
        method: Union[None, str, Sequence[str]] = None,
        steps: int = 20,
        integration: str = "left-riemann",
        score_form: str = "reference",
        target: str = "label",
        top_k: int = 1,
        beam: int = 1,
        paths_per_image: int = 1,
        seed: int = 0,
        preprocess: Optional[str] = None,
        compat: str = "principled",
        tokens: Optional[str] = None,
        unit: str = "neuron",
        batch: Optional[int] = None,
        label_map: Optional[PathLike] = None,
        out: Optional[PathLike] = None,
        progress: ProgressArg = None,
    ) -> List[Record]:
        """Each image's influential neuron path (and the baselines), as ``neuronpath
        paths`` finds them: one record per image and method.

        ``images``: a folder (ImageFolder: class folders give the labels), an image
        file, a list of files (``labels`` gives theirs), or normalised pixels
        ``(N, 3, H, W)`` float32 with ``labels`` (image ``i`` is keyed ``"i"``; needs
        numpy). With ``target="predicted"``, class folders that name none of the
        model's classes give records of ``label`` None (with a note); with
        ``"label"`` they raise asking for ``label_map``.
        The options are the command line's (``method``: ``jas``, ``activation``,
        ``influence``, ``ig``, ``random``; default all). With ``out`` the records are
        also appended to that JSON-lines file, and images already there are skipped
        (and not returned). Ctrl-C stops after the batch in flight and raises
        KeyboardInterrupt (what was written to ``out`` is kept)."""
        methods = [method] if isinstance(method, str) else list(method or [])
        options = {
            "method": methods,
            "steps": steps,
            "integration": integration,
            "score_form": score_form,
            "target": target,
            "top_k": top_k,
            "beam": beam,
            "paths_per_image": paths_per_image,
            "seed": seed,
            "preprocess": preprocess,
            "compat": compat,
            "tokens": tokens,
            "unit": unit,
            "batch": batch,
            "labels": None if labels is None else [None if l is None else int(l) for l in labels],
            "label_map": None if label_map is None else os.fspath(label_map),
        }
        out = None if out is None else os.fspath(out)
        return _records(self._native.paths(_images(images), options, out, _Progress(progress)))


def _pixels(pixels: Any, what: str) -> Any:
    """A float32 C-contiguous array (no copy when it is one already), for ``what``."""
    np = _numpy(what)
    try:
        return np.ascontiguousarray(pixels, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise NeuronpathError(f"{what}: not a float32 array of pixels ({e})") from e


def _plain(value: Any) -> Any:
    """Nested sequences (numpy arrays and integers included) as lists of ints."""
    if isinstance(value, (str, bytes)):
        raise NeuronpathError(f"neurons: not a path: {value!r}")
    try:
        return [_plain(v) for v in value]
    except TypeError:
        return int(value)


def load(
    path: PathLike,
    *,
    heads: Optional[int] = None,
    classifier: Optional[PathLike] = None,
    logit_scale: Optional[float] = None,
    logit_bias: Optional[float] = None,
    class_names: Optional[PathLike] = None,
    classes: Optional[Sequence[str]] = None,
    prompts: Union[None, str, Sequence[str]] = None,
    tokenizer: Optional[PathLike] = None,
    activation: Optional[str] = None,
    image_size: Optional[int] = None,
    head: Optional[PathLike] = None,
    head_bias: Optional[PathLike] = None,
    gpu: Optional[int] = None,
) -> Model:
    """Loads a checkpoint, every layout the command line loads: a Hugging Face, timm
    or open_clip folder, a timm ``.safetensors``, a PyTorch ``.pth``/``.pt``/``.bin``
    state dict (timm or open_clip names; read without pickle), or a Google ViT
    ``.npz``. The options are the command line's model flags:

    * ``heads`` for timm and .pth files;
    * zero-shot CLIP and SigLIP: ``classes`` (class names; their rows computed with
      the checkpoint's own text tower, a Hugging Face ``CLIPModel`` or
      ``SiglipModel``, or open_clip) with
      ``prompts`` (templates with ``{}``, default ``"a photo of a {}."``; several are
      averaged as open_clip does) and ``tokenizer`` (a ``tokenizer.json`` or an
      open_clip BPE file; default: the checkpoint folder's ``tokenizer.json``, else
      OpenAI's vocabulary), or ``classifier`` (class text embeddings, ``.npy``) with
      ``class_names``; ``logit_scale`` (the multiplier) for either, and SigLIP's
      ``logit_bias`` (added before each class's sigmoid; default: the checkpoint's,
      or a ``logit_bias.npy`` beside the classifier);
    * ``activation`` (``"quick-gelu"`` or ``"gelu"``) for files that do not say it
      (timm's CLIP towers, open_clip without its config);
    * ``image_size`` to run a DINOv2 checkpoint at another size;
    * ``head`` (and ``head_bias``): a linear probe ``.npy`` for a backbone saved
      without its head;
    * ``gpu``: run the model's passes on GPU N of :func:`devices` (its whole pass on
      the device; paths equal the CPU's up to rounding), as ``--gpu N``.

    A bad checkpoint raises :class:`NeuronpathError` naming the file and the tensor."""
    opt = lambda p: None if p is None else os.fspath(p)  # noqa: E731
    if isinstance(prompts, str):
        prompts = [prompts]
    return Model(_native.load(
        os.fspath(path), heads, opt(classifier), logit_scale, logit_bias, opt(class_names),
        None if classes is None else list(classes), list(prompts or []), opt(tokenizer),
        activation, image_size, opt(head), opt(head_bias), gpu,
    ))


def devices() -> List[Dict[str, Any]]:
    """The GPUs ``load(..., gpu=N)`` can name, as ``neuronpath devices`` lists them:
    ``index``, ``name``, ``backend`` (Vulkan, Metal, DX12), ``kind`` (discrete,
    integrated, virtual, software), ``driver``, and ``unusable`` (why not, or None)."""
    return json.loads(_native.devices())


def manipulate(
    model: Model,
    records: Sequence[Record],
    images: Any,
    *,
    op: str = "both",
    method: Union[None, str, Sequence[str]] = None,
    out: Optional[PathLike] = None,
    progress: ProgressArg = None,
) -> List[Record]:
    """Each image's path set to 0 (``remove``) or doubled (``enhance``) at every layer
    at once, as ``neuronpath manipulate``: one record per image, method and
    operation. ``images``: the folder the paths were found on, or the pixels. See
    :func:`summarize` for the probability and accuracy deviations."""
    if method is not None:
        methods = [method] if isinstance(method, str) else list(method)
        records = [r for r in records if r["method"] in methods]
        if not records:
            raise NeuronpathError(f"records: no paths of method {', '.join(methods)}")
    images = os.fspath(images) if _is_path(images) else _pixels(images, _AN_ARRAY)
    out = None if out is None else os.fspath(out)
    return _records(_native.manipulate(model._native, _texts(records), images, op, out, _Progress(progress)))


def neurons(
    model: Model,
    images: Any,
    paths: Optional[Sequence[Record]] = None,
    *,
    neurons: Sequence[Sequence[int]] = (),
    layers: Union[str, Sequence[int]] = (),
    top: int = 16,
    rank: Optional[str] = None,
    preprocess: Optional[str] = None,
    batch: Optional[int] = None,
    label_map: Optional[PathLike] = None,
    out: Optional[PathLike] = None,
    progress: ProgressArg = None,
) -> List[Record]:
    """What neurons do, read off the images (a folder, a file or a list of files),
    as ``neuronpath neurons``: one record per neuron with its ``top`` exemplars
    (activation, heatmap over the patches), its class profile and its direct effect
    on the logits. The neurons: those on the path records ``paths`` (the model's
    arithmetic and preprocessing as they were found with), ``neurons`` as
    ``(layer, neuron)`` pairs, or every neuron of ``layers`` (``"all"``). ``rank``:
    ``cls``, ``patch-max`` or ``patch-mean``. With ``out`` the records are appended
    there, and a stopped scan resumes from its state beside it."""
    if isinstance(layers, str):
        if layers != "all":
            raise NeuronpathError(f"layers {layers!r}: 'all' or a list of layer numbers")
        layers = list(range(model.info["layers"]))
    texts = None if paths is None else _texts(paths)
    pairs = [(int(layer), int(neuron)) for layer, neuron in neurons]
    label_map = None if label_map is None else os.fspath(label_map)
    out = None if out is None else os.fspath(out)
    return _records(
        _native.neurons(
            model._native, _images(images, arrays=False), texts, pairs, list(layers), top, rank, preprocess, batch,
            label_map, out, _Progress(progress),
        )
    )


def summarize(manipulations: Sequence[Record]) -> List[Record]:
    """Per method and operation: images, mean probability deviation (p_after /
    p_before - 1), accuracy before and after, and the accuracy deviation."""
    return json.loads(_native.summarize(_texts(manipulations)))


def stats(records: Sequence[Record]) -> Dict[str, Any]:
    """Class statistics of path records, as ``neuronpath stats`` writes them: per
    method, class and layer the neuron frequencies, class paths, concentration and
    class similarity."""
    return json.loads(_native.stats(_texts(records)))


def report(
    records: Sequence[Record],
    out: PathLike = "report.html",
    *,
    manipulations: Sequence[Record] = (),
    stats: Optional[Dict[str, Any]] = None,
    images: Optional[PathLike] = None,
    neurons: Sequence[Record] = (),
    neuron_images: Optional[PathLike] = None,
) -> str:
    """Writes the self-contained HTML report of the records (as ``neuronpath
    report``) to ``out`` and returns its path; ``images``: the folder the paths were
    found on (thumbnails). ``neurons`` (records of :func:`neurons`) adds a card per
    path neuron; ``neuron_images``: the folder they were described on, when not
    ``images``."""
    stats_text = None if stats is None else json.dumps(stats)
    images = None if images is None else os.fspath(images)
    neuron_images = None if neuron_images is None else os.fspath(neuron_images)
    missing = _native.report(
        _texts(records), os.fspath(out), _texts(manipulations), stats_text, images, _texts(neurons), neuron_images
    )
    if missing:
        print(f"{len(missing)} images shown without a thumbnail; first: {missing[0]}", file=sys.stderr)
    return os.path.abspath(os.fspath(out))


def read_records(path: PathLike) -> List[Record]:
    """The records of a JSON-lines file (``paths``, ``manipulate``)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def to_pandas(records: Sequence[Record]) -> Any:
    """The records as a pandas DataFrame, one row per record (per-layer lists stay
    lists). Needs pandas."""
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError("neuronpath.to_pandas needs pandas: pip install pandas") from e
    return pd.DataFrame.from_records(list(records))
