"""The report's Markdown tables (de3pipe/report/tables.py), from a summary of real evaluations of
synthetic signals: each cell is the summary's number in the stated format, "–" where a curve does
not reach a speed-up, and the sections follow what the summary holds."""

import copy

import pytest

from de3pipe.config import CalibrationConfig, ReportConfig
from de3pipe.method.calibration import calibrate
from de3pipe.method.evaluation import evaluate
from de3pipe.report.comparison import RunPoints, summarise
from de3pipe.report.tables import _cell, _difference, interval, markdown
from tests.method.test_calibration import random_signals

STRATEGIES = ["de3", "entropy", "maxprob", "patience", "static", "oracle"]
MATCHED = [1.5, 2.0, 3.0]


def evaluated_run(seed: int) -> dict:
    """One run as ``collect`` returns it: thresholds frozen on one synthetic validation split of
    6 layers, evaluated once on another (the test split)."""
    cfg = CalibrationConfig(strategies=STRATEGIES, targets=[1.5, 2.0, 3.0], n_thresholds=20, curve_step=0.1)
    thresholds, _ = calibrate(random_signals(seed=10 + seed), cfg, 1e-8)
    results, _, curves, arrays = evaluate(random_signals(seed=20 + seed), thresholds)
    results["seed"] = seed
    return results | {"_curves": curves, "_points": RunPoints.from_arrays(arrays, seed), "_training": None,
                      "_prototype_space": None}


def report_config(**changes) -> ReportConfig:
    return ReportConfig(**{"bootstrap_samples": 100, "matched_speedups": MATCHED} | changes)


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return [evaluated_run(1), evaluated_run(2)]


@pytest.fixture(scope="module")
def summary(runs) -> dict:
    summary, _ = summarise(runs, report_config())
    return summary


def table_rows(page: str, heading: str) -> list[list[str]]:
    """The cells of the table below ``## heading`` (header and separator left out)."""
    section = page.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


# ---- interval ----

def test_interval_formatting():
    assert interval(None) == "–" and interval({}) == "–"
    e = {"value": 0.5, "low": 0.4, "high": 0.625}
    assert interval(e) == "50.0 [40.0, 62.5]"
    assert interval(e, signed=True) == "+50.0 [+40.0, +62.5]"
    assert interval(e, scale=1) == "0.5 [0.4, 0.6]"
    assert interval({"value": -0.012, "low": -0.031, "high": 0.004}, signed=True) == "-1.2 [-3.1, +0.4]"
    assert interval({"value": 1.0, "low": 1.0, "high": 1.0, "exact": True}) == "100.0 (exact)"
    assert interval({"value": 0.0, "low": 0.0, "high": 0.0, "exact": True}, signed=True) == "+0.0 (exact)"
    # equal quantiles are not "exact": only a value every replicate gives is
    assert interval({"value": 0.5, "low": 0.5, "high": 0.5}) == "50.0 [50.0, 50.0]"
    assert interval({"value": 1.5, "low": 1.25, "high": 1.75}, scale=1, digits=2, unit="×") == "1.50× [1.25, 1.75]"
    assert _cell({"value": 0.5, "low": 0.4, "high": 0.6, "interpolated": True}) == "50.0 [40.0, 60.0] ~"
    assert _cell({"value": 0.5, "low": 0.4, "high": 0.6, "interpolated": True, "wide_gap": True, "gap": 0.234}) == (
        "50.0 [40.0, 60.0] ~ (gap 0.23×)")
    parts = {"value": 0.012, "low": -0.003, "high": 0.027, "seed_part": 0.01, "test_part": 0.008, "p_adjusted": 0.0004,
             "significant": True}
    assert _difference(parts, parts=True) == "**+1.2 [-0.3, +2.7] (seed ±1.0, test ±0.8; p_adj 4.0e-04)** ✱"


# ---- the main tables ----

def test_the_gate_row(summary):
    page = markdown(summary)
    gate = summary["tasks"]["sst2"]["gate"]
    assert gate["learned"]
    assert table_rows(page, "Did each task learn?") == [[
        "sst2", "accuracy", interval(gate["full_model"]), "majority class", interval(gate["trivial"]),
        interval(gate["difference"], signed=True), "learned"]]


def test_matched_table_cells_and_dashes_where_a_curve_stops(summary):
    entry = summary["tasks"]["sst2"]
    assert entry["matched"]["patience"]["3"] is None  # patience cannot get past ~2.2x on 6 layers
    rows = table_rows(markdown(summary), "Metric at matched speed-ups (main table)")
    assert rows[0] == ["full model", "1×", interval(entry["gate"]["full_model"])]
    cells = {(name, at): cell for name, at, cell in rows[1:]}
    assert set(cells) == {(n, f"{s:g}×") for n in entry["matched"] for s in MATCHED}
    for name, speedups in entry["matched"].items():
        for key, estimate in speedups.items():
            assert cells[(name, f"{key}×")] == ("–" if estimate is None else _cell(estimate))
            assert estimate is None or ("~" in cells[(name, f"{key}×")]) == bool(estimate.get("interpolated"))
    assert cells[("patience", "3×")] == "–"
    assert "oracle" not in {name for name, _ in cells}  # analysis only: never compared
    # the rows run speed-up by speed-up, strategies in registration order within each
    assert [at for _, at, _ in rows[1:]] == sorted([at for _, at, _ in rows[1:]], key=lambda s: float(s[:-1]))


