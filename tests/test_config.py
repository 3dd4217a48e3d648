"""Settings dataclasses reject unknown keys (typos) with the key's name."""

import pytest

from bitzero.model import ModelConfig
from bitzero.selfplay.config import SelfPlayConfig
from bitzero.train import TrainConfig


@pytest.mark.parametrize(
    ("cls", "values"),
    [(ModelConfig, {"vocab_size": 10, "n_layers": 2}), (TrainConfig, {"max_step": 5}), (SelfPlayConfig, {"seeed": 1})],
)
def test_an_unknown_key_is_reported_by_name(cls: type, values: dict) -> None:
    typo = next(k for k in values if k != "vocab_size")
    with pytest.raises(ValueError, match=typo):
        cls.from_dict(values)


def test_known_keys_build_the_config() -> None:
    assert ModelConfig.from_dict({"vocab_size": 10, "n_layer": 2}).n_layer == 2
