"""The git_commit tag: what `dvc repro` writes between stages does not make the commit dirty."""

from pathlib import Path

import pytest

from pipelines.hooks import _git_commit
from tests.pipelines.conftest import git_repository


def test_only_code_and_settings_make_the_commit_dirty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("dvc.lock", "data/08_reporting/distillation.json", "conf/base/parameters_distillation.yml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    head = git_repository(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'")
    (tmp_path / "data/08_reporting/distillation.json").write_text('{"held_out_nll": 1}')
    assert _git_commit() == head
    (tmp_path / "conf/base/parameters_distillation.yml").write_text("distillation: {}")
    assert _git_commit() == f"{head}-dirty"
