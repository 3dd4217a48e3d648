"""Every command a BitZero container runs is a real invocation of this project's tools: parsed by
the same parsers (torchrun, kedro, bitzero, mlflow, dvc) that run it, with the pipelines it names
registered. A renamed flag, stage or sub-command fails here, not in a cluster."""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
from collections.abc import Callable

import click
import pytest

from tests.deploy.manifests import OVERLAYS, REPO, Doc, container_env, invocations, pod_templates, script_lines

OUR_IMAGES = re.compile(r"^ghcr\.io/bitzero-ai/bitzero-(serve|train|mlflow):")
DOCKER = REPO / "deploy" / "docker"


@functools.cache
def _registered_pipelines() -> set[str]:
    from pipelines.pipeline_registry import register_pipelines

    return set(register_pipelines())


def _check_kedro(args: list[str]) -> str:
    from kedro.framework.cli.project import run

    assert args[0] == "run", f"kedro {args}: only `kedro run` belongs in a container"
    params = run.make_context("run", list(args[1:])).params
    names = list(params["pipelines"] or ())
    assert names, "a container must name the stage it runs"
    missing = set(names) - _registered_pipelines()
    assert not missing, f"kedro run names unregistered pipelines {sorted(missing)}"
    return f"kedro run {' '.join(names)}"


def _check_torchrun(args: list[str]) -> str:
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args(args)
    assert parsed.module and parsed.training_script == "kedro", "torchrun runs `-m kedro run ...`"
    assert re.fullmatch(r"\d+(:\d+)?", parsed.nnodes), parsed.nnodes
    assert parsed.nproc_per_node in {"auto", "cpu", "gpu"} or parsed.nproc_per_node.isdigit()
    return "torchrun " + _check_kedro(parsed.training_script_args)


def _check_bitzero(args: list[str]) -> str:
    from bitzero.cli import build_parser

    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exit_:
        raise AssertionError(f"`bitzero {shlex.join(args)}` does not parse") from exit_
    assert callable(parsed.func)
    return f"bitzero {args[0]}"


def _check_mlflow(args: list[str]) -> str:
    from mlflow.cli import server

    assert args[0] == "server", args
    params = server.make_context("server", list(args[1:])).params
    assert params["allowed_hosts"], "the tracking server needs --allowed-hosts on Kubernetes"
    assert params["backend_store_uri"].startswith("postgresql+psycopg://")
    assert params["serve_artifacts"] and params["artifacts_destination"].startswith("s3://")
    assert params["host"] == "0.0.0.0", "reachable through its Service"
    return "mlflow server"


