"""The report's Markdown: every table, formatted from the summary's numbers (no statistics here)."""

from __future__ import annotations

from de3pipe.method.strategies import compared_names, registry

def interval(e: dict | None, signed: bool = False, scale: float = 100.0) -> str:
    """value [low, high] (×scale); '–' where there is no value."""
    if not e:
        return "–"
    f = "{:+.1f}" if signed else "{:.1f}"
    if e["low"] == e["high"] == e["value"]:  # e.g. a constant classifier's MCC, a static exit's speed-up
        return f"{f.format(e['value'] * scale)} (exact)"
    return f"{f.format(e['value'] * scale)} [{f.format(e['low'] * scale)}, {f.format(e['high'] * scale)}]"


def _difference(e: dict | None) -> str:
    if not e:
        return "–"
    if e.get("identical"):
        return "0 (identical exits)"
    text = interval(e, signed=True)
    return f"**{text}** ✱" if e.get("significant") else text


def _mean_t(value: tuple[float, float | None], scale: float = 100.0) -> str:
    mean, half = value
    return f"{mean * scale:.1f}" + (f" ± {half * scale:.1f}" if half else "")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _task_headers(summary: dict) -> list[str]:
    return [t if e["gate"]["learned"] else f"{t} (not learned)" for t, e in summary["tasks"].items()]


def markdown(summary: dict) -> str:
    tasks = list(summary["tasks"])
    entries = [summary["tasks"][t] for t in tasks]
    protocol = summary["protocol"]
    level = f"{protocol['confidence'] * 100:g}%"
    lines = [
        "# de3pipe report",
        "",
        f"Seeds: {', '.join(str(s) for s in summary['seeds'])}. Every knob (τ, λ, t, k) was chosen on the validation "
        "split and applied once to test. A strategy's **calibrated test curve** is made of its points frozen on "
        "validation for a dense grid of target speed-ups, plus the full model at 1×; strategies are compared at "
        "equal *achieved* test layer speed-up, each curve sorted by speed-up and linearly interpolated. Cells give "
        f"the test metric ×100 and its {level} interval from a paired bootstrap ({protocol['bootstrap_samples']} "
        "replicates, each resampling the test examples — the same draw for every strategy and seed — and the seeds); "
        "\"(exact)\" marks a value every replicate gives (a constant predictor's MCC, a static exit's speed-up).",
        "",
        "Metrics: " + ", ".join(f"{t}: {summary['tasks'][t]['metric']}" for t in tasks) + ".",
        "",
        *(["Setup:", "", *(f"- {k}: {v}" for k, v in summary["setup"].items()), ""] if summary.get("setup") else []),
        "## Did each task learn?",
        "",
        "The full model against the best constant prediction on the same test examples (majority-class accuracy, "
        f"all-positive F1, MCC 0), {level} bootstrap intervals. A task whose difference's interval does not lie above 0 "
        "is **not learned**: it is shown, but left out of the tests of differences and of the findings.",
        "",
    ]
    rows = []
    for task, e in zip(tasks, entries, strict=True):
        gate = e["gate"]
        rows.append([task, e["metric"], interval(gate["full_model"]), gate["trivial_predictor"], interval(gate["trivial"]),
                     interval(gate["difference"], signed=True), "learned" if gate["learned"] else "**not learned**"])
    lines += _table(["task", "metric", "full model", "trivial predictor", "its score", "full − trivial", "verdict"], rows)
    headers = _task_headers(summary)
    lines += _guarantee_markdown(summary, entries, headers)
    speedups = [f"{s:g}" for s in protocol["matched_speedups"]]
    rows = [["full model", "1×", *(interval(e["gate"]["full_model"]) for e in entries)]]
    for s in speedups:
        for name in compared_names():
            cells = [interval(e["matched"].get(name, {}).get(s)) for e in entries]
            if any(name in e["matched"] for e in entries):
                rows.append([name, f"{s}×", *cells])
    lines += [
        "", "## Metric at matched speed-ups (main table)", "",
        "Test metric (×100) of each calibrated curve at the same achieved layer speed-up; – where a strategy's curve "
        "does not reach that speed-up in every seed.", "",
        *_table(["strategy", "speed-up", *headers], rows),
    ]
    lines += _differences_markdown(summary, tasks, entries, headers, speedups)
    lines += _area_markdown(entries, tasks, headers)
    lines += _target_markdown(summary, entries, headers)
    lines += _calibration_markdown(entries, headers)
    lines += _study_markdown(summary, entries, tasks, headers)
    if summary.get("findings"):
        lines += ["", "## Findings (generated from the numbers above)", "", *(f"- {f}" for f in summary["findings"])]
    lines += ["", "Plots of each strategy's calibrated test curve: `plots/<task>.png`.", ""]
    return "\n".join(lines)


