"""The train/validation split keeps variants with their originals; the mix follows its weights."""

import random
from collections import Counter

import pytest

from bitzero.data.mix import domain_weights, sample_mix, split_records


def corpus(n: int, variants: int = 2) -> list[dict]:
    records = []
    for i in range(n):
        records.append({"id": f"m{i}", "type": "math"})
        records.extend({"id": f"m{i}-v{k}", "type": "math", "parent_id": f"m{i}"} for k in range(1, variants + 1))
    return records


def test_split_is_deterministic_and_order_free() -> None:
    records = corpus(500)
    train, validation = split_records(records, 0.1, seed=3)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    train2, validation2 = split_records(shuffled, 0.1, seed=3)
    assert {r["id"] for r in validation} == {r["id"] for r in validation2}
    assert {r["id"] for r in train} == {r["id"] for r in train2}
    assert len(train) + len(validation) == len(records)
    other_train, _ = split_records(records, 0.1, seed=4)
    assert {r["id"] for r in other_train} != {r["id"] for r in train}


def test_variants_land_on_their_originals_side() -> None:
    train, validation = split_records(corpus(500), 0.2, seed=1)
    train_groups = {r.get("parent_id") or r["id"] for r in train}
    validation_groups = {r.get("parent_id") or r["id"] for r in validation}
    assert validation_groups and not train_groups & validation_groups
    assert sum(1 for r in validation if "parent_id" in r) == 2 * sum(1 for r in validation if "parent_id" not in r)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
def test_split_fraction_is_roughly_right(fraction: float) -> None:
    records = [{"id": f"r{i}", "type": "conversation"} for i in range(4000)]
    _, validation = split_records(records, fraction, seed=11)
    assert abs(len(validation) / len(records) - fraction) < 0.03


def test_split_rejects_a_bad_fraction() -> None:
    with pytest.raises(ValueError):
        split_records([], 1.0, seed=0)


def test_weights_are_normalised_and_companions_up_weighted() -> None:
    weights = domain_weights({"math": 600, "code": 200, "conversation": 100, "emotional": 100, "none": 0})
    assert set(weights) == {"math", "code", "conversation", "emotional"}
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["conversation"] / weights["code"] == pytest.approx(0.75)  # 100*1.5 vs 200
    assert weights["math"] / weights["code"] == pytest.approx(3.0)
    plain = domain_weights({"math": 600, "conversation": 100}, upweight={})
    assert plain == pytest.approx({"math": 600 / 700, "conversation": 100 / 700})
    custom = domain_weights({"math": 100, "emotional": 100}, upweight={"emotional": 3.0})
    assert custom == pytest.approx({"math": 0.25, "emotional": 0.75})


def test_weights_need_something_to_weigh() -> None:
    with pytest.raises(ValueError):
        domain_weights({"math": 0})
    with pytest.raises(ValueError):
        domain_weights({"math": 5}, upweight={"math": -1.0})


def mixed_train() -> list[dict]:
    sizes = {"math": 700, "code": 200, "conversation": 60, "emotional": 40}
    return [{"id": f"{t}{i}", "type": t} for t, n in sizes.items() for i in range(n)]


def test_realised_mix_follows_the_weights() -> None:
    records = mixed_train()
    weights = domain_weights({"math": 700, "code": 200, "conversation": 60, "emotional": 40})
    sample, realised = sample_mix(records, weights, size=20000, seed=5)
    assert len(sample) == 20000
    for domain, weight in weights.items():
        assert realised[domain] == pytest.approx(weight, abs=0.015)
        assert sum(1 for r in sample if r["type"] == domain) / len(sample) == realised[domain]
    assert realised["conversation"] > 60 / 1000  # up-weighted above its raw share
    conversation_ids = {r["id"] for r in sample if r["type"] == "conversation"}
    assert len(conversation_ids) == 60  # every record of a domain gets drawn, not just a few


def test_sample_is_deterministic_and_defaults_to_train_size() -> None:
    records = mixed_train()
    weights = {"math": 0.5, "conversation": 0.5}
    first, mix = sample_mix(records, weights, size=None, seed=9)
    second, _ = sample_mix(records, weights, size=None, seed=9)
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert len(first) == len(records)
    assert {r["type"] for r in first} == {"math", "conversation"}
    assert set(mix) == {"math", "conversation"}
    other, _ = sample_mix(records, weights, size=None, seed=10)
    assert [r["id"] for r in other] != [r["id"] for r in first]


def test_sample_refuses_weights_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="without training records"):
        sample_mix([{"id": "a", "type": "math"}], {"math": 0.5, "code": 0.5}, size=10, seed=0)
    assert sample_mix([], {}, size=0, seed=0) == ([], {})


def test_feedback_never_lands_in_validation_and_always_in_the_mix():
    feedback = [{"id": f"feedback-{i}", "type": "conversation", "source": "feedback"} for i in range(50)]
    records = corpus(200) + feedback
    train, validation = split_records(records, 0.5, seed=2)
    assert not [r for r in validation if r["id"].startswith("feedback-")]
    assert all(r in train for r in feedback)
    weights = domain_weights(Counter(r["type"] for r in train))
    sample, realised = sample_mix(train, weights, size=60, seed=1, always=feedback)
    assert len(sample) == 60 and all(r in sample for r in feedback)
    assert sum(realised.values()) == pytest.approx(1.0)
