"""The report's Markdown: every table, formatted from the summary's numbers (no statistics here)."""

from __future__ import annotations

from de3pipe.method.strategies import compared_names, registry

def interval(e: dict | None, signed: bool = False, scale: float = 100.0, digits: int = 1, unit: str = "") -> str:
    """value [low, high] (×scale, ``digits`` decimals, ``unit`` after the value); '–' where there
    is no value; "(exact)" where every replicate gives the value (no test-sampling or seed spread)."""
    if not e:
        return "–"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if e.get("exact"):  # e.g. a constant classifier's MCC, a static exit's speed-up
        return f"{f.format(e['value'] * scale)}{unit} (exact)"
    return f"{f.format(e['value'] * scale)}{unit} [{f.format(e['low'] * scale)}, {f.format(e['high'] * scale)}]"


def _speedup(e: dict | None, signed: bool = False) -> str:
    """A speed-up and its interval, two decimals: 1.52× [1.48, 1.57]."""
    return interval(e, signed, scale=1.0, digits=2, unit="×")


def _percent(e: dict | None) -> str:
    """A rate in percent with its interval: 0.7% [0.0, 1.8]."""
    return interval(e, unit="%")


def _cell(e: dict | None) -> str:
    """A matched cell: its interval, "~" where it lies between two calibrated points, and the gap
    between them where that exceeds ``report.max_gap``."""
    text = interval(e)
    if e and e.get("interpolated"):
        text += " ~"
        if e.get("wide_gap"):
            text += f" (gap {e['gap']:.2f}×)"
    return text


