"""The Python package against reference numbers and against the command line run
on the same inputs (never against values the package itself produced); see
common.py for where the command line and the ground truth are found."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuronpath
from common import IMAGES, MODEL, REPO, SHARED, TINY, cli, cli_run, read


@pytest.fixture(scope="module")
def cli_paths(tmp_path_factory) -> Path:
    """`neuronpath paths` (all methods) on the bundled model and images."""
    out = tmp_path_factory.mktemp("cli") / "paths.jsonl"
    cli_run("paths", IMAGES, out)
    return out


@pytest.fixture(scope="module")
def model() -> neuronpath.Model:
    return neuronpath.load(str(MODEL))


def test_forward_equals_the_pytorch_reference():
    reference = np.load(SHARED / "fixtures" / "tiny-vit-reference.npz")
    tiny = neuronpath.load(TINY)
    logits, activations = tiny.forward(reference["pixels"])
    assert logits.shape == reference["logits"].shape
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(activations, reference["cls_ffn_activations"], rtol=0, atol=1e-4)
    assert tiny.info["layers"] == 3 and tiny.info["neurons"] == 64 and tiny.info["classes"] == 5


FAMILIES = REPO / "tests" / "fixtures" / "families"
FIXTURE_CLASSES = ["tench", "goldfish", "great white shark", "jack-o'-lantern", "potter's wheel"]
# The layouts of issue 22, each with the options it loads with (as tests/common does).
LAYOUTS = {
    "clip-hf": (FAMILIES / "clip-hf", dict(classes=FIXTURE_CLASSES)),
    "open-clip": (FAMILIES / "open-clip" / "open_clip_pytorch_model.bin",
                  dict(classes=FIXTURE_CLASSES, tokenizer=FAMILIES / "open-clip" / "vocab.txt.gz")),
    "timm-clip": (FAMILIES / "timm-clip" / "model.safetensors", dict(activation="gelu")),
    "dinov2-resized": (FAMILIES / "dinov2-resized", {}),
    "dinov2-backbone": (FAMILIES / "dinov2-backbone",
                        dict(head=FAMILIES / "dinov2-backbone" / "head.npy",
                             head_bias=FAMILIES / "dinov2-backbone" / "bias.npy")),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_new_layouts_equal_their_pytorch_reference(name):
    path, options = LAYOUTS[name]
    reference = np.load(FAMILIES / name / "reference.npz")
    loaded = neuronpath.load(path, **options)
    logits, activations = loaded.forward(reference["pixel_values"])
    scale = max(1.0, float(np.abs(reference["logits"]).max()))
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(activations, reference["cls_ffn_activations"], rtol=0, atol=1e-4)


def test_siglip_equals_transformers_with_a_sigmoid_per_class():
    # SigLIP's vision tower with its classifier beside it: no CLS token, so the
    # neurons span the patches; the logit scale and bias are read beside text.npy.
    folder = FAMILIES / "siglip-vision"
    reference = np.load(folder / "reference.npz")
    loaded = neuronpath.load(folder, classifier=folder / "text.npy")
    logits, activations = loaded.forward(reference["pixel_values"])
    scale = max(1.0, float(np.abs(reference["logits"]).max()))
    np.testing.assert_allclose(logits, reference["logits"], rtol=0, atol=1e-4 * scale)
    assert activations.shape == reference["ffn_activations"].shape
    np.testing.assert_allclose(activations, reference["ffn_activations"], rtol=0, atol=1e-4)
    # The records' probabilities are the target's sigmoid, as transformers' probs.
    targets = [int(t) for t in reference["target"]]
    records = loaded.paths(reference["pixel_values"], labels=targets, method="jas", steps=2, progress=False)
    want = [float(reference["probs"][b, t]) for b, t in enumerate(targets)]
    np.testing.assert_allclose([r["target_prob"] for r in records], want, rtol=0, atol=1e-5)


def test_zero_shot_classes_run_paths_as_the_cli(tmp_path):
    path, options = LAYOUTS["open-clip"]
    images = tmp_path / "images"
    for c in ("cat", "ship"):
        (images / c).mkdir(parents=True)
        shutil.copy(SHARED / "data" / "cifar10-test" / c / "0000.jpg", images / c / "0000.jpg")
    options = dict(options, classes=["cat", "ship"], prompts=["a photo of a {}.", "itap of my {}."])
    loaded = neuronpath.load(path, **options)
    assert loaded.info["class_names"] == ["cat", "ship"]
    records = loaded.paths(images, method="jas", steps=4, progress=False)
    out = tmp_path / "cli.jsonl"
    run = cli("paths", "--model", str(path), "--classes", "cat,ship", "--prompt", "a photo of a {}.",
              "--prompt", "itap of my {}.", "--tokenizer", str(options["tokenizer"]), "--images", str(images),
              "--method", "jas", "--steps", "4", "--out", str(out))
    assert run.returncode == 0, run.stderr
    cli_records = read(out)
    keep = ("image", "path", "score", "target", "model_fingerprint")
    assert [{k: r[k] for k in keep} for r in records] == [{k: r[k] for k in keep} for r in cli_records]


def test_an_activation_the_file_cannot_say_is_asked_for():
    path, _ = LAYOUTS["timm-clip"]
    with pytest.raises(neuronpath.NeuronpathError, match="--activation"):
        neuronpath.load(path)
    with pytest.raises(neuronpath.NeuronpathError, match="quick-gelu"):
        neuronpath.load(path, activation="relu")


def test_paths_on_the_bundled_images_equal_the_cli(model, cli_paths):
    records = model.paths(IMAGES, progress=False)
    assert records == read(cli_paths)


def test_paths_on_pixels_equal_the_cli(model, cli_paths):
    pixels, labels, keys = model.pixels(IMAGES)
    assert pixels.shape == (20, 3, 32, 32) and pixels.dtype == np.float32
    records = model.paths(pixels, labels=labels, method=["jas", "activation"], progress=False)
    by_key = {(r["image"], r["method"]): r for r in read(cli_paths)}
    assert len(records) == 40
    for r in records:
        want = by_key[(keys[int(r["image"])], r["method"])]
        for field in ["path", "score", "target_prob", "activation", "gradient", "contribution"]:
            assert r[field] == want[field], (r["image"], r["method"], field)


def test_jas_of_a_record_path_equals_its_score(model, cli_paths):
    pixels, _, keys = model.pixels(IMAGES)
    for r in read(cli_paths)[:10]:
        score = model.jas(pixels[keys.index(r["image"])], r["path"], r["target"])
        assert score["score"] == pytest.approx(r["score"], rel=1e-9, abs=1e-12), r["method"]
        assert score["contribution"] == pytest.approx(r["contribution"], rel=1e-9, abs=1e-12)


def test_manipulate_and_stats_equal_the_cli(model, cli_paths, tmp_path):
    out = tmp_path / "manipulate.jsonl"
    records = read(cli_paths)
    assert neuronpath.manipulate(model, records, IMAGES, progress=False) == cli_run(
        "manipulate", IMAGES, out, "--paths", str(cli_paths)
    )
    stats = tmp_path / "stats.json"
    run = cli("stats", "--paths", str(cli_paths), "--out", str(stats))
    assert run.returncode == 0, run.stderr
    assert neuronpath.stats(records) == json.loads(stats.read_text())
    summary = neuronpath.summarize(read(out))
    assert {(s["method"], s["op"]) for s in summary} == {(r["method"], r["op"]) for r in read(out)}
    page = neuronpath.report(records, tmp_path / "report.html", manipulations=read(out), images=IMAGES)
    assert "<title>neuronpath report</title>" in Path(page).read_text()


def test_neurons_equal_the_cli_and_make_cards(model, cli_paths, tmp_path):
    out = tmp_path / "neurons.jsonl"
    records = read(cli_paths)
    described = neuronpath.neurons(model, IMAGES, records, progress=False)
    assert described == cli_run("neurons", IMAGES, out, "--paths", str(cli_paths))
    given = neuronpath.neurons(model, IMAGES, neurons=[(0, 1), (5, 7)], top=3, rank="patch-max", progress=False)
    assert [(r["layer"], r["neuron"], r["ranked_by"], len(r["top"])) for r in given] == [
        (0, 1, "patch-max", 3),
        (5, 7, "patch-max", 3),
    ]
    with pytest.raises(neuronpath.NeuronpathError, match="rank"):
        neuronpath.neurons(model, IMAGES, neurons=[(0, 1)], rank="median", progress=False)
    page = neuronpath.report(records, tmp_path / "report.html", images=IMAGES, neurons=described)
    assert 'class="neuron-card"' in Path(page).read_text()


def test_a_bad_checkpoint_raises_naming_the_file_and_tensor(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(TINY / "config.json", broken / "config.json")
    data = (TINY / "model.safetensors").read_bytes()
    name = b"vit.encoder.layer.1.output.dense.weight"
    assert data.count(name) == 1
    (broken / "model.safetensors").write_bytes(data.replace(name, name[:-1] + b"X"))
    with pytest.raises(neuronpath.NeuronpathError) as raised:
        neuronpath.load(broken)
    message = str(raised.value)
    assert "model.safetensors" in message and "vit.encoder.layer.1.output.dense.weigh" in message
    run = cli("inspect", "--model", str(broken))
    assert run.returncode != 0 and run.stderr.strip() == f"error: {message}"
    assert isinstance(raised.value, ValueError)


def test_progress_is_reported_and_a_raising_callback_stops_the_run(model, tmp_path):
    files = sorted(str(p) for p in IMAGES.glob("*/*.jpg"))[:3]
    calls = []
    model.paths(files, method="random", target="predicted", progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (3, 3)

    def stop(done, total):
        raise KeyboardInterrupt

    out = tmp_path / "paths.jsonl"
    with pytest.raises(KeyboardInterrupt):
        model.paths(files, method="random", target="predicted", batch=1, out=out, progress=stop)
    assert len(read(out)) == 1  # the batch in flight is kept, nothing after it


def test_ctrl_c_stops_after_the_batch_in_flight(tmp_path, cli_paths):
    """SIGINT, raised by the progress callback once the first image is written (so
    the run cannot have finished, whatever the machine's speed), is handled by
    Python's own handler: KeyboardInterrupt, the run stopped after that batch, its
    records whole; a rerun resumes to what one run writes. The script installs
    that handler itself: Python leaves SIGINT ignored when it starts with it
    ignored (a background job of a non-interactive shell, as CI runners start)."""
    out = tmp_path / "paths.jsonl"
    script = (
        "import signal, sys, neuronpath\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "def progress(done, total):\n"
        "    if done == 1:\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "neuronpath.load(sys.argv[1]).paths(sys.argv[2], method='jas', batch=1, out=sys.argv[3], progress=progress)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(MODEL), str(IMAGES), str(out)], capture_output=True, text=True, timeout=600
    )
    assert run.returncode != 0 and "KeyboardInterrupt" in run.stderr, run.stderr
    assert len(read(out)) == 1  # the batch in flight, nothing after it
    neuronpath.load(str(MODEL)).paths(IMAGES, method="jas", batch=1, out=out, progress=False)
    assert read(out) == [r for r in read(cli_paths) if r["method"] == "jas"]


def test_folders_naming_no_class_are_unlabelled_for_predicted_targets(model, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "any").mkdir(parents=True)
    for i, image in enumerate(sorted(IMAGES.glob("*/*.jpg"))[:2]):
        shutil.copy(image, mine / "any" / f"{i}.jpg")
    with pytest.raises(neuronpath.NeuronpathError, match="label-map"):
        model.paths(mine, method="activation", steps=2, progress=False)
    records = model.paths(mine, method="activation", steps=2, target="predicted", progress=False)
    assert "unlabelled (label null)" in capsys.readouterr().err
    fast = ["--method", "activation", "--steps", "2", "--target", "predicted"]
    assert records == cli_run("paths", mine, tmp_path / "cli.jsonl", *fast) and len(records) == 2
    assert all(r["label"] is None and r["label_name"] is None for r in records)
    _, labels, keys = model.pixels(mine)
    assert labels == [None, None] and keys == ["any/0.jpg", "any/1.jpg"]
    described = neuronpath.neurons(model, mine, neurons=[(0, 1)], top=2, progress=False)
    assert [e["label"] for e in described[0]["top"]] == [None, None]


def test_errors_carry_the_cli_message(model, tmp_path):
    with pytest.raises(neuronpath.NeuronpathError, match="no such image file or folder"):
        model.paths(tmp_path / "missing", progress=False)
    with pytest.raises(neuronpath.NeuronpathError, match="one of jas, activation"):
        model.paths(IMAGES, method="best", progress=False)


def test_odd_inputs_raise_naming_the_problem_never_panic(model):
    none = np.zeros((0, 3, 32, 32), np.float32)
    logits, activations = model.forward(none)
    assert logits.shape == (0, 10) and activations.shape == (0, 6, 512)
    assert model.jas(none, [0] * 6, []) == []
    one = np.zeros((1, 3, 32, 32), np.float32)
    raised = {
        "shape [3, 32, 32]": lambda: model.forward(one[0]),
        "label 10 of image 0 is outside the model's 10 classes": lambda: model.paths(
            one, labels=[10], target="predicted", progress=False
        ),
        "a folder's class folders give its labels": lambda: model.paths(IMAGES, labels=[0], progress=False),
        "batch 0": lambda: neuronpath.neurons(model, IMAGES, neurons=[(0, 1)], batch=0, progress=False),
        "not a path": lambda: model.jas(one, [[]] * 6, 0),
    }
    for message, call in raised.items():
        with pytest.raises(neuronpath.NeuronpathError, match=re.escape(message)):
            call()


def test_to_pandas(cli_paths):
    pd = pytest.importorskip("pandas")
    records = read(cli_paths)
    table = neuronpath.to_pandas(records)
    assert isinstance(table, pd.DataFrame)
    assert len(table) == len(records) and list(table.columns) == list(records[0].keys())


def test_paths_on_a_gpu_equal_the_cli(cli_paths):
    """The whole pass on the first usable GPU (lavapipe, a software device, in CI):
    the CLI's CPU paths, scores within f32 rounding. Two images: a software device
    is slow."""
    usable = [d for d in neuronpath.devices() if d["unusable"] is None]
    assert usable, f"no usable GPU: {neuronpath.devices()} (scripts/test installs lavapipe)"
    gpu = neuronpath.load(MODEL, gpu=usable[0]["index"])
    pixels, labels, keys = gpu.pixels(IMAGES)
    records = gpu.paths(pixels[:2], labels=labels[:2], method=["jas"], progress=False)
    by_key = {(r["image"], r["method"]): r for r in read(cli_paths)}
    assert len(records) == 2
    for r in records:
        want = by_key[(keys[int(r["image"])], "jas")]
        assert r["path"] == want["path"]
        assert r["score"] == pytest.approx(want["score"], rel=1e-4)