def _differences_markdown(summary, tasks, entries, headers, speedups) -> list[str]:
    comparisons = list(dict.fromkeys(c for e in entries for c in e["differences"]))
    if not comparisons:
        return []
    protocol = summary["protocol"]
    correction = {"holm": "Holm's step-down correction", "bonferroni": "a Bonferroni correction", "none": "no correction"}
    rows = []
    for other in comparisons:
        for key in [*speedups, "area"]:
            cells = []
            for e in entries:
                value = e["differences"].get(other, {}).get(key)
                cells.append(_difference(value) if e["gate"]["learned"] or not value else f"({interval(value, signed=True)})")
            if any(c != "–" for c in cells):
                rows.append([f"{protocol['reference']} − {other}", "curve area" if key == "area" else f"{key}×", *cells])
    return [
        "", f"## {protocol['reference']} against each comparison", "",
        f"{protocol['reference']}'s test metric minus the other's (×100), paired per seed and bootstrap replicate, at each matched speed-up "
        "and over the curve area below. **Bold** with ✱: significant at family-wise level "
        f"{protocol['alpha']:g} after {correction[protocol['correction']]} over the {protocol['tests_in_family']} "
        "differences of this table in learned tasks (two-sided p-values from the bootstrap standard error). "
        "Differences in brackets belong to tasks that did not learn and are not tested.", "",
        *_table(["comparison", "at", *headers], rows),
    ]


def _speedup(e: dict | None, signed: bool = False) -> str:
    """A speed-up and its interval, two decimals; '–' where there is none."""
    if not e:
        return "–"
    f = "{:+.2f}" if signed else "{:.2f}"
    if e["low"] == e["high"] == e["value"]:
        return f"{f.format(e['value'])}× (exact)"
    return f"{f.format(e['value'])}× [{f.format(e['low'])}, {f.format(e['high'])}]"


def _percent(e: dict) -> str:
    """A rate in percent with its interval: 0.7% [0.0, 1.8]."""
    if e["low"] == e["high"] == e["value"]:
        return f"{e['value'] * 100:.1f}% (exact)"
    return f"{e['value'] * 100:.1f}% [{e['low'] * 100:.1f}, {e['high'] * 100:.1f}]"