def _difference(e: dict | None, parts: bool = False, signed_scale: float = 100.0) -> str:
    """A paired difference: its interval, bold with ✱ where significant in its family, and with
    ``parts`` the seed and test half-widths and the adjusted p-value."""
    if not e:
        return "–"
    if e.get("identical"):
        return "0 (identical exits)"
    digits = 1 if signed_scale == 100.0 else 2
    text = interval(e, signed=True, scale=signed_scale, digits=digits, unit="" if signed_scale == 100.0 else "×")
    if parts:
        text += (f" (seed ±{e.get('seed_part', 0) * signed_scale:.{digits}f}, test ±{e.get('test_part', 0) * signed_scale:.{digits}f}"
                 + (f"; p_adj {_p(e['p_adjusted'])}" if e.get("p_adjusted") is not None else "") + ")")
    return f"**{text}** ✱" if e.get("significant") else text


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


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
    seeds = summary.get("seeds_per_task") or {t: summary["seeds"] for t in tasks}
    seed_counts = sorted({len(v) for v in seeds.values()})
    lines = [
        "# de3pipe report",
        "",
        *_verdict_markdown(summary, tasks, entries),
        "## Protocol",
        "",
        "Seeds: " + "; ".join(f"{t} {', '.join(str(x) for x in v)}" for t, v in seeds.items()) + ". "
        "Every knob (τ, λ, t, k) was chosen on the validation split and applied once to test. A strategy's "
        "**calibrated test curve** is made of its points frozen on validation for a dense grid of target speed-ups, "
        "plus the full model at 1×; strategies are compared at equal *achieved* test layer speed-up. Between two "
        "calibrated points a curve is interpolated linearly in the mean exit layer (1/speed-up): a random mix of the "
        "two points, which one could deploy; such cells are marked ~, and their gap is given where the two points "
        f"lie more than {protocol.get('max_gap', 0.1):g}× apart. Cells give the test metric ×100 and its {level} "
        "interval, a mean over seeds whose uncertainty has two parts: the **test part**, a bootstrap over the test "
        f"examples ({protocol['bootstrap_samples']} replicates, the same draw for every strategy and seed), and the "
        "**seed part**, the seeds' standard error times Student-t draws on S − 1 degrees of freedom "
        f"(S = {', '.join(str(c) for c in seed_counts)}"
        + ("; with one seed there is no seed part: the intervals cover test sampling only" if seed_counts == [1] else "")
        + "). Differences are paired; their p-values are empirical, "
        "(1 + #)/(B + 1), and corrected within their family. \"(exact)\" marks a value every replicate gives (a "
        "constant predictor's MCC, a static exit's speed-up).",
        "",
        "Metrics: " + ", ".join(f"{t}: {summary['tasks'][t]['metric']}" for t in tasks) + ".",
        "",
        *(["Setup:", "", *(f"- {k}: {v}" for k, v in summary["setup"].items()), ""] if summary.get("setup") else []),
        "## Did each task learn?",
        "",
        "The full model against the best constant prediction on the same test examples (majority-class accuracy, "
        f"all-positive F1, the best single class's macro-F1, MCC 0), {level} intervals. A task whose difference's interval does not lie above 0 "
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
    lines += [
        "", "## Metric at matched speed-ups (main table)", "",
        "Test metric (×100) of each calibrated curve at the same achieved layer speed-up; – where a strategy's curve "
        "does not reach that speed-up in every seed; ~ interpolated between two calibrated points.", "",
        *_table(["strategy", "speed-up", *headers], _matched_rows(entries, speedups, "matched")),
    ]
    lines += _differences_markdown(summary, tasks, entries, headers, speedups)
    lines += _area_markdown(summary, entries, headers)
    lines += _wallclock_markdown(summary, entries, headers, speedups)
    lines += _lambda_markdown(summary, tasks, entries, headers, speedups)
    lines += _target_markdown(summary, entries, headers)
    lines += _calibration_markdown(entries, headers)
    lines += _per_class_markdown(tasks, entries)
    lines += _study_markdown(summary, entries, tasks, headers)
    if summary.get("findings"):
        lines += ["", "## Findings (generated from the numbers above)", "", *(f"- {f}" for f in summary["findings"])]
    lines += ["", "Plots of each strategy's calibrated test curve: `plots/<task>.png`.", ""]
    return "\n".join(lines)


def _matched_rows(entries, speedups, view: str) -> list[list[str]]:
    rows = [["full model", "1×", *(interval(e["gate"]["full_model"]) for e in entries)]]
    for s in speedups:
        for name in compared_names():
            if any(name in e.get(view, {}) for e in entries):
                rows.append([name, f"{s}×", *(_cell(e.get(view, {}).get(name, {}).get(s)) for e in entries)])
    return rows


CORRECTION = {"holm": "Holm's step-down correction", "bonferroni": "a Bonferroni correction", "none": "no correction"}


def _family_words(protocol: dict, family: str) -> str:
    size = protocol.get("families", {}).get(family, 0)
    return (f"**Bold** with ✱: significant at family-wise level {protocol['alpha']:g} after "
            f"{CORRECTION[protocol['correction']]} over the {size} differences of the {family} family in learned tasks")


def _verdict_markdown(summary, tasks, entries) -> list[str]:
    """The answer to the primary question first, in words a reader can quote."""
    protocol = summary["protocol"]
    primary = protocol.get("primary")
    if not primary:
        return []
    reference = primary["reference"]
    learned = [t for t, e in zip(tasks, entries, strict=True) if e["gate"]["learned"]]
    lines = ["## Verdict (the primary family)", ""]
    at_words = ", ".join("the curve area" if a == "area" else f"matched {a}×" for a in primary["at"])
    if not learned:
        return lines + ["No task learned, so no comparison was tested.", ""]
    members = [(t, other, key, e["differences"][other][key]) for t, e in zip(tasks, entries, strict=True) if t in learned
               for other in primary["against"] for key in primary["at"] if key in e["differences"].get(other, {})]
    significant = [m for m in members if m[3].get("significant")]
    lines.append(
        f"Declared before the runs: {reference} − {', '.join(primary['against'])} at {at_words}, on the learned tasks "
        f"({', '.join(learned)}); {len(members)} tests, {CORRECTION[protocol['correction']]} at family-wise level "
        f"{protocol['alpha']:g}. **{len(significant)} of {len(members)} are significant.**"
    )
    for task, other, key, e in significant:
        direction = "better" if e["value"] > 0 else "worse"
        where = "over the curve area" if key == "area" else f"at matched {key}×"
        lines.append(f"- {task}: {reference} is {direction} than {other} {where}: {_difference(e, parts=True)}.")
    if not significant:
        largest = max(members, key=lambda m: abs(m[3]["value"]), default=None)
        if largest:
            task, other, key, e = largest
            where = "the curve area" if key == "area" else f"matched {key}×"
            lines.append(f"- The largest difference, {task} {reference} − {other} at {where}, is "
                         f"{_difference(e, parts=True)}.")
    return lines + ["", "Cells: metric difference ×100, its interval, the half-widths of its seed and test parts, "
                    "and the Holm-adjusted p-value.", ""]


def _difference_rows(entries, section: str, others: list[str], keys: list[str], label, parts: bool = False,
                     family: str | None = None) -> list[list[str]]:
    """A row per (other, key) of ``entry[section][other][key]`` that some task has (of ``family`` only,
    where given): a learned task's difference in full, a task that did not learn its bracketed
    interval (shown, not tested)."""
    rows = []
    for other in others:
        for key in keys:
            cells = []
            for e in entries:
                value = e.get(section, {}).get(other, {}).get(key)
                if value and family and value.get("family", "exploratory") != family:
                    value = None
                text = _difference(value, parts=parts)
                cells.append(text if e["gate"]["learned"] or not value else f"({interval(value, signed=True)})")
            if any(c != "–" for c in cells):
                rows.append([label(other), "curve area" if key == "area" else f"{key}×", *cells])
    return rows


def _differences_markdown(summary, tasks, entries, headers, speedups) -> list[str]:
    comparisons = list(dict.fromkeys(c for e in entries for c in e["differences"]))
    if not comparisons:
        return []
    protocol = summary["protocol"]
    lines = []
    for family, title in (("primary", "Primary family"), ("exploratory", "Exploratory differences")):
        rows = _difference_rows(entries, "differences", comparisons, [*speedups, "area"],
                                lambda other: f"{protocol['reference']} − {other}", family == "primary", family)
        if rows:
            lines += [
                "", f"## {title}: {protocol['reference']} against each comparison", "",
                f"{protocol['reference']}'s test metric minus the other's (×100), paired per seed and replicate, at "
                f"matched speed-ups and over the curve area. {_family_words(protocol, family)}. Differences in "
                "brackets belong to tasks that did not learn and are not tested.", "",
                *_table(["comparison", "at", *headers], rows),
            ]
    return lines


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
            f"replicate. {_family_words(protocol, 'guarantee')}.", "",
            *_table(["comparison", "guarantee", *headers], rows),
        ]
    return lines


