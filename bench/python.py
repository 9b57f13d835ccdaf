"""Time per image of `neuronpath.load(...).paths(...)` against the command line's
`neuronpath paths`, on the same images in one run, alternating (CLI, Python, CLI,
...) so that both see the same machine; prints each round and the medians.

    python bench/python.py --bin target/release/neuronpath [--rounds 3] [--method jas]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import neuronpath

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "neuronpath"), help="the neuronpath binary")
    parser.add_argument("--model", default=str(REPO / "assets" / "vit-cifar10"))
    parser.add_argument("--images", default=str(REPO / "assets" / "images"))
    parser.add_argument("--method", default="", help="comma-separated methods (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="CLI and Python runs each")
    args = parser.parse_args()
    methods = [m for m in args.method.split(",") if m]
    images = sum(1 for p in Path(args.images).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    cli_times, py_times, cli_cpu, py_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            out = os.path.join(tmp, f"cli-{r}.jsonl")
            command = [args.bin, "paths", "--model", args.model, "--images", args.images, "--out", out]
            if methods:
                command += ["--method", ",".join(methods)]
            start, cpu = time.perf_counter(), cpu_time(resource.RUSAGE_CHILDREN)
            subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
            cli_times.append((time.perf_counter() - start) / images)
            cli_cpu.append((cpu_time(resource.RUSAGE_CHILDREN) - cpu) / images)
            start, cpu = time.perf_counter(), cpu_time(resource.RUSAGE_SELF)
            neuronpath.load(args.model).paths(args.images, method=methods or None, progress=False)
            py_times.append((time.perf_counter() - start) / images)
            py_cpu.append((cpu_time(resource.RUSAGE_SELF) - cpu) / images)
            print(
                f"round {r}: CLI {cli_times[-1]:.4f} s/image (CPU {cli_cpu[-1]:.4f} s), "
                f"Python {py_times[-1]:.4f} s/image (CPU {py_cpu[-1]:.4f} s)",
                file=sys.stderr,
            )
    print(f"{images} images, methods {','.join(methods) or 'all'}, {args.rounds} rounds each (median):")
    for what, c, p in [("wall", cli_times, py_times), ("CPU", cli_cpu, py_cpu)]:
        cli, py = statistics.median(c), statistics.median(p)
        print(f"{what:<4}  CLI {cli:.4f} s/image, Python {py:.4f} s/image: {py / cli:.3f}x the CLI's")


def cpu_time(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