def _guarantee_markdown(summary, entries, headers) -> list[str]:
    """The guaranteed view: test speed-up and risk of each strategy's certified point per epsilon,
    then the reference's speed-up minus each comparison's at the same guarantee."""
    names = [n for n in registry() if any(n in e.get("guaranteed", {}) for e in entries)]
    if not names:
        return []
    keys = list(dict.fromkeys(k for e in entries for points in e.get("guaranteed", {}).values() for k in points))
    protocol = summary["protocol"]
    guarantee = summary.get("guarantee", {})
    rows = []
    for key in keys:
        for name in names:
            cells = []
            for e in entries:
                point = e.get("guaranteed", {}).get(name, {}).get(key)
                mark = " †" if point and point.get("full_model_fallback") else ""
                mark += " ◇" if point and point.get("exceeds_epsilon") else ""
                cells.append("–" if not point else f"{_speedup(point['speedup'])}; risk {_percent(point['risk'])}{mark}")
            rows.append([name, key, *cells])
    lines = [
        "", "## Speed-up at a guaranteed loss (the view for shipping)", "",
        f"Each strategy's fastest setting that Learn-then-Test certifies on the calibration examples to keep the "
        f"{guarantee.get('risk', 'risk')} rate at most ε with probability ≥ {1 - guarantee.get('delta', 0.1):g} "
        f"({guarantee.get('method', '')}, fixed-sequence testing, Bonferroni over a secondary knob's values; "
        "calibration examples: " + ", ".join(f"{t} {n}" for t, n in guarantee.get("n", {}).items()) + "), applied "
        "once to test. Cells: achieved test layer "
        "speed-up and the test risk (%), each with its bootstrap interval. The risk is a rate of examples: it bounds "
        "the accuracy lost (accuracy_drop) or the predictions changed (disagreement), not F1 or MCC. † the full "
        "model: the calibration examples certify nothing faster at δ over this strategy's sequences (de3 tests one "
        "per λ). ◇ the test risk exceeds ε in at least one seed (a guarantee fails with probability ≤ δ, and the "
        "validation split comes from GLUE's train split, the test split from its dev split).", "",
        *_table(["strategy", "guarantee", *headers], rows),
    ]
    comparisons = list(dict.fromkeys(c for e in entries for c in e.get("guarantee_differences", {})))
    if comparisons:
        rows = []
        for other in comparisons:
            for key in keys:
                cells = []
                for e in entries:
                    value = e.get("guarantee_differences", {}).get(other, {}).get(key)
                    text = _speedup(value, signed=True) if value else "–"
                    if value and e["gate"]["learned"] and value.get("significant"):
                        text = f"**{text}** ✱"
                    cells.append(text if e["gate"]["learned"] or not value else f"({text})")
                rows.append([f"{protocol['reference']} − {other}", key, *cells])
        lines += [
            "", f"{protocol['reference']}'s test speed-up minus the other's at the same guarantee, paired per seed and "
            "bootstrap replicate. **Bold** with ✱: significant after the same correction over the "
            f"{protocol.get('guarantee_tests_in_family', 0)} differences of this table in learned tasks.", "",
            *_table(["comparison", "guarantee", *headers], rows),
        ]
    return lines


def _area_markdown(entries, tasks, headers) -> list[str]:
    if not any(e["area"] for e in entries):
        return []
    ranges = ", ".join(f"{t}: 1–{e['area']['range'][1]:.2f}×" for t, e in zip(tasks, entries, strict=True) if e["area"])
    rows = []
    for name in compared_names():
        cells = [interval(e["area"]["strategies"].get(name)) if e["area"] else "–" for e in entries]
        if any(c != "–" for c in cells):
            rows.append([name, *cells])
    return [
        "", "## Area under the calibrated curve", "",
        "Mean test metric (×100) along each calibrated curve (linear interpolation between its points sorted by "
        f"achieved speed-up, trapezoids on a 201-point grid), over one range per task that every curve reaches ({ranges}).",
        "", *_table(["strategy", *headers], rows),
    ]


def _target_markdown(summary, entries, headers) -> list[str]:
    targets = sorted({t for e in entries for s in e["targets"].values() for t in s if t != "any"}, key=float)
    rows = []
    for target in targets:
        for name in compared_names():
            cells = [_target_cell(e["targets"].get(name, {}).get(target), e) for e in entries]
            if any(c != "–" for c in cells):
                rows.append([name, f"{target}×", *cells])
    for name in (n for n, r in registry().items() if r.analysis_only):
        points = [e["targets"].get(name, {}).get("any") for e in entries]
        if any(points):
            rows.append([f"{name} (analysis)", "–", *(_target_cell(p, {}) for p in points)])
    tolerance = f"{summary['protocol'].get('target_tolerance', 0.05) * 100:g}%"
    return [
        "", "## At the nominal targets (secondary view)", "",
        "Each strategy's point frozen on validation for a target speed-up: test metric (×100, interval) and, in "
        f"brackets, the achieved test speed-up. ‡: achieved more than {tolerance} away from the target (either "
        "direction), so this row does not compare strategies at equal speed; †: the target is unreachable on "
        "validation (the fastest point is used). The matched-speed-up tables above are the comparison.", "",
        *_table(["strategy", "target", *headers], rows),
    ]


def _target_cell(point: dict | None, entry: dict) -> str:  # noqa: ARG001
    if not point:
        return "–"
    marks = ("‡" if point.get("off_target") else "") + ("†" if point.get("unreachable") else "")
    return f"{interval(point['metric'])} ({point['speedup']['value']:.2f}×){' ' + marks if marks else ''}"