PRIMARY = "Primary family: de3 against each comparison"
EXPLORATORY = "Exploratory differences: de3 against each comparison"


def test_differences_are_split_into_the_declared_family_and_the_rest(runs, summary):
    page = markdown(summary)
    differences = summary["tasks"]["sst2"]["differences"]
    primary = table_rows(page, PRIMARY)
    assert {(r[0], r[1]) for r in primary} == {("de3 − entropy", "2×"), ("de3 − entropy", "3×"),
                                               ("de3 − entropy", "curve area")}  # control_entropy: not in these runs
    for comparison, at, cell in primary:
        key = "area" if at == "curve area" else at[:-1]
        assert cell == _difference(differences["entropy"][key], parts=True)
        assert "(seed ±" in cell or differences["entropy"][key].get("identical")
    exploratory = {(r[0], r[1]) for r in table_rows(page, EXPLORATORY)}
    assert ("de3 − entropy", "1.5×") in exploratory and ("de3 − entropy", "2×") not in exploratory
    assert {r[0] for r in table_rows(page, EXPLORATORY)} == {f"de3 − {other}" for other in differences}
    assert page.index("## Verdict (the primary family)") < page.index("## Protocol")
    swapped, _ = summarise(runs, report_config(reference="entropy", comparisons=["de3", "patience"],
                                               primary={"against": ["de3"], "at": [2.0]}))
    page = markdown(swapped)
    assert "## Primary family: entropy against each comparison" in page and "de3 against" not in page
    compared = {r[0] for r in table_rows(page, "Exploratory differences: entropy against each comparison")}
    assert compared == {"entropy − de3", "entropy − patience"}


def test_the_verdict_names_the_significant_primary_comparisons(summary):
    marked = copy.deepcopy(summary)
    entropy = marked["tasks"]["sst2"]["differences"]["entropy"]
    for e in entropy.values():
        e["significant"] = False
    verdict = markdown(marked).split("## Verdict (the primary family)\n", 1)[1].split("\n## ", 1)[0]
    assert "**0 of 3 are significant.**" in verdict and "The largest difference" in verdict
    entropy["3"] |= {"significant": True, "value": -0.02}
    verdict = markdown(marked).split("## Verdict (the primary family)\n", 1)[1].split("\n## ", 1)[0]
    assert "**1 of 3 are significant.**" in verdict
    assert f"- sst2: de3 is worse than entropy at matched 3×: {_difference(entropy['3'], parts=True)}." in verdict


def test_difference_cells_mark_significance_and_identical_exits(summary):
    marked = copy.deepcopy(summary)
    entropy = marked["tasks"]["sst2"]["differences"]["entropy"]
    entropy["1.5"] |= {"significant": True, "identical": False}
    entropy["2"] |= {"significant": False, "identical": True}
    entropy["3"] |= {"significant": False, "identical": False}
    page = markdown(marked)
    rows = {(r[0], r[1]): r[2] for r in table_rows(page, EXPLORATORY)}
    assert rows[("de3 − entropy", "1.5×")] == f"**{interval(entropy['1.5'], signed=True)}** ✱"
    rows = {(r[0], r[1]): r[2] for r in table_rows(page, PRIMARY)}
    assert rows[("de3 − entropy", "2×")] == "0 (identical exits)"
    assert rows[("de3 − entropy", "3×")] == _difference(entropy["3"], parts=True) and "✱" not in rows[("de3 − entropy", "3×")]
    assert rows[("de3 − entropy", "curve area")] != "–"


def test_a_task_that_did_not_learn_is_marked_and_its_differences_bracketed(summary):
    unlearned = copy.deepcopy(summary)
    unlearned["tasks"]["sst2"]["gate"]["learned"] = False
    page = markdown(unlearned)
    assert "| strategy | speed-up | sst2 (not learned) |" in page
    assert table_rows(page, "Did each task learn?")[0][-1] == "**not learned**"
    cells = [r[2] for r in table_rows(page, EXPLORATORY)]
    assert cells and all(c.startswith("(") and c.endswith(")") and "✱" not in c for c in cells)
    assert "No task learned, so no comparison was tested." in page


def test_area_table(summary):
    entry = summary["tasks"]["sst2"]
    page = markdown(summary)
    assert "over the fixed range 1–3× (set in config" in page
    rows = {r[0]: r[1] for r in table_rows(page, "Area under the calibrated curve")}
    for name, e in entry["area"]["strategies"].items():
        reach = entry["area"]["reach"][name]
        assert rows[name] == (interval(e) if e else f"– (reaches {reach:.2f}×)")
    assert rows["patience"].startswith("– (reaches ")  # patience stops near 2.2x on 6 layers


