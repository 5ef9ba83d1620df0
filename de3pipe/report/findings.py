"""The findings: plain statements generated from the corrected numbers, for learned tasks only."""

from __future__ import annotations

import numpy as np

from de3pipe.config import ReportConfig
from de3pipe.report.tables import interval

def _said(e: dict, speedup: bool = False) -> str:
    text = f"{e['value']:+.2f}× [{e['low']:+.2f}, {e['high']:+.2f}]" if speedup else interval(e, signed=True)
    if e.get("identical"):
        return "0 (identical exits)"
    verdict = "significant" if e.get("significant") else "not significant"
    return f"{text} ({verdict}, adjusted p = {e['p_adjusted']:.2g})"


def findings(summary: dict, cfg: ReportConfig) -> list[str]:
    """Plain statements from the corrected numbers, for learned tasks only."""
    out = []
    tasks = summary["tasks"]
    not_learned = [t for t, e in tasks.items() if not e["gate"]["learned"]]
    if not_learned:
        out.append(
            "Not learned, so left out of every finding below: " + "; ".join(
                f"{t} ({tasks[t]['metric']} {interval(tasks[t]['gate']['full_model'])} against the trivial "
                f"{interval(tasks[t]['gate']['trivial'])})" for t in not_learned) + "."
        )
    for task, e in tasks.items():
        if not e["gate"]["learned"]:
            continue
        for other in cfg.compare_against:
            diff = e["differences"].get(other)
            if not diff:
                continue
            parts = [f"at matched {k}× {_said(v)}" for k, v in diff.items() if k != "area" and float(k) in (2.0, 3.0)]
            if "area" in diff:
                parts.append(f"over the curve area (1–{e['area']['range'][1]:.2f}×) {_said(diff['area'])}")
            out.append(f"{task}: {cfg.reference} − {other}: " + "; ".join(parts) + ".")
        significant = [f"{other} at {k}{'' if k == 'area' else '×'} ({interval(v, signed=True)})"
                       for other, d in e["differences"].items() for k, v in d.items() if v.get("significant")]
        out.append(f"{task}: differences significant after correction: " + (", ".join(significant) or "none") + ".")
        for other, by_key in e.get("guarantee_differences", {}).items():
            if by_key:
                out.append(f"{task}: speed-up at a guaranteed loss, {cfg.reference} − {other}: " + "; ".join(
                    f"{key} {_said(v, speedup=True)}" for key, v in by_key.items()) + ".")
        errors = {n: error * 100 for n, error in e["mean_calibration_error"].items()}
        shown = [n for n in (cfg.reference, *cfg.compare_against) if n in errors]
        if shown:
            out.append(f"{task}: calibration, mean |achieved test speed-up / target − 1|: "
                       + ", ".join(f"{n} {errors[n]:.1f}%" for n in shown) + ".")
    overheads = [e["overhead"] for e in tasks.values() if e.get("overhead")]
    if overheads:
        share = np.mean([o["extra_parameter_share"][0] for o in overheads]) * 100
        extra = np.mean([o["percent_of_layer.de3_extra"][0] for o in overheads])
        out.append(f"Overhead: the prototypical networks add {share:.1f}% parameters; the distance signal adds "
                   f"{extra:.1f}% of one layer's time per exit check over entropy's.")
    return out