def _calibration_markdown(entries, headers) -> list[str]:
    rows = []
    for name in compared_names():
        per_target = [e["calibration_error"].get(name, {}) for e in entries]
        if not any(per_target):
            continue
        for target in sorted({t for p in per_target for t in p}, key=float):
            rows.append([name, f"{target}×", *(interval(p.get(target), signed=True) for p in per_target)])
        rows.append([name, "mean abs.", *(f"{e['mean_calibration_error'][name] * 100:.1f}" if name in
                                          e["mean_calibration_error"] else "–" for e in entries)])
    return [
        "", "## Calibration error per task", "",
        "Achieved test speed-up of the point frozen for a target, relative to the target, in % (interval); negative: "
        "slower than promised. \"mean abs.\": the mean absolute error over the targets.", "",
        *_table(["strategy", "target", *headers], rows),
    ]


def _study_markdown(summary, entries, tasks, headers) -> list[str]:
    """The study's sections, each only where the runs recorded what it needs."""
    lines: list[str] = []
    with_lambda = [e for e in entries if e.get("per_lambda")]
    if with_lambda:
        targets = sorted({t for e in with_lambda for lam in e["per_lambda"].values() for t in lam}, key=float)
        target = "2" if "2" in targets else targets[len(targets) // 2]
        lambdas = sorted({lam for e in with_lambda for lam in e["per_lambda"]}, key=float)
        rows = []
        for lam in lambdas:
            cells = []
            for e in entries:
                point = e.get("per_lambda", {}).get(lam, {}).get(target)
                cells.append(f"{interval(point['metric'])} ({point['speedup']['value']:.2f}×)" if point else "–")
            rows.append([lam + (" (entropy)" if float(lam) == 0 else ""), *cells])
        lines += [
            "", f"## λ sensitivity at {target}×", "",
            f"{summary['protocol']['reference']}'s test metric (×100, interval) with λ fixed and only τ frozen on validation for {target}×; achieved "
            "test speed-up in brackets. λ = 0 is entropy alone (EDR = E).", "",
            *_table(["λ", *headers], rows),
        ]
    if any(e.get("overhead") for e in entries):
        rows = []
        for task, e in zip(tasks, entries, strict=True):
            o = e.get("overhead")
            if o:
                rows.append([
                    task,
                    f"{o['extra_parameters']:,} ({o['extra_bytes'] / 2**20:.2f} MiB, {_mean_t(o['extra_parameter_share'])}%)",
                    f"{o['extra_flops_per_sample'] / 1e6:.2f} M ({_mean_t(o['extra_flops_share_of_layer'])}%)",
                    _mean_t(o["percent_of_layer.entropy_signal"], 1),
                    _mean_t(o["percent_of_layer.de3_signal"], 1),
                    _mean_t(o["percent_of_layer.de3_extra"], 1),
                ])
        lines += [
            "", "## Overhead of the distance signal", "",
            "Extra storage of the prototypical networks (maps and prototypes; % of the model's parameters); extra "
            "FLOPs per sample and exit check over entropy's (% of one transformer layer's FLOPs on the same batch); "
            "measured time of one exit check (internal classifier + signal) in % of one layer's time, batch 32 of "
            "test inputs at a middle layer (de3pipe/inference/overhead.py; mean ± 95% t-interval over seeds).", "",
            *_table(["task", "extra parameters", "extra FLOPs / check", "entropy check % layer",
                     "de3 check % layer", "de3 extra % layer"], rows),
        ]
    heads = {t: e["validation_heads"] for t, e in zip(tasks, entries, strict=True) if e.get("validation_heads")}
    if heads:
        rows = [[task, kind, *(_mean_t(v) for v in values)] for task, kinds in heads.items() for kind, values in kinds.items()]
        n_exits = max(len(v) for kinds in heads.values() for v in kinds.values())
        lines += [
            "", "## Exit heads per layer (validation)", "",
            "Validation metric (×100, mean ± 95% t-interval over seeds) of each layer's internal classifier (stage 1), "
            "the control softmax head and the nearest prototype (stage 2, same frozen features). A control head better "
            "than the internal classifier is a gain any exit rule gets from a second trained head, not from distances.", "",
            *_table(["task", "head", *(f"layer {m + 1}" for m in range(n_exits))], rows),
        ]
    return lines


