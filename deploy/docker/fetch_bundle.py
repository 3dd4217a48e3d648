"""Init container of the service: fetch a registered BitZero bundle from MLflow into a folder.

Why: the service needs the export bundle and nothing from training, and the model registry is
where a trained model is promoted. The folder is replaced whole or not at all, and a download
that is not a bundle (no bitzero.json, tokenizer.json and ONNX model) stops the pod with a clear
message instead of starting a service that cannot load.

    bitzero-fetch-bundle --model-uri models:/bitzero/3 --dest /models/bundle
MLFLOW_TRACKING_URI names the tracking server.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

MARKER = "bitzero.json"
REQUIRED = ("bitzero.json", "tokenizer.json")


class BundleFetchError(Exception):
    """The model version could not be fetched, or what it holds is not a BitZero bundle."""


def find_bundle(root: Path) -> Path:
    """The one folder under ``root`` that holds a bundle (at the top, or nested as a model artifact)."""
    found = sorted(path.parent for path in root.rglob(MARKER))
    if not found:
        raise BundleFetchError(f"no {MARKER} in the downloaded model: it is not a BitZero bundle")
    if len(found) > 1:
        raise BundleFetchError(f"several bundles in the downloaded model: {[str(p) for p in found]}")
    bundle = found[0]
    missing = [name for name in REQUIRED if not (bundle / name).is_file()]
    if not any(bundle.rglob("*.onnx")):
        missing.append("an ONNX model")
    if missing:
        raise BundleFetchError(f"incomplete bundle at {bundle}: missing {', '.join(missing)}")
    return bundle


def install(bundle: Path, dest: Path) -> None:
    """Copy ``bundle`` to ``dest``, replacing what was there in one rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest.parent))
    shutil.copytree(bundle, staging, dirs_exist_ok=True)
    if dest.exists():
        retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=dest.parent))
        dest.rename(retired / dest.name)
        staging.rename(dest)
        shutil.rmtree(retired)
    else:
        staging.rename(dest)


def fetch(model_uri: str, dest: Path) -> Path:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="bitzero-fetch-") as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        except MlflowException as error:
            raise BundleFetchError(f"cannot download {model_uri}: {error.message}") from error
        install(find_bundle(Path(local)), dest)
    return dest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitzero-fetch-bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", required=True, help="models:/NAME/VERSION or models:/NAME@ALIAS")
    parser.add_argument("--dest", required=True, type=Path, help="the bundle folder the service loads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fetch(args.model_uri, args.dest)
    except BundleFetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"fetched {args.model_uri} into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
