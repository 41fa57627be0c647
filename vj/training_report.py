"""The training report: a per-stage table (Markdown, JSON) and a plot of the rates.

Per stage: weak learners, the stage's hit rate (on the held-out calibration
positives) and false-alarm rate (on its training negatives), the cumulative hit
rate and the estimated cumulative false-alarm rate (the share of background
windows the cascade before the stage accepted, times the stage's false-alarm
rate), negatives found, background windows scanned and the time spent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_text

__all__ = ["markdown_table", "plot_rates", "write_report"]

_COLUMNS = [
    ("stage", "stage", "{}"),
    ("n_weak", "weak", "{}"),
    ("hit_rate", "hit", "{:.4f}"),
    ("false_alarm", "FA", "{:.3f}"),
    ("cum_hit_rate", "cum. hit", "{:.4f}"),
    ("cum_false_alarm", "cum. FA", "{:.2e}"),
    ("negatives", "negatives", "{}"),
    ("windows_scanned", "windows scanned", "{:,}"),
    ("time_s", "time (s)", "{:.0f}"),
]


def markdown_table(rows: list[dict]) -> str:
    """The per-stage rows as a Markdown table."""
    head = "| " + " | ".join(c[1] for c in _COLUMNS) + " |"
    sep = "|" + "|".join("---:" for _ in _COLUMNS) + "|"
    body = ["| " + " | ".join(fmt.format(r[k]) for k, _, fmt in _COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def plot_rates(rows: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Cumulative hit rate and false-alarm rate per stage, and weak learners per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [r["stage"] + 1 for r in rows]
    fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.semilogy(stages, [r["cum_false_alarm"] for r in rows], "o-", color="tab:red",
                 label="false-alarm rate (est.)")
    ax1.set_xlabel("stages")
    ax1.set_ylabel("cumulative false-alarm rate", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(stages, [r["cum_hit_rate"] for r in rows], "s-", color="tab:blue",
             label="hit rate")
    ax2.set_ylabel("cumulative hit rate (calibration)", color="tab:blue")
    ax1.grid(True, which="both", alpha=0.3)
    ax3.bar(stages, [r["n_weak"] for r in rows], color="tab:gray")
    ax3.set_xlabel("stage")
    ax3.set_ylabel("weak learners")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(result, folder: str | os.PathLike, name: str = "report") -> dict[str, Path]:
    """Write ``name.json``, ``name.md`` and ``name.png`` for a :class:`~vj.training.TrainingResult`.

    Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = result.stages
    doc = {"stop_reason": result.stop_reason, "stages": rows, **result.info}
    paths = {"json": folder / f"{name}.json", "md": folder / f"{name}.md"}
    atomic_write_text(paths["json"], json.dumps(doc, indent=1))
    total = sum(r["time_s"] for r in rows)
    lines = [
        "# Cascade training report",
        "",
        f"Stopped: {result.stop_reason}.",
        "",
        f"Stages: {len(rows)}, weak learners: {sum(r['n_weak'] for r in rows)}, "
        f"stage time: {total / 60:.1f} min.",
    ]
    if result.info.get("validation_hit_rate") is not None:
        lines.append(f"Hit rate on the validation positives: "
                     f"{result.info['validation_hit_rate']:.4f}.")
    lines += ["", markdown_table(rows), ""]
    atomic_write_text(paths["md"], "\n".join(lines))
    if rows:
        paths["png"] = folder / f"{name}.png"
        plot_rates(rows, paths["png"], "cascade training")
    return paths
