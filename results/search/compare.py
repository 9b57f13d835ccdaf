"""Greedy against beam search on the same images (results/search/README.md).

python3 compare.py [--per-class N] greedy beam4 beam16
Reads <name>-paths.jsonl and <name>-manipulate.jsonl; prints one markdown table per
measure over the images every search covers (with --per-class N, only images
0000 to N-1 of each class).
"""
import json
import statistics
import sys
from pathlib import Path

here = Path(__file__).parent


def records(name, kind):
    path = here / f"{name}-{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(names, per_class=None):
    paths = {n: {r["image"]: r for r in records(n, "paths") if r.get("rank", 0) == 0} for n in names}
    common = sorted(set.intersection(*(set(p) for p in paths.values())))
    if per_class is not None:
        common = [i for i in common if int(Path(i).stem) < per_class]
    greedy = paths[names[0]]
    print(f"{len(common)} images covered by every search ({', '.join(names)})\n")
    print("| search | images | mean JAS | median JAS | mean gain over greedy | path differs | JAS higher | JAS lower | first differing layer (median, 1 = input side) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in names:
        scores = [paths[n][i]["score"] for i in common]
        base = [greedy[i]["score"] for i in common]
        differs = [i for i in common if paths[n][i]["path"] != greedy[i]["path"]]
        higher = sum(paths[n][i]["score"] > greedy[i]["score"] * (1 + 1e-9) for i in common)
        lower = sum(paths[n][i]["score"] < greedy[i]["score"] * (1 - 1e-9) for i in common)
        gains = [(s - b) / abs(b) for s, b in zip(scores, base) if b != 0]
        first = [next(l for l, (a, b) in enumerate(zip(paths[n][i]["path"], greedy[i]["path"])) if a != b) + 1 for i in differs]
        print(
            f"| {n} | {len(common)} | {statistics.mean(scores):.4f} | {statistics.median(scores):.4f} "
            f"| {100 * statistics.mean(gains):+.1f}% | {len(differs)} ({100 * len(differs) / len(common):.0f}%) "
            f"| {higher} | {lower} | {statistics.median(first) if first else '-'} |"
        )
    print("\n| search | remove: prob dev | remove: acc dev | enhance: prob dev | enhance: acc dev | accuracy before |")
    print("|---|---|---|---|---|---|")
    manip = {n: {(r["image"], r["op"]): r for r in records(n, "manipulate")} for n in names}
    for n in names:
        rows = [r for r in records(n, "manipulate") if r["image"] in set(common)]
        cells = []
        before = None
        for op in ("remove", "enhance"):
            group = [r for r in rows if r["op"] == op]
            if not group:
                cells += ["-", "-"]
                continue
            truth = lambda r: r["label"] if r["label"] is not None else r["target"]
            ratios = [r["prob_after"] / r["prob_before"] - 1 for r in group if r["prob_before"] > 0]
            acc_before = statistics.mean(r["predicted_before"] == truth(r) for r in group)
            acc_after = statistics.mean(r["predicted_after"] == truth(r) for r in group)
            before = acc_before
            cells += [f"{100 * statistics.mean(ratios):+.2f}% (n={len(group)})", f"{100 * (acc_after - acc_before):+.1f}%"]
        print(f"| {n} | " + " | ".join(cells) + f" | {'-' if before is None else f'{100 * before:.1f}%'} |")

    print("\nPaired difference from greedy of each image's probability deviation, mean (standard error), percentage points:\n")
    print("| search | remove | enhance |")
    print("|---|---|---|")
    for n in names[1:]:
        cells = []
        for op in ("remove", "enhance"):
            d = [
                change(manip[n][(i, op)]) - change(manip[names[0]][(i, op)])
                for i in common
                if (i, op) in manip[n] and (i, op) in manip[names[0]] and manip[n][(i, op)]["prob_before"] > 0
            ]
            cells.append(f"{100 * statistics.mean(d):+.2f} ({100 * statistics.stdev(d) / len(d) ** 0.5:.2f}), n={len(d)}" if len(d) > 1 else "-")
        print(f"| {n} | " + " | ".join(cells) + " |")


def change(r):
    return r["prob_after"] / r["prob_before"] - 1


if __name__ == "__main__":
    args = sys.argv[1:]
    per_class = None
    if args[:1] == ["--per-class"]:
        per_class, args = int(args[1]), args[2:]
    main(args or ["greedy", "beam4", "beam16"], per_class)
