"""Building and running the images with podman, on machines like CI's: no Docker engine, no container
registry, a hybrid cgroup layout. Why each setting (measured, docs/references.md §9.1):
- the base is Debian's Python 3.11 made with mmdebstrap and imported, because no registry answers;
- runc, host networking and explicit rlimits, because crun and the default rlimits are refused here;
- the host's CA bundle is mounted into builds, because pip reaches the index only through it;
- the CPU torch wheel that pip finds on this machine is the build's wheelhouse (`--build-context wheels=`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.deploy.manifests import REPO

BASE_IMAGE = "localhost/debian-python:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
TORCH = "torch==2.13.0"
SERVE_IMAGE = "localhost/bitzero-serve:test"
TRAIN_IMAGE = "localhost/bitzero-train:test"
MLFLOW_IMAGE = "localhost/bitzero-mlflow:test"
Figures = Callable[[str, dict[str, float]], None]


class PodmanError(AssertionError):
    """A podman command failed: the message carries its output."""


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n"
                          f"{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return done


def unavailable() -> str | None:
    """Why podman cannot run containers here, or None when it can (the only reason to skip)."""
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs podman, buildah, runc and mmdebstrap from Debian)"
    done = subprocess.run([*PODMAN, "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        return f"podman cannot run here: {done.stderr.strip()[-500:]}"
    return None


def ensure_base(workdir: Path) -> str:
    """The local Debian base with Python 3.11, made once a machine (~85 s) and kept in podman's store."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return BASE_IMAGE
    tarball = workdir / "base.tar"
    done = subprocess.run(["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                           "bookworm", str(tarball)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"mmdebstrap failed:\n{done.stderr[-4000:]}"
    podman("import", str(tarball), BASE_IMAGE)
    tarball.unlink()
    return BASE_IMAGE


def wheelhouse(folder: Path) -> Path:
    """A folder with the CPU torch wheel that pip finds without an index (the Makefile's probe, so
    the same file `make setup` installs); empty when the machine has none."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-index", "--no-deps", TORCH,
                    "-d", str(folder)], capture_output=True, timeout=600)
    return folder


def build(dockerfile: str, tag: str, base: str, wheels: Path, timeout: float = 1500) -> float:
    """Build ``deploy/docker/<dockerfile>`` from the repository as ``tag``; the seconds it took.
    Docker format, because the OCI format drops HEALTHCHECK; layers are cached between runs."""
    volumes = ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    replaced = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    start = time.monotonic()
    podman("build", "--format", "docker", "--layers", *LIMITS, *volumes, "--build-context", f"wheels={wheels}",
           "--build-arg", f"PYTHON_IMAGE={base}", "--file", str(REPO / "deploy" / "docker" / dockerfile),
           "--tag", tag, str(REPO), timeout=timeout)
    seconds = time.monotonic() - start
    if replaced and replaced != podman("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip():
        # The image this build replaced has no tag left: each `make test` would leave GBs behind.
        podman("image", "rm", replaced, check=False)
    return seconds


def image_size_mb(tag: str) -> float:
    return json.loads(podman("image", "inspect", tag).stdout)[0]["Size"] / 1e6


def inspect(name: str) -> dict:
    return json.loads(podman("inspect", name).stdout)[0]
