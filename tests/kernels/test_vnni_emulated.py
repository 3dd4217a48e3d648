"""The kernels' AVX-VNNI and AVX-512 VNNI code paths, exact on any x86 CPU with AVX2: most machines
here (CI's included) lack VNNI, so the per-ISA tests skip those paths, yet users' Intel and AMD Zen 4
CPUs run them. ``vnni_emulated.cc`` compiles ternary_tile.inc once more per path with each vpdpbusd
emulated exactly in AVX2 and compares every path with the scalar kernels (ternary rows bit for bit)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bitzero.kernels.build import HERE
from tests.kernels.test_ternary_matmul import supported

HARNESS = Path(__file__).with_name("vnni_emulated.cc")


def test_the_vnni_paths_agree_with_the_scalar_kernels(tmp_path: Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler: the kernels are not built here either")
    if not supported("avx2"):
        pytest.skip("the emulation runs on AVX2")
    binary = tmp_path / "vnni_emulated"
    build = subprocess.run(
        [compiler, "-O2", "-std=c++17", f"-I{HERE / 'include'}", f'-DKSRC="{HERE / "ternary_matmul.cc"}"',
         f'-DKTILE="{HERE / "ternary_tile.inc"}"', str(HARNESS), "-o", str(binary)],
        capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-5000:]
    assert "all VNNI paths agree with the scalar kernels" in run.stdout
    assert "FAIL" not in run.stdout
    assert run.stdout.count(" ok ") == 66  # 15 ternary, 9 int8 and 9 int4 problems, each on both paths