def test_target_view_cells_marks_and_the_analysis_row(summary):
    entry = summary["tasks"]["sst2"]
    rows = {(r[0], r[1]): r[2] for r in table_rows(markdown(summary), "At the nominal targets (secondary view)")}
    for name, targets in entry["targets"].items():
        for key, point in targets.items():
            if key == "any":
                continue
            cell = rows[(name, f"{key}×")]
            assert cell.startswith(f"{interval(point['metric'])} ({point['speedup']['value']:.2f}×)")
            assert ("‡" in cell) == point["off_target"] and ("†" in cell) == point["unreachable"]
    assert entry["targets"]["patience"]["3"]["unreachable"]  # patience cannot reach 3x on validation
    assert rows[("patience", "3×")].endswith("†")
    oracle = entry["targets"]["oracle"]["any"]
    assert rows[("oracle (analysis)", "–")] == f"{interval(oracle['metric'])} ({oracle['speedup']['value']:.2f}×)"


def test_calibration_error_table(summary):
    entry = summary["tasks"]["sst2"]
    rows = {(r[0], r[1]): r[2] for r in table_rows(markdown(summary), "Calibration error per task")}
    for target in ("1.5", "2", "3"):
        assert rows[("static", f"{target}×")] == "+0.0 (exact)"  # a static exit hits its target on any sample
        assert rows[("de3", f"{target}×")] == interval(entry["calibration_error"]["de3"][target], signed=True)
    assert rows[("static", "mean abs.")] == "0.0"
    assert rows[("entropy", "mean abs.")] == f"{entry['mean_calibration_error']['entropy'] * 100:.1f}"


def test_sections_follow_what_the_summary_holds(summary):
    page = markdown(summary)
    for absent in ("## λ on its own axis", "## At matched wall-clock", "## Overhead", "## Exit heads", "## Findings",
                   "Setup:"):
        assert absent not in page
    assert page.startswith("# de3pipe report\n") and "Seeds: sst2 1, 2." in page and "(100 replicates" in page
    full = copy.deepcopy(summary)
    full["setup"] = {"model": "tiny"}
    full["findings"] = ["first finding.", "second finding."]
    full["tasks"]["sst2"]["overhead"] = {
        "extra_parameters": 3360, "extra_bytes": 3 * 2**20, "extra_parameter_share": (0.0033, None),
        "extra_flops_share_of_layer": (0.012, 0.002), "extra_flops_per_sample": 2_250_000.0,
        "percent_of_layer.classifier": (31.0, None), "percent_of_layer.entropy_signal": (39.4, None),
        "percent_of_layer.de3_signal": (63.0, 1.5), "percent_of_layer.de3_extra": (23.6, None),
    }
    page = markdown(full)
    assert "Setup:\n\n- model: tiny\n" in page
    assert "## Findings (generated from the numbers above)\n\n- first finding.\n- second finding.\n" in page
    assert table_rows(page, "Overhead of the distance signal") == [
        ["sst2", "3,360 (3.00 MiB, 0.3%)", "2.25 M (1.2 ± 0.2%)", "39.4", "63.0 ± 1.5", "23.6"]]


def test_the_lambda_axis_and_wallclock_sections_when_the_runs_have_them():
    from tests.report.test_comparison import _study_runs

    runs = []
    for seed, points in enumerate(_study_runs(seeds=(1, 2)), start=1):
        runs.append({"task": "sst2", "seed": seed, "full_model": {"accuracy": 0.9}, "_points": points,
                     "strategies": {name: {t: {"knobs": {"tau": 0.1, "lam": 2.0}, "calibration_status": "ok"}
                                           for t in ("1.5", "2")} for name in ("de3", "entropy", "static")}})
    summary, _ = summarise(runs, report_config(matched_speedups=[1.5, 2.0], comparisons=["entropy", "static"],
                                               primary={"against": ["entropy"], "at": [2.0]}))
    page = markdown(summary)
    entry = summary["tasks"]["sst2"]
    heading = "λ on its own axis: does the distance signal add anything to entropy at equal speed?"
    rows = table_rows(page, heading)
    assert {(r[0], r[1]) for r in rows if r[0].startswith("λ ") and " − " in r[0]} == {
        (f"λ {lam} − λ 0", f"{s}×") for lam in ("0.5", "2") for s in ("1.5", "2") if s in entry["lambda_differences"][lam]}
    assert [r for r in rows if r[0] == "sst2"] == [["sst2", "1.5×", "2, 2"], ["sst2", "2×", "2, 2"]]  # per seed
    wall = table_rows(page, "At matched wall-clock speed-ups")
    assert ["de3 − entropy", "2×", _difference(entry["wallclock_differences"]["entropy"]["2"])] in wall
    assert page.index("## Area under") < page.index("## At matched wall-clock") < page.index("## λ on its own axis")