def _area_markdown(summary, entries, headers) -> list[str]:
    if not any(e["area"] for e in entries):
        return []
    low, high = summary["protocol"].get("area_range", [1.0, 3.0])
    rows = []
    for name in compared_names():
        cells = []
        for e in entries:
            area = e["area"] or {}
            if name not in area.get("strategies", {}):
                cells.append("–")
            elif area["strategies"][name] is None:
                cells.append(f"– (reaches {area['reach'][name]:.2f}×)")
            else:
                cells.append(interval(area["strategies"][name]))
        if any(c != "–" for c in cells):
            rows.append([name, *cells])
    return [
        "", "## Area under the calibrated curve", "",
        f"Mean test metric (×100) along each calibrated curve over the fixed range {low:g}–{high:g}× (set in config "
        "before any run; interpolated in 1/speed-up, trapezoids on a 201-point grid). A curve that does not reach "
        f"{high:g}× in every seed has no area: – with the speed-up it reaches.",
        "", *_table(["strategy", *headers], rows),
    ]


def _wallclock_markdown(summary, entries, headers, speedups) -> list[str]:
    if not any(e.get("wallclock") for e in entries):
        return []
    protocol = summary["protocol"]
    lines = [
        "", "## At matched wall-clock speed-ups", "",
        "The main table again, with each point's speed-up charging every layer a sample passes with the layer's time "
        "plus its strategy's exit check (internal classifier and signal: entropy, or de3's prototype map and "
        "distances), as `evaluation.overhead` times them per seed on test inputs (median of repeated runs; their "
        "spread over seeds enters the seed part). de3's distance signal pays its cost here; layer counts alone give "
        "it for free. Embedding and tokenisation are left out (the same for every strategy).", "",
        *_table(["strategy", "wall-clock speed-up", *headers], _matched_rows(entries, speedups, "wallclock")),
    ]
    comparisons = list(dict.fromkeys(c for e in entries for c in e.get("wallclock_differences", {})))
    rows = _difference_rows(entries, "wallclock_differences", comparisons, speedups,
                            lambda other: f"{protocol['reference']} − {other}")
    if rows:
        lines += ["", f"Paired differences at matched wall-clock speed-ups. {_family_words(protocol, 'wallclock')}.", "",
                  *_table(["comparison", "at", *headers], rows)]
    return lines


