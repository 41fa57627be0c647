"""The dynamic-network benchmark's results as readable tables."""

from __future__ import annotations

__all__ = ["format_report", "short_summary"]


def short_summary(entry: dict) -> str:
    """One line: the main savings, accuracies and times of a result entry."""
    keys = ("flops_saved", "time_saved", "acc_dense", "acc_dynamic", "ms_dense", "ms_dynamic")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_report(results: dict) -> str:
    """The results as readable tables."""
    lines = [
        "SkipNet (per-sample FLOPs, per-batch median ms, test accuracy; ratio = time saved /"
        " FLOPs saved, cpu ratio = the same from process CPU time)",
        f"{'batch':>6}{'MFLOPs dense':>14}{'MFLOPs dyn':>12}{'saved':>8}"
        f"{'ms dense':>10}{'ms dyn':>10}{'saved':>8}{'ratio':>7}{'cpu ratio':>10}"
        f"{'acc dense':>11}{'acc dyn':>9}",
    ]
    for batch, e in results["skipnet"].items():
        lines.append(
            f"{batch:>6}{e['flops_dense'] / 1e6:>14.2f}{e['flops_dynamic'] / 1e6:>12.2f}"
            f"{e['flops_saved']:>8.1%}{e['ms_dense']:>10.3f}{e['ms_dynamic']:>10.3f}"
            f"{e['time_saved']:>8.1%}{_ratio(e['time_saved_per_flops_saved']):>7}"
            f"{_ratio(e['cpu_time_saved_per_flops_saved']):>10}"
            f"{e['acc_dense']:>11.4f}{e['acc_dynamic']:>9.4f}"
        )
    engine = results["details"].get("engine_check_random_gates", {})
    for batch, e in engine.items():
        lines.append(
            f"{'(' + batch + ')':>6}{e['flops_dense'] / 1e6:>14.2f}"
            f"{e['flops_dynamic'] / 1e6:>12.2f}"
            f"{e['flops_saved']:>8.1%}{e['ms_dense']:>10.3f}{e['ms_dynamic']:>10.3f}"
            f"{e['time_saved']:>8.1%}{_ratio(e['time_saved_per_flops_saved']):>7}"
            f"{_ratio(e['cpu_time_saved_per_flops_saved']):>10}   random per-sample gates"
        )
    idk = results["idk"]
    lines += [
        "",
        f"IDK cascade (cost = FLOPs per input; best single model: {idk['best_stage']})",
        f"{'':>10}{'cost':>14}{'accuracy':>10}{'ms (test set)':>15}",
        f"{'best':>10}{idk['cost_best']:>14.4g}{idk['acc_best']:>10.4f}{idk['ms_best']:>15.2f}",
        f"{'cascade':>10}{idk['cost_cascade']:>14.4g}{idk['acc_cascade']:>10.4f}{idk['ms_cascade']:>15.2f}",
        f"   (plain constraint, z = 0: cost {idk['plain_constraint']['cost_cascade']:.4g}, "
        f"accuracy {idk['plain_constraint']['acc_cascade']:.4f})",
        "per-stage IDK rates: "
        + ", ".join(f"{s['name']} {s['idk_rate']:.3f} ({s['inputs']} in)" for s in idk["stages"]),
    ]
    return "\n".join(lines)
