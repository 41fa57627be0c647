"""The dynamic-network benchmark's results as readable tables."""

from __future__ import annotations

__all__ = ["format_report", "short_summary"]


def short_summary(entry: dict) -> str:
    """One line: the main savings, accuracies and times of a result entry."""
    keys = ("flops_saved", "time_saved", "acc_dense", "acc_dynamic", "ms_dense", "ms_dynamic")
    return ", ".join(f"{k}={entry[k]:.4g}" for k in keys if k in entry)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _skipnet_lines(results: dict) -> list[str]:
    lines = [
        "SkipNet (per-sample FLOPs, per-batch median ms, test accuracy; ratio = time saved /"
        " FLOPs saved, cpu ratio = the same from process CPU time)",
        f"{'batch':>6}{'MFLOPs dense':>14}{'MFLOPs dyn':>12}{'p10-p90':>14}{'paths':>7}"
        f"{'saved':>8}{'ms dense':>10}{'ms dyn':>10}{'saved':>8}{'ratio':>7}{'cpu ratio':>10}"
        f"{'acc dense':>11}{'acc dyn':>9}",
    ]
    for batch, e in results["skipnet"].items():
        spread = "-"
        if "flops_per_sample_p10" in e:
            spread = f"{e['flops_per_sample_p10'] / 1e6:.1f}-{e['flops_per_sample_p90'] / 1e6:.1f}"
        lines.append(
            f"{batch:>6}{e['flops_dense'] / 1e6:>14.2f}{e['flops_dynamic'] / 1e6:>12.2f}"
            f"{spread:>14}{e.get('paths', '-'):>7}"
            f"{e['flops_saved']:>8.1%}{e['ms_dense']:>10.3f}{e['ms_dynamic']:>10.3f}"
            f"{e['time_saved']:>8.1%}{_ratio(e['time_saved_per_flops_saved']):>7}"
            f"{_ratio(e['cpu_time_saved_per_flops_saved']):>10}"
            f"{e['acc_dense']:>11.4f}{e['acc_dynamic']:>9.4f}"
        )
        if "grouped" in e:
            lines.append(
                f"{'':>6}  batch grouped by path instead: {e['grouped']['ms_grouped']:.3f} ms, "
                f"time saved {e['grouped']['time_saved_grouped']:.1%}"
            )
    for batch, e in results["details"].get("engine_check_random_gates", {}).items():
        lines.append(
            f"{'(' + batch + ')':>6} random per-sample gates at the policy's rate: FLOPs saved "
            f"{e['flops_saved']:.1%}, time saved {e['time_saved']:.1%} gather/scatter, "
            f"{e['grouped']['time_saved']:.1%} grouped by path"
        )
    return lines


def _policy_lines(policy: dict) -> list[str]:
    lines = [
        "",
        f"Policy on the test set (gate threshold {policy['threshold']}): per-sample MFLOPs "
        f"p10 {policy['flops_per_sample_p10'] / 1e6:.2f}, p90 "
        f"{policy['flops_per_sample_p90'] / 1e6:.2f} (p90/p10 {policy['p90_over_p10']:.2f}); "
        f"{policy['paths']} execution paths",
        "  commonest paths (1 = block ran): "
        + ", ".join(f"{p['path']} {p['share']:.1%}" for p in policy["path_shares"][:5]),
    ]
    for row in policy.get("by_difficulty", []):
        lines.append(
            f"  level {row['group']}: accuracy dense {row['accuracy_dense']:.4f}, SkipNet "
            f"{row['accuracy']:.4f}; {row['flops_mean'] / 1e6:.2f} MFLOPs, "
            f"{row['execution_rate']:.0%} of gated blocks run"
        )
    return lines


def _idk_lines(idk: dict) -> list[str]:
    return [
        "",
        f"IDK cascade (cost = FLOPs per input; best single model: {idk['best_stage']}; "
        f"kept {' -> '.join(idk['kept'])}"
        + (f"; dropped {', '.join(idk['dropped'])}" if idk.get("dropped") else "")
        + ")",
        f"{'':>10}{'cost':>14}{'accuracy':>10}{'ms (test set)':>15}",
        f"{'best':>10}{idk['cost_best']:>14.4g}{idk['acc_best']:>10.4f}{idk['ms_best']:>15.2f}",
        f"{'cascade':>10}{idk['cost_cascade']:>14.4g}{idk['acc_cascade']:>10.4f}"
        f"{idk['ms_cascade']:>15.2f}",
        f"   (plain constraint, z = 0: cost {idk['plain_constraint']['cost_cascade']:.4g}, "
        f"accuracy {idk['plain_constraint']['acc_cascade']:.4f})",
        "per-stage answer shares on test: "
        + ", ".join(
            f"{s['name']} {s['answer_share']:.3f} ({s['inputs']} in)"
            if s.get("kept", True)
            else f"{s['name']} dropped"
            for s in idk["stages"]
        ),
    ]


def _sweep_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "Systems sweep (FLOPs saved / wall-clock time saved, median of interleaved runs)"]
    for key in sorted({(r["batch"], r["threads"]) for r in rows}):
        part = [r for r in rows if (r["batch"], r["threads"]) == key]
        lines.append(
            f"  batch {key[0]:>2}, {key[1]} thread(s): "
            + ", ".join(
                f"t={r['threshold']} {r['flops_saved']:.2f}/{r['time_saved']:.2f}" for r in part
            )
        )
    return lines


def format_report(results: dict) -> str:
    """The results as readable tables."""
    details = results["details"]
    lines = _skipnet_lines(results)
    if "policy" in details:
        lines += _policy_lines(details["policy"])
    lines += _idk_lines(results["idk"])
    lines += _sweep_lines(details.get("systems_sweep", []))
    if "cpu_seconds" in details:
        lines.append(
            f"\nwhole run: {details['seconds']:.0f} s wall-clock, {details['cpu_seconds']:.0f} s "
            f"CPU; load average {details['load_average']['start'][0]:.1f} at the start, "
            f"{details['load_average']['end'][0]:.1f} at the end"
        )
    return "\n".join(lines)
