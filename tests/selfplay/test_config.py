"""Self-play settings fail early and clearly on values that would make the run meaningless."""

import pytest

from bitzero.selfplay.config import SelfPlayConfig


@pytest.mark.parametrize("values", [
    {"kinds": ["deduction", "poetry"]}, {"kinds": []}, {"band_low": 0.8, "band_high": 0.2},
    {"samples_per_task": 1}, {"answer_tokens": {"deduction": 8}}, {"warmup_secs": 5},
])
def test_bad_settings_are_refused(values):
    with pytest.raises(ValueError):
        SelfPlayConfig.from_dict(values)


def test_settings_round_trip():
    cfg = SelfPlayConfig.from_dict({"kinds": ["math"], "answer_tokens": {"math": 8}, "heldout_levels": [1]})
    assert SelfPlayConfig.from_dict(cfg.to_dict()) == cfg and cfg.heldout_levels == (1,)
