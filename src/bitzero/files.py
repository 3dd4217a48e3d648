"""Whole-folder and whole-file writes (checkpoints, bundles, the embedder, model files): all of the
new one or none of it.

The folder or file is assembled beside its destination and swapped in by rename, so a crash leaves
either the previous one or the new one, never a mix of both.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``folder``, on any error it is removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private; the folder it becomes is not
        retired = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        if folder.exists():
            folder.rename(retired)
        staging.rename(folder)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise



def write_atomically(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temporary file beside it and a rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    staging.write_bytes(data)
    staging.replace(target)
    return target
