"""The kustomize overlays render, validate against the Kubernetes and PyTorchJob schemas, and keep
the security, probe, resource and wiring rules the deployment guide promises."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re

import jsonschema
import kubernetes_validate
import pytest
from mlflow.server.security_utils import is_allowed_host_header
from referencing import Registry, Resource

from tests.deploy.manifests import K8S, OVERLAYS, Doc, container_env, find, pod_templates, render

K8S_VERSION = "1.37"
CUSTOM_KINDS = {"PyTorchJob"}
PINNED = re.compile(r"^[^@\s]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def _pytorchjob_validator() -> jsonschema.Draft202012Validator:
    """Our PyTorchJob schema, with the core definitions kubernetes-validate ships for pod templates."""
    schema = json.loads((K8S / "schemas" / "pytorchjob-kubeflow-v1.schema.json").read_text())
    schemas = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((schemas / "v1.37.0-local-strict" / "_definitions.json").read_text())
    registry = Registry().with_resources(
        [(definitions["$id"], Resource.from_contents(definitions)), (schema["$id"], Resource.from_contents(schema))]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_part(rendered: dict[str, list[Doc]], overlay: str) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered[overlay]}
    expected = {
        ("Deployment", "bitzero-serve"),
        ("Service", "bitzero-serve"),
        ("HorizontalPodAutoscaler", "bitzero-serve"),
        ("PodDisruptionBudget", "bitzero-serve"),
        ("ConfigMap", "bitzero-serve"),
        ("Secret", "bitzero-postgres"),
        ("StatefulSet", "bitzero-postgres"),
        ("Deployment", "bitzero-mlflow"),
        ("Service", "bitzero-mlflow"),
        ("PyTorchJob", "bitzero-train"),
        ("CronJob", "bitzero-purge"),
        ("CronJob", "bitzero-retrain"),
        ("NetworkPolicy", "bitzero-default-deny-ingress"),
    }
    assert expected <= kinds
    assert (("Deployment", "bitzero-minio") in kinds) == (overlay == "dev"), "MinIO belongs to dev only"
    namespaced = [d for d in rendered[overlay] if d["kind"] != "Namespace"]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"bitzero"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(rendered: dict[str, list[Doc]], overlay: str) -> None:
    checked = 0
    for doc in rendered[overlay]:
        if doc["kind"] in CUSTOM_KINDS:
            # The tool has no schema for custom resources (and its CLI passes them with a warning):
            # they are checked against their own schema below.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pytorchjob_matches_its_crd_schema(rendered: dict[str, list[Doc]], overlay: str) -> None:
    job = find(rendered[overlay], "PyTorchJob", "bitzero-train")
    errors = [e.message for e in _pytorchjob_validator().iter_errors(job)]
    assert not errors
    assert not job["spec"]["runPolicy"].get("suspend"), "created to run"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_apply_touches_neither_secrets_nor_a_training_run(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """`kubectl apply -k overlays/X`, run again to roll out a change, must not put placeholder
    Secrets back over real ones (gpu, prod) nor touch a running training job; the training run is
    its own kustomization, started with `kubectl create -k`."""
    applied = {(d["kind"], d["metadata"]["name"]) for d in render(f"overlays/{overlay}")}
    assert not any(kind == "PyTorchJob" for kind, _ in applied)
    assert any(kind == "Secret" for kind, _ in applied) == (overlay == "dev"), "placeholders belong to dev only"
    assert [d["kind"] for d in render(f"overlays/{overlay}/training")] == ["PyTorchJob"]


def test_pytorchjob_schema_rejects_what_the_operator_rejects(rendered: dict[str, list[Doc]]) -> None:
    validator = _pytorchjob_validator()
    job = find(rendered["dev"], "PyTorchJob", "bitzero-train")
    specs = "spec", "pytorchReplicaSpecs"

    def broken(change) -> Doc:
        bad = copy.deepcopy(job)
        change(bad[specs[0]][specs[1]])
        return bad

    cases = {
        "container not named pytorch": lambda s: s["Worker"]["template"]["spec"]["containers"][0].update(name="train"),
        "two masters": lambda s: s["Master"].update(replicas=2),
        "unknown replica type": lambda s: s.update(Chief=s.pop("Worker")),
        "misspelt pod field": lambda s: s["Master"]["template"]["spec"].update(nodeSelectr={}),
        "bad restart policy": lambda s: s["Worker"].update(restartPolicy="Sometimes"),
    }
    for name, change in cases.items():
        assert not validator.is_valid(broken(change)), name
    numeric = copy.deepcopy(job)
    numeric["spec"]["nprocPerNode"] = 2  # a string in kubeflow.org/v1
    assert not validator.is_valid(numeric)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_as_non_root(rendered: dict[str, list[Doc]], overlay: str) -> None:
    for pod in pod_templates(rendered[overlay]):
        spec = pod.spec
        assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), pod.owner
        assert not any("hostPath" in volume for volume in spec.get("volumes", [])), pod.owner
        assert spec.get("automountServiceAccountToken") is False, pod.owner
        pod_non_root = spec.get("securityContext", {}).get("runAsNonRoot") is True
        for container in pod.containers():
            context = container.get("securityContext", {})
            where = f"{pod.owner}/{container['name']}"
            assert context.get("privileged") is not True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert pod_non_root or context.get("runAsNonRoot") is True, where
            assert context.get("runAsUser", spec.get("securityContext", {}).get("runAsUser", 1)) != 0, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_have_probes_and_read_only_roots(rendered: dict[str, list[Doc]], overlay: str) -> None:
    for pod in pod_templates(rendered[overlay]):
        if pod.kind not in ("Deployment", "StatefulSet"):
            continue
        for container in pod.containers(init=False):
            where = f"{pod.owner}/{container['name']}"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{where} has no {probe}"
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, where
    serve = find(rendered[overlay], "Deployment", "bitzero-serve")["spec"]["template"]["spec"]["containers"][0]
    assert serve["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = serve["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "the model load needs time"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_pinned_and_resources_bounded(rendered: dict[str, list[Doc]], overlay: str) -> None:
    for pod in pod_templates(rendered[overlay]):
        for container in pod.containers():
            where = f"{pod.owner}/{container['name']}"
            image = container["image"]
            assert PINNED.match(image) and not image.endswith(":latest"), f"{where}: {image} is not pinned"
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where} lacks {bound}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """Every ConfigMap, Secret, claim and Service a pod names is in the same overlay."""
    docs = rendered[overlay]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for pod in pod_templates(docs):
        for volume in pod.spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
        for container in pod.containers():
            env = container_env(container, pod, docs)  # fails on a missing ConfigMap, Secret or key
            for value in env.values():
                for host in re.findall(r"://(?:[^@/]*@)?(bitzero-[a-z-]+):", value):
                    assert ("Service", host) in names, f"{pod.owner} talks to {host}, which has no Service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_the_clients(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """A pod that can reach PostgreSQL, MLflow or MinIO carries the label their NetworkPolicy admits."""
    docs = rendered[overlay]
    policies = {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"}
    clients = {"bitzero-postgres": "postgres-client", "bitzero-mlflow": "mlflow-client", "bitzero-minio": "object-store-client"}
    for pod in pod_templates(docs):
        labels = pod.metadata.get("labels", {})
        used = json.dumps(
            [[container_env(c, pod, docs), c.get("command"), c.get("args")] for c in pod.containers()]
        )
        for server, label in clients.items():
            if labels.get("app.kubernetes.io/name") == server or not re.search(rf"[/@]{server}:", used):
                continue
            assert server in policies
            assert labels.get(f"bitzero.io/{label}") == "true", f"{pod.owner} uses {server} without {label}"
        if pod.kind == "PyTorchJob":
            assert labels.get("bitzero.io/training") == "true", "DDP ranks must reach each other"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_server_accepts_its_service_host(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    service = find(docs, "Service", "bitzero-mlflow")
    port = service["spec"]["ports"][0]["port"]
    namespace = service["metadata"]["namespace"]
    pod = next(p for p in pod_templates(docs) if p.owner == "Deployment/bitzero-mlflow")
    container = pod.containers()[0]
    env = container_env(container, pod, docs)
    allowed = next(a for a in container["args"] if a.startswith("--allowed-hosts="))
    hosts = allowed.split("=", 1)[1].replace("$(MLFLOW_ALLOWED_HOSTS)", env["MLFLOW_ALLOWED_HOSTS"]).split(",")
    for name in ("bitzero-mlflow", f"bitzero-mlflow.{namespace}", f"bitzero-mlflow.{namespace}.svc.cluster.local"):
        assert is_allowed_host_header(hosts, f"{name}:{port}"), name
    assert not is_allowed_host_header(hosts, "attacker.example:5000")
    assert env["MLFLOW_TRACKING_URI"] == f"http://bitzero-mlflow:{port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_many_replicas_share_postgres(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    hpa = find(docs, "HorizontalPodAutoscaler", "bitzero-serve")["spec"]
    deployment = find(docs, "Deployment", "bitzero-serve")
    pod = next(p for p in pod_templates(docs) if p.owner == "Deployment/bitzero-serve")
    env = container_env(pod.containers(init=False)[0], pod, docs)
    assert hpa["maxReplicas"] > 1
    assert env["BITZERO_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "$(" not in env["BITZERO_DATABASE_URL"]
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    pdb = find(docs, "PodDisruptionBudget", "bitzero-serve")["spec"]
    if "minAvailable" in pdb:
        assert pdb["minAvailable"] < hpa["minReplicas"], "the budget would block every node drain"


def test_gpu_overlays_ask_for_gpus_and_dev_does_not(rendered: dict[str, list[Doc]]) -> None:
    def gpus(overlay: str) -> dict[str, int]:
        return {
            pod.owner: int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
            for pod in pod_templates(rendered[overlay])
            for c in pod.containers(init=False)
        }

    assert not any(gpus("dev").values())
    gpu, prod = gpus("gpu"), gpus("prod")
    for owner in ("PyTorchJob/bitzero-train/Master", "PyTorchJob/bitzero-train/Worker", "CronJob/bitzero-retrain"):
        assert gpu[owner] >= 1 and prod[owner] >= 1, owner
    assert gpu["Deployment/bitzero-serve"] == 1
    job = find(rendered["prod"], "PyTorchJob", "bitzero-train")["spec"]
    assert int(job["nprocPerNode"]) == prod["PyTorchJob/bitzero-train/Worker"], "one process a GPU"
    for overlay in ("gpu", "prod"):
        assert find(rendered[overlay], "ConfigMap", "bitzero-platform")["data"]["KEDRO_ENV"] == "gpu"
    images = {c["image"] for p in pod_templates(rendered["gpu"]) for c in p.containers() if "serve" in c["image"]}
    assert all(image.endswith("-cuda") for image in images)


def test_secrets_are_marked_placeholders(rendered: dict[str, list[Doc]]) -> None:
    secrets = render("secrets")
    assert all(doc in rendered["dev"] for doc in secrets), "dev applies the placeholders"
    assert {d["metadata"]["name"] for d in secrets} == {"bitzero-postgres", "bitzero-object-store"}
    for doc in secrets:
        assert doc["kind"] == "Secret" and doc["metadata"]["annotations"]["bitzero.io/placeholder"] == "true"
        assert all("change-me" in v or v in {"bitzero"} for v in doc["stringData"].values())
