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
    return f"{text} ({verdict}, adjusted p = {e['p_adjusted']:.2g} in the {e.get('family', 'exploratory')} family)"


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
        for other in cfg.primary.against:
            diff = e["differences"].get(other)
            if not diff:
                continue
            parts = [f"at matched {k}× {_said(v)}" for k, v in diff.items() if k != "area" and v.get("family") == "primary"]
            if "area" in diff:
                low, high = e["area"]["range"]
                parts.append(f"over the curve area ({low:g}–{high:g}×) {_said(diff['area'])}")
            out.append(f"{task}: {cfg.reference} − {other}: " + "; ".join(parts) + ".")
        for family in ("primary", "exploratory"):
            significant = [f"{other} at {k}{'' if k == 'area' else '×'} ({interval(v, signed=True)})"
                           for other, d in e["differences"].items() for k, v in d.items()
                           if v.get("significant") and v.get("family") == family]
            out.append(f"{task}: {family} differences significant after correction within their family: "
                       + (", ".join(significant) or "none") + ".")
        for other, by_key in e.get("guarantee_differences", {}).items():
            if by_key:
                out.append(f"{task}: speed-up at a guaranteed loss, {cfg.reference} − {other}: " + "; ".join(
                    f"{key} {_said(v, speedup=True)}" for key, v in by_key.items()) + ".")
        errors = {n: error * 100 for n, error in e["mean_calibration_error"].items()}
        shown = [n for n in (cfg.reference, *cfg.primary.against) if n in errors]
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


