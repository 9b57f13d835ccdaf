"""What the path neurons of results/cifar10 do, from `neuronpath neurons` over the
10,000 CIFAR-10 test images: per method and layer, how often the class a path
explains is its neuron's most selective class, and the class its direct effect
promotes most. Standard library only.

    python3 analyze.py ../cifar10/paths.jsonl neurons.jsonl
"""
import json
import sys
from collections import defaultdict

METHODS = ["jas", "activation", "influence", "ig", "random"]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(paths_file, neurons_file):
    paths = load(paths_file)
    neurons = {(r["layer"], r["neuron"]): r for r in load(neurons_file)}
    layers = max(len(p["path"]) for p in paths)
    # per method, layer: [selective hits, promote hits, rank of target in class means, count]
    table = defaultdict(lambda: [[0, 0, 0.0, 0] for _ in range(layers)])
    for p in paths:
        for layer, neuron in enumerate(p["path"]):
            r = neurons[(layer, neuron)]
            row = table[p["method"]][layer]
            target = p["target"]
            row[0] += r["selective"][0]["class"] == target
            row[1] += r["direct_effect"]["promotes"][0]["class"] == target
            means = r["class_mean"]
            row[2] += sorted(range(len(means)), key=lambda c: -means[c]).index(target) + 1
            row[3] += 1
    print("share of paths whose neuron's most selective class is the path's class (chance 10%)")
    header = "method      " + "".join(f"   L{l + 1}" for l in range(layers)) + "   all"
    for what, column, fmt in [
        ("most selective class = the path's class", 0, "{:5.0%}"),
        ("direct effect promotes the path's class most", 1, "{:5.0%}"),
        ("rank of the path's class by mean activation (1 = highest; chance 5.5)", 2, "{:5.1f}"),
    ]:
        print(f"\n{what}\n{header}")
        for m in METHODS:
            rows = table[m]
            cells = [row[column] / row[3] for row in rows]
            total = sum(row[column] for row in rows) / sum(row[3] for row in rows)
            print(f"{m:<12}" + "".join(" " + fmt.format(c) for c in cells) + " " + fmt.format(total))
    distinct = {m: len({(l, n) for p in paths if p["method"] == m for l, n in enumerate(p["path"])}) for m in METHODS}
    print("\ndistinct neurons per method:", distinct)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
