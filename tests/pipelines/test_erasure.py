"""The erasure ledger applied by the pipeline: an erased feedback record leaves the raw feedback
file, records.jsonl and the splits on the next run; a crash mid-rewrite leaves the old file whole."""

import json
from pathlib import Path

import pytest

from bitzero.data import records as records_module
from bitzero.data.erasure import purge_feedback_files, without_erased_lines
from bitzero.data.records import iter_jsonl
from tests.pipelines.conftest import kedro_run

pytestmark = pytest.mark.timeout(600)


def _feedback(number: int, words: str) -> bytes:
    return json.dumps({
        "id": f"feedback-{number}", "type": "conversation", "source": "feedback",
        "conversation": [{"role": "user", "content": f"Tell me about {words}."},
                         {"role": "assistant", "content": f"Here is what I know about {words}."}],
    }).encode() + b"\n"


def _ids(path: Path) -> set[str]:
    return {r["id"] for r in iter_jsonl(path)}


def test_an_erased_record_leaves_the_raw_file_the_records_and_the_splits(project: Path) -> None:
    raw = project / "data" / "01_raw"
    export = raw / "feedback" / "service.jsonl"
    export.write_bytes(_feedback(1, "the quokka-zebra secret") + _feedback(2, "tea"))
    (raw / "feedback" / "older.jsonl").write_bytes(_feedback(3, "gardening"))
    (raw / "erasures.jsonl").write_text(
        json.dumps({"erased_at": "2026-05-01T12:00:00+00:00", "record_ids": ["feedback-1"]}) + "\n")

    done = kedro_run(project, "--pipelines", "vocabulary,augmentation", "--env", "test")
    assert done.returncode == 0, done.stdout + done.stderr

    assert export.read_bytes() == _feedback(2, "tea")
    assert (raw / "feedback" / "older.jsonl").read_bytes() == _feedback(3, "gardening")
    records = _ids(project / "data" / "03_primary" / "records.jsonl")
    assert "feedback-1" not in records and {"feedback-2", "feedback-3"} <= records
    splits = [project / "data" / "05_model_input" / f"{name}.jsonl" for name in ("train", "validation")]
    held = set().union(*(_ids(split) for split in splits))
    assert "feedback-1" not in held and {"feedback-2", "feedback-3"} <= held
    for output in [*splits, project / "data" / "03_primary" / "records.jsonl",
                   project / "data" / "02_intermediate" / "quarantine.jsonl"]:
        assert "quokka-zebra" not in output.read_text()
    report = json.loads((project / "data" / "08_reporting" / "vocabulary.json").read_text())
    assert report["erased_records_purged"] == {"older.jsonl": 0, "service.jsonl": 1}


def test_unreadable_lines_stay_for_the_quarantine() -> None:
    lines = [_feedback(1, "x"), b"{broken\n", b"\xff\xfe\n", b"[1, 2]\n", _feedback(2, "y")]
    assert without_erased_lines(lines, {"feedback-1"}) == lines[1:]


def test_a_crash_mid_rewrite_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = tmp_path / "service.jsonl"
    old = _feedback(1, "the quokka-zebra secret") + _feedback(2, "tea")
    export.write_bytes(old)

    def power_cut(fd: int) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(records_module.os, "fsync", power_cut)
    with pytest.raises(OSError, match="power cut"):
        purge_feedback_files(tmp_path, {"service.jsonl": old.splitlines(keepends=True)}, {"feedback-1"})

    assert export.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["service.jsonl"]  # no temp file left behind
    monkeypatch.undo()
    _, purged = purge_feedback_files(tmp_path, {"service.jsonl": old.splitlines(keepends=True)}, {"feedback-1"})
    assert purged == {"service.jsonl": 1} and export.read_bytes() == _feedback(2, "tea")
