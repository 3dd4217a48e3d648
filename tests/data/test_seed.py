"""The committed seed dataset: shape, shares, correctness of every math step and code test,
and byte-for-byte reproducibility from its generator."""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from bitzero.data.records import RECORD_TYPES, ROLES, read_jsonl
from bitzero.data.seed import SHARES, SeedError, generate_seed_records, type_counts
from bitzero.data.seed.__main__ import main
from bitzero.data.seed.slots import PEOPLE
from bitzero.data.seed.verify import calc, check_code

SEED_FILE = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "seed.jsonl"
EMOTIONS = {"joy", "sadness", "anger", "fear", "surprise", "disgust", "trust", "anticipation"}
ALLOWED_EMOJI = set("😊😢😡😨😮🤢🤗🤔")
STEP = re.compile(r"<<([^=<>]+)=(\d+)>>(\d+)")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    records, quarantine = read_jsonl(SEED_FILE)
    assert quarantine == []
    return records


def by_type(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["type"] == kind]


def _exact(expression: str) -> Fraction:
    """An evaluator independent of the generator's: integers and + - * / only."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp):
            return ops[type(node.op)](walk(node.left), walk(node.right))
        assert isinstance(node, ast.Constant) and type(node.value) is int, ast.dump(node)
        return Fraction(node.value)

    return walk(ast.parse(expression, mode="eval").body)


def test_file_size_and_counts_match_the_shares(records: list[dict]) -> None:
    assert SEED_FILE.stat().st_size < 3_000_000
    assert len(records) == 4000
    counts = Counter(r["type"] for r in records)
    assert set(counts) == set(RECORD_TYPES)
    for kind, share in SHARES.items():
        assert abs(counts[kind] / len(records) - share) < 0.02, (kind, counts[kind])


def test_type_counts_sum_to_the_total() -> None:
    for total in (4, 7, 41, 999, 4000):
        assert sum(type_counts(total).values()) == total
    with pytest.raises(SeedError):
        type_counts(2)


def test_records_follow_the_contract(records: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    for r in records:
        assert re.fullmatch(rf"seed-{r['type']}-\d{{5}}", r["id"]), r["id"]
        assert r["source"] == "seed"
        roles = [t["role"] for t in r["conversation"]]
        assert set(roles) <= set(ROLES)
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * (len(roles) // 2), r["id"]
        assert all(t["content"].strip() for t in r["conversation"]), r["id"]


def test_text_is_ascii_plus_the_listed_emoji(records: list[dict]) -> None:
    odd = Counter(ch for r in records for t in r["conversation"] for ch in t["content"]
                  if not ch.isascii() and ch not in ALLOWED_EMOJI)
    assert not odd, odd
    used = {ch for r in by_type(records, "emotional") for t in r["conversation"] for ch in t["content"]}
    assert used >= ALLOWED_EMOJI


def test_no_two_records_share_their_text(records: list[dict]) -> None:
    texts = ["\n".join(t["content"] for t in r["conversation"]) for r in records]
    assert len(set(texts)) == len(texts)


def test_every_math_step_is_correct_and_ends_in_the_answer(records: list[dict]) -> None:
    maths = by_type(records, "math")
    assert Counter(r["difficulty"] for r in maths) == {d: 200 for d in range(1, 6)}
    for r in maths:
        solution = r["conversation"][-1]["content"]
        steps = STEP.findall(solution)
        assert steps, r["id"]
        for expression, annotated, shown in steps:
            assert _exact(expression) == int(annotated) == int(shown), (r["id"], expression)
        assert solution.splitlines()[-1] == f"#### {r['answer']}"
        assert steps[-1][1] == r["answer"], r["id"]
    fewest_steps = {1: 1, 2: 2, 3: 1, 4: 3, 5: 1}
    for r in maths:
        assert len(STEP.findall(r["conversation"][-1]["content"])) >= fewest_steps[r["difficulty"]], r["id"]


def test_every_code_solution_passes_its_tests(records: list[dict]) -> None:
    codes = by_type(records, "code")
    assert Counter(r["difficulty"] for r in codes) == {d: 200 for d in range(1, 6)}
    for r in codes:
        assert 2 <= len(r["tests"]) <= 4 and all(t.startswith("assert ") for t in r["tests"])
        namespace: dict = {}
        exec(r["conversation"][-1]["content"], namespace)  # trusted data written by this project
        for test in r["tests"]:
            exec(test, namespace)


def test_emotional_records_cover_all_eight_emotions(records: list[dict]) -> None:
    counts = Counter(r["emotion"] for r in by_type(records, "emotional"))
    assert set(counts) == EMOTIONS
    assert min(counts.values()) >= 90


def test_companion_only_uses_names_the_user_gave(records: list[dict]) -> None:
    """The assistant addresses people by name only when the name is already in the context."""
    names = {name for name, _, _ in PEOPLE}
    addressed = 0
    for r in by_type(records, "conversation"):
        context = ""
        for turn in r["conversation"]:
            if turn["role"] == "assistant":
                used = names & set(re.findall(r"[A-Z][a-z]+", turn["content"]))
                assert all(name in context for name in used), (r["id"], used)
                addressed += bool(used)
            context += turn["content"] + "\n"
    assert addressed > 300


def test_regenerating_with_the_same_seed_is_byte_identical(tmp_path: Path) -> None:
    out = tmp_path / "seed.jsonl"
    assert main(["--out", str(out), "--seed", "0"]) == 0
    assert out.read_bytes() == SEED_FILE.read_bytes()


def test_another_seed_gives_other_records() -> None:
    first, second = generate_seed_records(40, seed=1), generate_seed_records(40, seed=2)
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert first != second


def test_the_generator_checks_reject_wrong_work() -> None:
    assert calc("3 * 4") == ("3 * 4 = <<3*4=12>>12", 12)
    with pytest.raises(SeedError):
        calc("7 / 2")
    with pytest.raises(SeedError):
        calc("2 - 5")
    check_code("def f(x):\n    return x + 1\n", ["assert f(1) == 2"])
    with pytest.raises(SeedError):
        check_code("def f(x):\n    return x + 1\n", ["assert f(1) == 3"])