def _lambda_markdown(summary, tasks, entries, headers, speedups) -> list[str]:
    """λ on its own axis: each λ's calibrated curve at the matched speed-ups, each λ > 0 minus λ = 0
    there, and the λ each seed's frozen point chose per target."""
    with_lambda = [e for e in entries if e.get("per_lambda")]
    if not with_lambda:
        return []
    protocol = summary["protocol"]
    reference = protocol["reference"]
    lambdas = sorted({lam for e in with_lambda for lam in e["per_lambda"]}, key=float)
    rows = []
    for s in speedups:
        for lam in lambdas:
            cells = [_cell(e.get("per_lambda", {}).get(lam, {}).get(s)) for e in entries]
            if any(c != "–" for c in cells):
                rows.append([lam + (" (entropy)" if float(lam) == 0 else ""), f"{s}×", *cells])
    lines = [
        "", "## λ on its own axis: does the distance signal add anything to entropy at equal speed?", "",
        f"{reference} with λ fixed: a calibrated curve per λ value (only τ frozen on validation, for every target of "
        "the dense grid), at the matched speed-ups. λ = 0 is entropy alone (EDR = E).", "",
        *_table(["λ", "speed-up", *headers], rows),
    ]
    rows = _difference_rows(entries, "lambda_differences", [x for x in lambdas if float(x) != 0], speedups,
                            lambda lam: f"λ {lam} − λ 0", parts=True)
    if rows:
        lines += ["", f"Each λ > 0 minus λ = 0 at matched speed-ups (×100), paired per seed and replicate, with the "
                  f"half-widths of the seed and test parts. {_family_words(protocol, 'lambda')}.", "",
                  *_table(["difference", "at", *headers], rows)]
    chosen = [(t, e["lambda_chosen"]) for t, e in zip(tasks, entries, strict=True) if e.get("lambda_chosen")]
    if chosen:
        rows = [[task, f"{target}×", ", ".join(f"{v:g}" if v is not None else "–" for v in values)]
                for task, by_target in chosen for target, values in by_target.items()]
        lines += ["", f"The λ {reference}'s point frozen for each named target chose on validation, per seed (in seed "
                  "order):", "", *_table(["task", "target", "λ per seed"], rows)]
    return lines


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


def _per_class_markdown(tasks, entries) -> list[str]:
    """Tasks of three or more classes: each class's recall, full model and each strategy at one target."""
    lines: list[str] = []
    for task, e in zip(tasks, entries, strict=True):
        classes = e.get("per_class")
        if not classes:
            continue
        names = list(classes["recall"])
        rows = [[label, f"{classes['support'][k]:.0f}",
                 *("–" if classes["recall"][n][k] is None else f"{classes['recall'][n][k] * 100:.1f}" for n in names)]
                for k, label in enumerate(classes["classes"])]
        target = f"{classes['target']:g}×"
        lines += ["", f"### {task}: recall per class", "",
                  f"Test recall (×100, mean over seeds) of each class under the full model and each strategy's point "
                  f"calibrated for {target}; n: test examples of the class.", "",
                  *_table(["class", "n", *(n if n == "full model" else f"{n} {target}" for n in names)], rows)]
    return ["", "## Per class", *lines] if lines else []


def _study_markdown(summary, entries, tasks, headers) -> list[str]:
    """The study's sections, each only where the runs recorded what it needs."""
    lines: list[str] = []
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


