"""Which model the self-play stage ships: a self-played candidate only when it beats the stage's
input on the validation tasks; else the input passes through (self-play that measurably learned
nothing must not ship what its training did to everything else)."""

from __future__ import annotations

from typing import Any

import pytest

from bitzero.selfplay.experiment import choose


class Rates:
    """A stand-in for the stage's bench: each candidate's validation solve rate, by name."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates

    def evaluate(self, model: Any, tasks: list[Any]) -> dict[str, Any]:
        return {"overall": {"rate": self.rates[model]}}


@pytest.mark.parametrize(("input_rate", "rates", "shipped"), [
    (0.0, {"warmup": 0.0, "ppo": 0.0, "sft_only": 0.0}, "input"),  # nothing learned: the input passes
    (0.2, {"warmup": 0.1, "ppo": 0.2, "sft_only": 0.15}, "input"),  # a tie with the input is no gain
    (0.1, {"warmup": 0.3, "ppo": 0.3, "sft_only": 0.2}, "ppo"),  # ties among gains: the most self-played
    (0.1, {"warmup": 0.3, "ppo": 0.2, "sft_only": 0.25}, "warmup"),
])
def test_self_play_ships_only_a_measured_gain(input_rate: float, rates: dict[str, float], shipped: str) -> None:
    chosen, validated = choose(Rates(rates), {name: name for name in rates}, [], input_rate)
    assert chosen == shipped and validated == {"input": input_rate, **rates}
