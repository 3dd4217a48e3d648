"""The kernel build never breaks set-up: without a compiler it says why in one line and builds nothing."""

from pathlib import Path

import pytest

from bitzero.kernels.build import build


def test_a_missing_compiler_is_one_clear_line_and_no_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    assert build(tmp_path / "lib.so") is None
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "MatMulNBits" in out
    assert not list(tmp_path.iterdir())
