"""Batches from (ids, loss_mask) examples, and the easy-to-hard curriculum."""

import pytest

from bitzero.model import IGNORE_INDEX
from bitzero.train import CurriculumSampler, Example, as_examples, collate
from bitzero.train.curriculum import shard

X = IGNORE_INDEX


def test_padding_shifts_targets_and_masks_non_answer_tokens():
    examples = as_examples([([1, 2, 3, 4], [False, False, True, True]), ([5, 6], [False, True])])
    batch = collate(examples, block_size=8, pad_id=0)
    assert batch.idx.tolist() == [[1, 2, 3], [5, 0, 0]]
    assert batch.targets.tolist() == [[X, 3, 4], [6, X, X]]
    assert batch.n_targets == 3 and batch.denominator == 3.0
    assert batch.n_tokens == 4  # real inputs, padding not counted


def test_long_examples_keep_their_end():
    (example,) = as_examples([(list(range(10)), [True] * 10)])
    batch = collate([example], block_size=4)
    assert batch.idx.tolist() == [[5, 6, 7, 8]]
    assert batch.targets.tolist() == [[6, 7, 8, 9]]


def test_packing_fills_rows_of_block_size():
    examples = as_examples([([1, 2, 3], [True] * 3), ([4, 5, 6, 7], [False, True, True, True])])
    batch = collate(examples, block_size=3, pack=True)
    # stream 1 2 3 4 5 6 7 in spans of 4: [1 2 3 4] [5 6 7]
    assert batch.idx.tolist() == [[1, 2, 3], [5, 6, 0]]
    assert batch.targets.tolist() == [[2, 3, X], [6, 7, X]]


def test_bad_examples_are_rejected():
    with pytest.raises(ValueError, match="differ"):
        Example([1, 2, 3], [True, True])
    with pytest.raises(ValueError, match="two tokens"):
        Example([1], [True])


def _graded(n: int) -> list[Example]:
    # difficulty descending with the index, so the easiest are the last ones
    return [Example([1] * (2 + i % 3), [True] * (2 + i % 3), difficulty=float(n - i)) for i in range(n)]


def test_curriculum_pool_grows_from_the_easiest():
    examples = _graded(100)
    sampler = CurriculumSampler(examples, total_steps=100, start=0.2, growth=0.5, seed=0)
    assert [sampler.pool_size(s) for s in (0, 25, 50, 99)] == [20, 60, 100, 100]
    early = {i for _ in range(20) for i in sampler.sample(0, 10)}
    assert early <= set(range(80, 100))  # only the 20 easiest (highest index = lowest difficulty)
    late = {i for _ in range(50) for i in sampler.sample(99, 10)}
    assert len(late) > 80


def test_curriculum_breaks_difficulty_ties_by_length():
    examples = [Example([1] * n, [True] * n) for n in (5, 2, 9, 3)]
    sampler = CurriculumSampler(examples, total_steps=10, start=0.5)
    assert sampler.order == [1, 3, 0, 2]


def test_sampling_resumes_identically_from_its_state():
    sampler = CurriculumSampler(_graded(50), total_steps=10, seed=3)
    sampler.sample(0, 8)
    state = sampler.state_dict()
    expected = [sampler.sample(s, 8) for s in range(1, 4)]
    other = CurriculumSampler(_graded(50), total_steps=10, seed=99)
    other.load_state_dict(state)
    assert [other.sample(s, 8) for s in range(1, 4)] == expected


def test_shards_cover_the_global_batch_once():
    batch = list(range(10))
    parts = [shard(batch, r, 2) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == batch and parts[0] != parts[1]
