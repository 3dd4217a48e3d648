"""Task buffers: de-duplicated, held-out keys refused, sampling by level and kind mixture."""

from random import Random

from bitzero.selfplay.buffer import TaskBuffer
from bitzero.selfplay.learn import sample_mixture
from bitzero.selfplay.tasks import Task


def task(n: int, level: int, kind: str = "math") -> Task:
    return Task(kind, "", (f"{n} + 0",), (str(n),), difficulty=level)


def test_buffer_refuses_duplicates_unlabelled_and_reserved_tasks():
    reserved = task(99, 1)
    buffer = TaskBuffer([task(1, 1), task(1, 1)], reserved={reserved.key})
    assert len(buffer) == 1
    assert not buffer.add(reserved) and reserved in buffer
    assert not buffer.add(Task("math", "", ("2 + 2",)))  # no executor output yet
    assert TaskBuffer([Task.from_record(t) for t in buffer.records()]).counts() == buffer.counts()


def test_sampling_by_level_and_up_to_a_level():
    buffer = TaskBuffer([task(n, 1 + n % 3) for n in range(30)])
    r = Random(0)
    assert {t.difficulty for t in buffer.sample("math", 5, r, level=2)} == {2}
    assert {t.difficulty for t in buffer.sample("math", 15, r, level=2, up_to=True)} == {1, 2}
    assert len(buffer.sample("math", 50, r, level=3)) == 30  # too few at that level: all levels


def test_mixture_follows_the_weights_and_is_reproducible():
    buffer = TaskBuffer([task(n, 1, kind) for n in range(40) for kind in ("math", "deduction")])
    draw = sample_mixture(buffer, {"math": 0.75, "deduction": 0.25}, 40, Random(3))
    assert 20 <= sum(t.kind == "math" for t in draw) <= 40
    assert [t.key for t in draw] == [t.key for t in sample_mixture(buffer, {"math": 0.75, "deduction": 0.25}, 40, Random(3))]
