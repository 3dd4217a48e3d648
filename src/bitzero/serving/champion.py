"""Which bundle the service serves by default: ``champion.json``, as the export stage's promotion gate
(bitzero.export.promotion) writes it beside the bundle folders. Torch-free: the service reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitzero.errors import ServingError
from bitzero.serving.bundle import read_json_of_format

FORMAT = "bitzero-champion"
VERSION = 1
CHAMPION_FILE = "champion.json"


class ChampionError(ServingError, ValueError):
    """No, or a broken, champion.json."""


def read_champion(folder: str | Path) -> dict[str, Any]:
    """champion.json in ``folder``, checked to name a champion bundle."""
    path = Path(folder) / CHAMPION_FILE
    if not path.is_file():
        raise ChampionError(f"{path} is missing: run the export stage, or name a bundle folder directly")
    content = read_json_of_format(path, FORMAT, ChampionError)
    if not isinstance(content.get("bundle"), str):
        raise ChampionError(f"{path} names no champion bundle")
    return content


def champion_bundle(folder: str | Path) -> Path:
    """The champion bundle's folder, as champion.json in ``folder`` names it."""
    return Path(folder) / read_champion(folder)["bundle"]
