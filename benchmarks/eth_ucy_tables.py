"""Render the result tables of benchmarks/eth_ucy.md from benchmarks/eth_ucy.json.

    python benchmarks/eth_ucy_tables.py            # print the tables
    python benchmarks/eth_ucy_tables.py --write    # replace them in eth_ucy.md, between markers

Numbers are read, never typed: the Markdown shows what the JSON holds, rounded to 2 decimals
(3 for the averages below each table).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from trajectory.files import write_text_atomic

HERE = Path(__file__).parent
SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
BEGIN, END = "<!-- tables: begin (benchmarks/eth_ucy_tables.py) -->", "<!-- tables: end -->"
# `trajectory evaluate --output` files of single checkpoints, shown as one reliability table
EVALUATIONS = {"mixture": "zara1_test_mixture.json", "calibrated": "zara1_test_calibrated.json"}
REL_BEGIN = "<!-- reliability: begin (benchmarks/eth_ucy_tables.py) -->"
REL_END = "<!-- reliability: end -->"
SCALARS = (("brier_min_fde_20", "brier-minFDE-20 (m)"), ("nll", "NLL (nats/point)"),
           ("miss_rate_20", "miss rate @2 m"))


def _pair(row: dict[str, list[float]], std: dict[str, list[float]] | None, col: str) -> str:
    cell = f"{row[col][0]:.2f}/{row[col][1]:.2f}"
    if std is not None:
        cell += f" ±{std[col][0]:.2f}/{std[col][1]:.2f}"
    return f"**{cell}**" if col == "avg" else cell


def displacement_table(models: dict[str, Any]) -> str:
    lines = ["| model | K | " + " | ".join([*SCENES, "avg"]) + " |", "|---|---|" + "---|" * 6]
    for key, label in (("k1", "1"), ("k20", "20")):
        for name, entry in models.items():
            if key not in entry or (key == "k20" and name == "cv"):
                continue
            std = entry.get(f"{key}_std")
            cells = " | ".join(_pair(entry[key], std, c) for c in [*SCENES, "avg"])
            lines.append(f"| {name} | {label} | {cells} |")
    return "\n".join(lines)


def scalar_table(models: dict[str, Any]) -> str:
    lines = ["| model | metric | " + " | ".join([*SCENES, "avg"]) + " |", "|---|---|" + "---|" * 6]
    for key, label in SCALARS:
        for name, entry in models.items():
            if key not in entry:
                lines.append(f"| {name} | {label} | not measured |" + " |" * 5)
                continue
            row = entry[key]
            cells = " | ".join(f"{row['scenes'][s]:.2f}" for s in SCENES)
            lines.append(f"| {name} | {label} | {cells} | **{row['avg']:.3f}** |")
    return "\n".join(lines)


def training_table(models: dict[str, Any]) -> str:
    lines = ["| model | seeds | " + " | ".join(SCENES) + " | total s | best epoch per scene |",
             "|---|---|" + "---|" * 7]
    for name, entry in models.items():
        if not isinstance(entry.get("train_seconds"), dict):
            continue
        secs = entry["train_seconds"]
        best = "; ".join(f"{s} {entry['best_epoch'][s]}" for s in SCENES)
        lines.append(
            f"| {name} | {entry.get('seeds')} | "
            + " | ".join(f"{secs[s]:.0f}" for s in SCENES)
            + f" | {sum(secs.values()):.0f} | {best} |"
        )
    return "\n".join(lines)


def reliability_table(models: dict[str, Any]) -> str:
    if not any(entry.get("reliability") for entry in models.values()):
        return "No entry holds a reliability table yet (entries benchmarked before it was added)."
    lines = ["| model | weight bin | modes | mean weight | closest rate |", "|---|---|---|---|---|"]
    for name, entry in models.items():
        for row in entry.get("reliability", []):
            if not row["count"]:
                continue
            lines.append(f"| {name} | {row['lo']:.2f}-{row['hi']:.2f} | {row['count']} | "
                         f"{row['mean_weight']:.3f} | {row['closest_rate']:.3f} |")
    return "\n".join(lines)


def averages(models: dict[str, Any]) -> str:
    out = []
    for name, entry in models.items():
        k1, k20 = entry["k1"]["avg"], entry.get("k20", entry["k1"])["avg"]
        text = f"- {name}: K=1 {k1[0]:.3f}/{k1[1]:.3f}, best-of-20 {k20[0]:.3f}/{k20[1]:.3f}"
        if "brier_min_fde_20" in entry:
            text += f", brier-minFDE {entry['brier_min_fde_20']['avg']:.3f}"
        if "k1_std" in entry:
            s = entry["k1_std"]["avg"]
            text += f" (K=1 seed spread {s[0]:.3f}/{s[1]:.3f})"
        text += f"; run {entry.get('date', '?')}, load average {entry.get('load_average', '?')}"
        out.append(text)
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    models = result["models"]
    return "\n\n".join([
        "### ADE/FDE (m): K=1 and best-of-20, mean of seeds ± spread over seeds",
        displacement_table(models),
        "### Calibration-aware metrics (the 20 outputs with their weights)",
        scalar_table(models),
        "### Reliability of the mode weights (test windows of all scenes and seeds pooled)",
        ("How often a mode with a weight in the bin is the one that ends closest to the truth; "
        "calibrated weights have closest rate = mean weight. Copies of one track count once."),
        reliability_table(models),
        "### Training time (s per fold, mean over seeds; 1 thread, 2 folds at once)",
        training_table(models),
        "### Unrounded averages",
        averages(models),
    ])


def evaluations_table(folder: Path) -> str:
    found = {n: folder / f for n, f in EVALUATIONS.items() if (folder / f).is_file()}
    return reliability_table({n: json.loads(p.read_text()) for n, p in found.items()})


def _replace(text: str, begin: str, end: str, body: str, where: Path) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"{where}: markers {begin!r} ... {end!r} not found")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=HERE / "eth_ucy.json")
    parser.add_argument("--md", type=Path, default=HERE / "eth_ucy.md")
    parser.add_argument("--write", action="store_true", help="replace the tables in --md")
    args = parser.parse_args()
    tables = render(json.loads(args.json.read_text()))
    evaluations = evaluations_table(args.json.parent)
    if not args.write:
        print(f"{tables}\n\n{evaluations}")
        return
    text = _replace(args.md.read_text(), BEGIN, END, tables, args.md)
    text = _replace(text, REL_BEGIN, REL_END, evaluations, args.md)
    write_text_atomic(args.md, text)


if __name__ == "__main__":
    main()
