"""Greedy's and beam search's distance from the exhaustive optimum (results/search/README.md).

python3 gap.py gap-tiny-reference.jsonl [gap-tiny-cifar.jsonl ...]
"""
import json
import statistics
import sys
from pathlib import Path

here = Path(__file__).parent
lines = [json.loads(l) for f in sys.argv[1:] for l in (here / f).read_text().splitlines() if l.strip()]
searches = sorted((k for k in lines[0] if k.startswith("beam")), key=lambda k: int(k[4:]))
print(f"{len(lines)} inputs, {lines[0]['paths']} paths each\n")
print("| search | finds the optimum | mean score / optimum | min score / optimum | paths scoring higher (median, max) |")
print("|---|---|---|---|---|")
for s in searches:
    ratios = [l[s]["score"] / l["exhaustive"]["score"] for l in lines]
    exact = sum(l[s]["paths_above"] == 0 for l in lines)
    above = [l[s]["paths_above"] for l in lines]
    name = "greedy" if s == "beam1" else f"beam {s[4:]}"
    print(
        f"| {name} | {exact}/{len(lines)} | {statistics.mean(ratios):.3f} | {min(ratios):.3f} "
        f"| {statistics.median(above):g}, {max(above)} |"
    )
print("\n| input | optimum | greedy | beam 4 | beam 16 | beam 64 |")
print("|---|---|---|---|---|---|")
for l in lines:
    cells = [f"{l[s]['score']:.4f} ({l[s]['paths_above']})" for s in searches]
    print(f"| {l['image']} | {l['exhaustive']['score']:.4f} {l['exhaustive']['path']} | " + " | ".join(cells) + " |")
