"""The findings (de3pipe/report/findings.py): statements about the reference and the comparisons the
ReportConfig names (report.reference, report.primary), for learned tasks only."""

import copy

import pytest

from de3pipe.report.comparison import summarise
from de3pipe.report.findings import findings
from de3pipe.report.tables import interval
from tests.report.test_tables import evaluated_run, report_config

# Not the defaults (de3 against entropy and control_entropy): the statements must follow the config.
CFG = report_config(reference="entropy", comparisons=["maxprob", "de3", "patience"],
                    primary={"against": ["maxprob", "patience"], "at": [2.0, 3.0, "area"]})


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    return [evaluated_run(1), evaluated_run(2)]


@pytest.fixture(scope="module")
def summary(runs) -> dict:
    summary, _ = summarise(runs, CFG)
    return summary


def said(e: dict) -> str:
    if e.get("identical"):
        return "0 (identical exits)"
    verdict = "significant" if e["significant"] else "not significant"
    return f"{interval(e, signed=True)} ({verdict}, adjusted p = {e['p_adjusted']:.2g} in the {e['family']} family)"


def statement(summary: dict, other: str) -> str:
    entry = summary["tasks"]["sst2"]
    diff = entry["differences"][other]
    parts = [f"at matched {k}× {said(diff[k])}" for k in ("2", "3") if k in diff]
    low, high = entry["area"]["range"]
    if "area" in diff:
        parts.append(f"over the curve area ({low:g}–{high:g}×) {said(diff['area'])}")
    return f"sst2: {CFG.reference} − {other}: " + "; ".join(parts) + "."


def test_statements_name_the_configured_reference_and_comparisons(summary):
    lines = findings(summary, CFG)
    compared = [line for line in lines if " − " in line and ": calibration" not in line]
    assert [line.split(":")[1].strip() for line in compared] == ["entropy − maxprob", "entropy − patience"]
    assert not any("de3" in line for line in compared)  # compared in the tables, not stated in words
    assert "de3" in summary["tasks"]["sst2"]["differences"]


def test_a_statement_quotes_the_2x_and_3x_matched_differences_and_the_area(summary):
    diffs = summary["tasks"]["sst2"]["differences"]
    assert set(diffs["maxprob"]) == {"1.5", "2", "3", "area"}
    assert set(diffs["patience"]) == {"1.5", "2"}  # patience's curve stops short of 3x: no area over 1-3x either
    lines = findings(summary, CFG)
    assert statement(summary, "maxprob") in lines
    assert statement(summary, "patience") in lines
    assert not any("at matched 1.5×" in line for line in lines)


def test_identical_exits_are_said_as_such(summary):
    marked = copy.deepcopy(summary)
    marked["tasks"]["sst2"]["differences"]["maxprob"]["2"]["identical"] = True
    line = next(f for f in findings(marked, CFG) if f.startswith("sst2: entropy − maxprob:"))
    assert "at matched 2× 0 (identical exits);" in line


def test_the_significant_differences(summary):
    quiet = copy.deepcopy(summary)
    for diff in quiet["tasks"]["sst2"]["differences"].values():
        for e in diff.values():
            e["significant"] = False
    for family in ("primary", "exploratory"):
        assert f"sst2: {family} differences significant after correction within their family: none." in findings(quiet, CFG)
    diffs = quiet["tasks"]["sst2"]["differences"]
    diffs["de3"]["2"]["significant"] = True  # listed even where no statement is made about de3
    diffs["patience"]["2"]["significant"] = True
    assert diffs["de3"]["2"]["family"] == "exploratory" and diffs["patience"]["2"]["family"] == "primary"
    lines = findings(quiet, CFG)
    assert ("sst2: primary differences significant after correction within their family: "
            f"patience at 2× ({interval(diffs['patience']['2'], signed=True)}).") in lines
    assert ("sst2: exploratory differences significant after correction within their family: "
            f"de3 at 2× ({interval(diffs['de3']['2'], signed=True)}).") in lines


def test_the_calibration_error_of_the_reference_then_each_comparison(summary):
    errors = summary["tasks"]["sst2"]["mean_calibration_error"]
    expected = ("sst2: calibration, mean |achieved test speed-up / target − 1|: "
                f"entropy {errors['entropy'] * 100:.1f}%, maxprob {errors['maxprob'] * 100:.1f}%, "
                f"patience {errors['patience'] * 100:.1f}%.")
    assert expected in findings(summary, CFG)


def test_comparisons_the_run_lacks_are_skipped(summary):
    cfg = CFG.model_copy(update={"primary": CFG.primary.model_copy(update={"against": ["control_entropy", "maxprob"]})})
    lines = findings(summary, cfg)
    assert not any("control_entropy" in line for line in lines)
    assert sum(line.startswith("sst2: entropy − ") for line in lines) == 1


def test_a_task_that_did_not_learn_is_left_out(summary):
    unlearned = copy.deepcopy(summary)
    gate = unlearned["tasks"]["sst2"]["gate"]
    gate["learned"] = False
    assert findings(unlearned, CFG) == [
        f"Not learned, so left out of every finding below: sst2 (accuracy {interval(gate['full_model'])} against the "
        f"trivial {interval(gate['trivial'])})."
    ]


def test_the_overhead_averaged_over_tasks(summary):
    two = copy.deepcopy(summary)
    two["tasks"]["sst2"]["overhead"] = {"extra_parameter_share": (0.02, None), "percent_of_layer.de3_extra": (3.0, 0.4)}
    two["tasks"]["rte"] = copy.deepcopy(two["tasks"]["sst2"])
    two["tasks"]["rte"]["overhead"] = {"extra_parameter_share": (0.04, 0.01), "percent_of_layer.de3_extra": (5.0, None)}
    lines = findings(two, CFG)
    assert lines[-1] == ("Overhead: the prototypical networks add 3.0% parameters; the distance signal adds 4.0% "
                         "of one layer's time per exit check over entropy's.")
    assert any(line.startswith("rte: entropy − maxprob:") for line in lines)
    assert not any(line.startswith("Overhead") for line in findings(summary, CFG))
