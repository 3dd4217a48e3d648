"""The export bundle's manifest (bitzero.json): its layout, and checks that a bundle is whole.

Torch-free and onnx-free: the service reads bundles with this module. A bundle folder holds
``bitzero.json``, ``tokenizer.json``, ``<variant>/model.onnx`` per variant and the compact packed
checkpoint; the manifest records each file's SHA-256, so a truncated or swapped file is caught at
load time with a message naming it, not as a wrong answer later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bitzero.errors import ServingError
from bitzero.files import write_atomically

FORMAT = "bitzero-bundle"
VERSION = 1
MANIFEST = "bitzero.json"
TOKENIZER = "tokenizer.json"
PACKED = "model.packed.safetensors"
ONNX_FILE = "model.onnx"
# A graph input, optional (exported since 2026-12-06): how many last positions get logits (0, the default: all).
LOGITS_TO_KEEP = "logits_to_keep"


class BundleError(ServingError):
    """A missing, corrupt or mismatched bundle; the message says which file and what is wrong."""


def head_size(config: Mapping[str, Any]) -> int:
    """The attention head size of a bundle's model config: its own where it has one (Qwen3's is not
    n_embd / n_head; configs written before it was stored have none)."""
    return int(config.get("head_dim") or int(config["n_embd"]) // int(config["n_head"]))


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entry(bundle_dir: Path, relative: str) -> dict[str, Any]:
    """How the manifest records one file: its path in the bundle, size and checksum."""
    path = bundle_dir / relative
    return {"file": relative, "bytes": path.stat().st_size, "sha256": sha256(path)}


def model_id(entries: list[dict[str, Any]]) -> str:
    """``bitzero-<8 hex>``: a short hash over every file's checksum (same files, same id)."""
    joined = "".join(sorted(entry["sha256"] for entry in entries))
    return f"bitzero-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"


def read_json_of_format(path: Path, format_name: str, error: type[Exception]) -> dict[str, Any]:
    """A JSON object whose "format" is ``format_name``; anything else raises ``error`` naming the file."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(content, dict) or content.get("format") != format_name:
        raise error(f"{path} is not a {format_name} file")
    return content


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """The parsed manifest, after checking its format and that the files it names exist."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle folder {bundle_dir} does not exist")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a BitZero bundle: {MANIFEST} is missing")
    manifest = read_json_of_format(path, FORMAT, BundleError)
    if manifest.get("version") != VERSION:
        raise BundleError(f"{path} has bundle version {manifest.get('version')!r}; this runtime reads {VERSION}")
    for key in ("model_id", "config", "tokenizer", "variants"):
        if key not in manifest:
            raise BundleError(f"{path} lacks the {key!r} entry")
    return manifest


def verify_file(bundle_dir: Path, entry: dict[str, Any]) -> Path:
    """The file's path, once it exists and its checksum matches the manifest."""
    path = bundle_dir / entry["file"]
    if not path.is_file():
        raise BundleError(f"bundle file {path} is missing")
    if sha256(path) != entry["sha256"]:
        raise BundleError(f"bundle file {path} is corrupt: its SHA-256 does not match {MANIFEST}")
    return path


def verify_extra(bundle_dir: Path, name: str) -> Path:
    """A file that travels with the model (e.g. the emotion classifier), once the manifest lists
    it under "extras" and its checksum matches."""
    entry = read_manifest(bundle_dir).get("extras", {}).get(name)
    if entry is None:
        raise BundleError(f"{bundle_dir / name} is not listed in the bundle's {MANIFEST}")
    return verify_file(bundle_dir, entry)


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write bitzero.json (format and version added) atomically."""
    document = {"format": FORMAT, "version": VERSION, **manifest}
    return write_atomically(bundle_dir / MANIFEST, json.dumps(document, indent=2).encode("utf-8"))
