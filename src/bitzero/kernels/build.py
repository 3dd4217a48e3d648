"""Build the kernel library beside the sources with the machine's C++ compiler (``$CXX``, else g++).

Never fails: a missing compiler or a failed build prints one line saying so, and the export and the
service fall back to onnxruntime's MatMulNBits. ``python -m bitzero.kernels.build``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bitzero.kernels import LIBRARY_NAME

HERE = Path(__file__).parent
SOURCES = ("ternary_matmul.cc",)
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra")


def build(output: Path = HERE / LIBRARY_NAME) -> Path | None:
    """Compile the library (into a staging file, renamed when done); its path, or None with the reason printed."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    fallback = "the ternary student and the 4-bit teacher are served by onnxruntime's MatMulNBits instead"
    if not compiler:
        print(f"bitzero kernels: no C++ compiler (g++ or $CXX) on this machine; {fallback}")
        return None
    staging = output.with_name(f".{output.name}.tmp")
    command = [compiler, *FLAGS, f"-I{HERE / 'include'}", *(str(HERE / s) for s in SOURCES), "-o", str(staging)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"bitzero kernels: {compiler} could not run ({exc}); {fallback}")
        return None
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip()[:200])
        print(f"bitzero kernels: the build failed ({first}); {fallback}")
        staging.unlink(missing_ok=True)
        return None
    staging.replace(output)
    print(f"bitzero kernels: built {output}")
    return output


if __name__ == "__main__":
    build()
    sys.exit(0)
