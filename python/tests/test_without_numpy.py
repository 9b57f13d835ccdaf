"""The package without numpy, as `pip install ./python` leaves it (scripts/test-python
runs this file in a virtual environment that has none, with
NEURONPATH_TEST_WITHOUT_NUMPY=1): folders and files run as the command line runs
them; arrays raise NeuronpathError saying to install numpy, never a panic. Where
numpy is installed the file is skipped."""

import importlib.util
import os
import sys

import pytest

from common import IMAGES, MODEL, cli_run, read

if importlib.util.find_spec("numpy") is not None:
    if os.environ.get("NEURONPATH_TEST_WITHOUT_NUMPY"):
        pytest.fail("numpy is installed in the environment meant to have none", pytrace=False)
    pytest.skip("numpy is installed here (scripts/test-python runs these without it)", allow_module_level=True)

import neuronpath  # noqa: E402

FAST = ["--method", "activation", "--steps", "2"]


@pytest.fixture(scope="module")
def model() -> neuronpath.Model:
    return neuronpath.load(MODEL)


@pytest.fixture(scope="module")
def cli_paths(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "paths.jsonl"
    cli_run("paths", IMAGES, out, *FAST)
    return out


def test_folders_and_files_run_as_the_cli(model, cli_paths, tmp_path):
    records = model.paths(IMAGES, method="activation", steps=2, progress=False)
    assert records == read(cli_paths)
    image = sorted(IMAGES.glob("*/*.jpg"))[0]
    one = cli_run("paths", image, tmp_path / "one.jsonl", *FAST, "--target", "predicted")
    assert model.paths(image, method="activation", steps=2, target="predicted", progress=False) == one
    listed = model.paths([image], labels=[records[0]["label"]], method="activation", steps=2, progress=False)
    assert [(r["path"], r["score"]) for r in listed] == [(records[0]["path"], records[0]["score"])]
    assert "numpy" not in sys.modules


def test_experiments_on_folders_run_as_the_cli(model, cli_paths, tmp_path):
    records = read(cli_paths)
    edits = cli_run("manipulate", IMAGES, tmp_path / "manipulate.jsonl", "--paths", str(cli_paths))
    assert neuronpath.manipulate(model, records, IMAGES, progress=False) == edits
    described = cli_run("neurons", IMAGES, tmp_path / "neurons.jsonl", "--neurons", "0:1", "--top", "2")
    assert neuronpath.neurons(model, IMAGES, neurons=[(0, 1)], top=2, progress=False) == described
    assert neuronpath.stats(records)["methods"]
    assert neuronpath.summarize(edits)
    page = neuronpath.report(records, tmp_path / "report.html", images=IMAGES)
    assert os.path.getsize(page) > 0
    assert "numpy" not in sys.modules


def test_arrays_raise_saying_to_install_numpy(model, cli_paths):
    pixels = [[[[0.0] * 32] * 32] * 3]
    calls = [
        lambda: model.forward(pixels),
        lambda: model.jas(pixels, [0] * 6, 0),
        lambda: model.pixels(IMAGES),
        lambda: model.paths(pixels, labels=[0], progress=False),
        lambda: neuronpath.manipulate(model, read(cli_paths), pixels, progress=False),
        # The native layer itself (what the Python layer would not pass) raises too.
        lambda: model._native.forward(pixels),
        lambda: model._native.jas(pixels, "[0]", [0], {"steps": 1, "integration": "left-riemann", "score_form": "reference"}),
        lambda: model._native.pixels(str(IMAGES)),
    ]
    for call in calls:
        with pytest.raises(neuronpath.NeuronpathError, match="pip install numpy"):
            call()
    assert "numpy" not in sys.modules