def _fetch_bundle_module():
    spec = importlib.util.spec_from_file_location("fetch_bundle", DOCKER / "fetch_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_fetch_bundle(args: list[str]) -> str:
    parsed = _fetch_bundle_module().build_parser().parse_args(args)
    assert parsed.model_uri.startswith("models:/"), parsed.model_uri
    return "fetch-bundle"


def _check_dvc(args: list[str]) -> str:
    from dvc.cli import DvcParserError
    from dvc.cli.parser import get_main_parser

    try:
        get_main_parser().parse_args(args)
    except (SystemExit, DvcParserError) as exit_:
        raise AssertionError(f"`dvc {shlex.join(args)}` does not parse") from exit_
    return f"dvc {args[0]}"


# The scripts of the training image that containers run, with the tool calls each must make.
SCRIPTS = {"retrain.sh": {"raw_data.sh", "dvc repro", "dvc push", "bitzero feedback"}, "raw_data.sh": set()}


def _check_script(args: list[str]) -> str:
    assert len(args) == 1 and args[0].startswith("deploy/docker/"), args
    name = args[0].removeprefix("deploy/docker/")
    assert name in SCRIPTS, f"unknown script {args[0]}"
    tools = {"dvc": _check_dvc, "bitzero": _check_bitzero, "sh": _check_script}
    seen = [tools[words[0]](words[1:]) for words in script_lines(DOCKER / name) if words[0] in tools]
    assert SCRIPTS[name] <= set(seen), f"{name} lacks {SCRIPTS[name] - set(seen)}"
    return name


CHECKS: dict[str, Callable[[list[str]], str]] = {
    "kedro": _check_kedro,
    "torchrun": _check_torchrun,
    "bitzero": _check_bitzero,
    "mlflow": _check_mlflow,
}


def check(argv: list[str]) -> str:
    """Parse one command line with the tool that will run it; returns a short name of what it is."""
    program, args = argv[0], argv[1:]
    if program in CHECKS:
        return CHECKS[program](args)
    if program == "python" and args[:1] == ["/usr/local/bin/bitzero-fetch-bundle"]:
        return _check_fetch_bundle(args[1:])
    if program == "python" and args[:1] == ["-c"]:
        compile(args[1], "<container>", "exec")
        return "python -c"
    if program == "sh":
        return _check_script(args)
    raise AssertionError(f"unknown command in a BitZero image: {shlex.join(argv)}")


def _container_commands(docs: list[Doc]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for pod in pod_templates(docs):
        for container in pod.containers():
            if not OUR_IMAGES.match(container["image"]):
                continue
            env = container_env(container, pod, docs)
            where = f"{pod.owner}/{container['name']}"
            if "KEDRO_ENV" in env:
                assert (REPO / "conf" / env["KEDRO_ENV"]).is_dir(), f"{where}: no conf/{env['KEDRO_ENV']}"
            found[where] = [check(argv) for argv in invocations(container, env)]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_commands_are_real_invocations(rendered: dict[str, list[Doc]], overlay: str) -> None:
    commands = _container_commands(rendered[overlay])
    assert commands["Deployment/bitzero-serve/serve"] == ["bitzero serve"]
    assert commands["Deployment/bitzero-serve/fetch-bundle"] == ["fetch-bundle"]
    assert commands["Deployment/bitzero-mlflow/mlflow"] == ["mlflow server"]
    assert commands["CronJob/bitzero-purge/purge"] == ["bitzero purge"]
    assert commands["CronJob/bitzero-retrain/retrain"] == ["retrain.sh"]
    assert commands["PyTorchJob/bitzero-train/Master/data-stages"] == [
        "raw_data.sh", "kedro run teacher", "kedro run vocabulary", "kedro run augmentation", "kedro run emotion"]
    distributed = ["torchrun kedro run distillation", "torchrun kedro run selfplay"]
    assert commands["PyTorchJob/bitzero-train/Worker/pytorch"] == distributed
    assert commands["PyTorchJob/bitzero-train/Master/pytorch"] == [*distributed, "kedro run personalize",
                                                                   "kedro run export"]


@pytest.mark.parametrize(
    "bad",
    [["bitzero", "serve", "--model", "x"], ["bitzero", "purgee"], ["kedro", "run", "--pipelinez", "x"],
     ["kedro", "run", "--pipelines", "no_such_stage"], ["torchrun", "--nodes=2", "-m", "kedro", "run"],
     ["mlflow", "server", "--allowed-host=x"], ["python", "/usr/local/bin/bitzero-fetch-bundle", "--dest", "x"],
     ["sh", "deploy/docker/other.sh"]],
    ids=lambda argv: " ".join(argv[:3]),
)
def test_the_checks_reject_what_would_fail_in_the_pod(bad: list[str]) -> None:
    with pytest.raises((AssertionError, SystemExit, click.UsageError)):
        check(bad)
    with pytest.raises(AssertionError):
        _check_dvc(["reproduce"])
    with pytest.raises(AssertionError):
        check(["sh", "deploy/docker/raw_data.sh", "extra"])


def test_dockerfile_commands_are_real_invocations() -> None:
    serve = (DOCKER / "serve.Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["bitzero"\]\nCMD \["serve"\]$', serve, re.M)
    assert check(["bitzero", "serve"]) == "bitzero serve"
    export = re.search(r"&& (bitzero embedder export [^\n\\]+)", serve)
    assert export and check(shlex.split(export.group(1))) == "bitzero embedder"
    train = (DOCKER / "train.Dockerfile").read_text()
    assert 'CMD ["kedro", "registry", "list"]' in train and "&& kedro registry list" in train
