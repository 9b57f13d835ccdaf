"""What the package's test files share: where the repository, the ground truth and
the bundled model and images are, and the command line to compare with.

The command line is `$NEURONPATH_BIN`, else `neuronpath` in the cargo target folder
(`$CARGO_TARGET_DIR`, else `target/`, release build); the ground truth is
`../shared` beside the repository. Needs no numpy."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
MODEL = REPO / "assets" / "vit-cifar10"
IMAGES = REPO / "assets" / "images"
TINY = SHARED / "fixtures" / "tiny-vit-hf"


def cli_binary() -> Path:
    given = os.environ.get("NEURONPATH_BIN")
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = Path(given) if given else target / "release" / "neuronpath"
    if not binary.is_file():
        pytest.fail(f"{binary}: no neuronpath binary (cargo build --release, or set NEURONPATH_BIN)")
    return binary


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli_binary()), *args], capture_output=True, text=True)


def read(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cli_run(command: str, images: Path, out: Path, *args: str) -> list:
    """`neuronpath COMMAND` on the bundled model and `images` into `out`, checked;
    the records it wrote."""
    run = cli(command, "--model", str(MODEL), "--images", str(images), "--out", str(out), *args)
    assert run.returncode == 0, run.stderr
    return read(out)
