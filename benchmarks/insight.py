"""The driver's insight step at competition scale: what one config's per-class report costs, on the driver.

Synthetic OOF predictions (--classes classes, --rows rows, about --accuracy right), timed
part by part: the per-class table, the named top confused pairs, the mistakes page, the
confusion figure (past 30 classes: the top pairs as bars) and a 16-image gallery. Also
prints the size of what is logged. Medians of --repeats runs.

    python benchmarks/insight.py [--classes 500] [--rows 50000] [--accuracy 0.7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--classes", type=int, default=500)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--accuracy", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from orchestrator.tracking.insight import confused_pairs, mistakes_text, per_class
    from orchestrator.tracking.plots import confusion_figure, gallery_figure

    rng = np.random.default_rng(0)
    classes = [f"n{k:08d}_class_{k}" for k in range(args.classes)]
    targets = rng.integers(0, args.classes, args.rows)
    predicted = np.where(rng.random(args.rows) < args.accuracy, targets, rng.integers(0, args.classes, args.rows))
    images = [rng.integers(0, 255, (160, 160, 3), dtype=np.uint8) for _ in range(16)]
    times: dict[str, list[float]] = {}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            times.setdefault(name, []).append(now - clock)
            clock = now

        table = per_class(targets, predicted, classes)
        lap("per-class table")
        pairs = confused_pairs(targets, predicted, classes, 20)
        lap("top 20 confused pairs")
        page = mistakes_text("benchmark", table, pairs)
        lap("mistakes page")
        for name, figure in (("confusion figure", confusion_figure(targets, predicted, classes, pairs, "benchmark")),
                             ("gallery (16 images)", gallery_figure(images, ["true: a\npredicted: b (0.9)"] * 16, "t"))):
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            sizes[f"{name} png"] = buffer.tell()
            lap(name)
    sizes["per_class.json"] = len(table.to_json(orient="split", index=False))
    sizes["mistakes.txt"] = len(page)
    print(f"{args.classes} classes, {args.rows} OOF rows, accuracy {args.accuracy}; medians of {args.repeats} runs")
    for name, values in times.items():
        print(f"  {name:<24}{statistics.median(values):7.3f} s")
    print(f"  {'total':<24}{sum(statistics.median(v) for v in times.values()):7.3f} s")
    for name, size in sizes.items():
        print(f"  {name:<24}{size / 1024:7.1f} KiB")
    print(f"  mistakes page: {page.count(chr(10))} lines, widest {max(map(len, page.splitlines()))} characters")


if __name__ == "__main__":
    main()
