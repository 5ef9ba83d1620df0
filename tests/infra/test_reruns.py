"""Rerun checks (de3pipe/infra/reruns.py, `de3pipe rerun-check`): headline figures against a
reference folder or a git revision, within a tolerance, with one verdict line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from de3pipe.errors import De3Error
from de3pipe.infra import reruns
from de3pipe.infra.layout import EvaluationFiles, RunLayout
from tests.helpers import invoke


def write_headline(results: Path, records: dict[str, dict], task: str = "sst2", seed: int = 1) -> None:
    folder = RunLayout.of(results, task, seed).evaluation.headline
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        EvaluationFiles.headline_in(folder, name).write_text(json.dumps(record))


RECORDS = {"full": {"metric": 0.8727}, "de3@2x": {"metric": 0.8578, "speedup": 2.008, "matched": 0.8581}}


def test_identical_runs_agree_exactly(tmp_path):
    write_headline(tmp_path / "a", RECORDS)
    write_headline(tmp_path / "b", RECORDS)
    rows = reruns.compare(reruns.headline_files(tmp_path / "a"), reruns.headline_files(tmp_path / "b"))
    assert len(rows) == 4 and all(r.delta == 0.0 for r in rows)
    lines, agrees = reruns.summary_lines(rows, reruns.EXACT)
    assert agrees and lines == ["4 headline figures: 4 identical, 0 within the tolerance (metrics ±0 points, "
                                "speed-ups ±0%), 0 outside it: the rerun agrees."]


def test_tolerance_is_absolute_for_metrics_and_relative_for_speedups(tmp_path):
    moved = {"full": {"metric": 0.8727 + 0.004}, "de3@2x": {"metric": 0.8578 - 0.006, "speedup": 2.008 * 1.009,
                                                           "matched": 0.8581}}
    write_headline(tmp_path / "a", RECORDS)
    write_headline(tmp_path / "b", moved)
    rows = {(r.file.rsplit("/", 1)[1], r.field): r for r in
            reruns.compare(reruns.headline_files(tmp_path / "a"), reruns.headline_files(tmp_path / "b"))}
    tolerance = reruns.Tolerance(metric=0.005, speedup=0.01)
    assert rows["full.json", "metric"].within(tolerance)
    assert not rows["de3@2x.json", "metric"].within(tolerance)  # 0.6 points > 0.5
    assert rows["de3@2x.json", "speedup"].delta == pytest.approx(0.009)
    assert rows["de3@2x.json", "speedup"].within(tolerance)
    lines, agrees = reruns.summary_lines(list(rows.values()), tolerance)
    assert not agrees and "OUTSIDE" in next(line for line in lines if "de3@2x.json" in line and " metric " in line)
    assert lines[-1].endswith("1 outside it: the rerun does NOT agree.")


def test_a_missing_file_never_agrees(tmp_path):
    write_headline(tmp_path / "a", RECORDS)
    write_headline(tmp_path / "b", {"full": RECORDS["full"]})
    rows = reruns.compare(reruns.headline_files(tmp_path / "a"), reruns.headline_files(tmp_path / "b"))
    missing = [r for r in rows if r.current is None]
    assert len(missing) == 3 and not any(r.within(reruns.ACROSS_MACHINES) for r in missing)


def test_against_a_git_revision_through_the_cli(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    write_headline(tmp_path / "data", RECORDS)
    git("add", "-A")
    git("commit", "-qm", "run")
    monkeypatch.chdir(tmp_path)
    result = invoke("rerun-check")
    assert result.exit_code == 0 and "the rerun agrees" in result.output, result.output
    write_headline(tmp_path / "data", {"full": {"metric": 0.80}})  # a rerun that moved 7 points
    result = invoke("rerun-check")
    assert result.exit_code == 1 and "OUTSIDE" in result.output and "-7.27 pts" in result.output, result.output
    result = invoke("rerun-check", "--against", "no-such-revision")
    assert result.exit_code == 2 and result.output.startswith("error: git ls-tree failed"), result.output
    with pytest.raises(De3Error, match="no headline metrics committed under results/"):
        reruns.committed_headline("results")
