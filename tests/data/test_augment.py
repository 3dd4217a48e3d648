"""Math variants: every produced answer is recomputed, and checked here independently of the module."""

import json
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

from bitzero.data.arithmetic import evaluate
from bitzero.data.augment import augment_records, math_variants

GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "gsm8k" / "train.jsonl"
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?!\w)")
STEP = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def math_record(rid: str, question: str, solution: str, answer: str) -> dict:
    return {
        "id": rid,
        "type": "math",
        "source": "test",
        "difficulty": 2,
        "conversation": [{"role": "user", "content": question}, {"role": "assistant", "content": solution}],
        "answer": answer,
    }


def numbers(text: str) -> list[Fraction]:
    return [Fraction(n.replace(",", "")) for n in NUMBER.findall(text)]


def assert_sound_variant(original: dict, variant: dict, max_change: float = 0.2) -> None:
    """Recheck a variant from its text alone: steps evaluate, answers agree, numbers moved legally."""
    question, solution = (turn["content"] for turn in variant["conversation"])
    steps = STEP.findall(solution)
    assert steps
    results = []
    for expression, result in steps:
        value = Fraction(result.replace(",", ""))
        assert evaluate(expression.replace(",", "")) == value, (expression, result)
        results.append(value)
    answer = Fraction(variant["answer"].replace(",", ""))
    assert answer in results
    if Fraction(original["answer"].replace(",", "")).denominator == 1:
        assert answer.denominator == 1 and "." not in variant["answer"]
    final = re.search(r"####\s*([\d.,]+)", solution)
    if final:
        assert Fraction(final.group(1).replace(",", "")) == answer
    old_numbers = NUMBER.findall(original["conversation"][0]["content"])
    new_numbers = NUMBER.findall(question)
    assert len(old_numbers) == len(new_numbers)
    mapping: dict[Fraction, Fraction] = {}
    for old_text, new_text in zip(old_numbers, new_numbers, strict=True):
        old, new = Fraction(old_text.replace(",", "")), Fraction(new_text.replace(",", ""))
        assert mapping.setdefault(old, new) == new, "the same number must change the same way"
        assert abs(new - old) <= max_change * old
        assert ("." in old_text) == ("." in new_text)
        if "." in old_text:
            assert len(old_text.split(".")[1]) == len(new_text.split(".")[1])
    assert any(old != new for old, new in mapping.items())
    assert variant["parent_id"] == original["id"]
    assert variant["id"].startswith(f"{original['id']}-v")
    assert variant["source"] == original["source"]
    assert variant["difficulty"] == original["difficulty"]


def variants_of(record: dict, n: int = 5, seed: int = 0, max_change: float = 0.2) -> tuple[list, list]:
    return math_variants(record, n, random.Random(seed), max_change)


NATALIA = math_record(
    "natalia",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    "72",
)

# (record, the answer recomputed from the variant's question numbers by an independent formula)
FORMULAS = [
    (NATALIA, lambda q: q[0] + q[0] / 2),
    (
        math_record(
            "marbles",
            "Tom has 120 marbles. He gives 35 to Ann and then buys 18 more. How many does he have?",
            "He has 120 - 35 = <<120-35=85>>85 left.\nThen 85 + 18 = <<85+18=103>>103.\n#### 103",
            "103",
        ),
        lambda q: q[0] - q[1] + q[2],
    ),
    (
        math_record(
            "shop",
            "A pen costs $1.50 and a notebook costs $3.25. Jo buys 12 pens and 8 notebooks. "
            "How much does she pay?",
            "Pens: 12 x $1.50 = $<<12*1.50=18>>18.\nNotebooks: 8 x $3.25 = $<<8*3.25=26>>26.\n"
            "Total: 18 + 26 = $<<18+26=44>>44.\n#### 44",
            "44",
        ),
        lambda q: q[2] * q[0] + q[3] * q[1],
    ),
    (
        math_record(
            "apples",
            "A shop has 240 apples and sells 25% of them. How many apples are left?",
            "It sells 240 * 25/100 = <<240*25/100=60>>60 apples.\nSo 240 - 60 = <<240-60=180>>180 are left.\n"
            "#### 180",
            "180",
        ),
        lambda q: q[0] - q[0] * q[1] / 100,
    ),
    (
        math_record(
            "weng",
            "Weng earns $18 an hour for babysitting. Yesterday, she did 40 minutes of babysitting. "
            "How much did she earn?",
            "Weng earns 18/60 = $<<18/60=0.3>>0.3 per minute.\n"
            "Working 40 minutes, she earned 0.3 x 40 = $<<0.3*40=12>>12.\n#### 12",
            "12",
        ),
        lambda q: q[0] / 60 * q[1],
    ),
    (  # 24 is both a question number and a step result: the chain must not confuse them
        math_record(
            "ambiguous",
            "Sam has 24 red beads and 12 blue beads. He doubles the blue beads. How many beads now?",
            "Blue: 12*2=<<12*2=24>>24.\nTotal: 24+24=<<24+24=48>>48.\n#### 48",
            "48",
        ),
        lambda q: q[0] + 2 * q[1],
    ),
]


@pytest.mark.parametrize(("record", "formula"), FORMULAS, ids=[r["id"] for r, _ in FORMULAS])
def test_variant_answers_match_an_independent_formula(record: dict, formula) -> None:
    produced = 0
    for seed in range(8):
        variants, reasons = variants_of(record, n=3, seed=seed)
        assert len(variants) + len(reasons) == 3
        for variant in variants:
            assert_sound_variant(record, variant)
            assert Fraction(variant["answer"]) == formula(numbers(variant["conversation"][0]["content"]))
        produced += len(variants)
    if record["id"] != "ambiguous":
        assert produced > 0


def test_natalia_rewrites_every_visible_number() -> None:
    variants, _ = variants_of(NATALIA, n=3)
    assert variants
    for variant in variants:
        n = numbers(variant["conversation"][0]["content"])[0]
        assert n != 48 and n.denominator == 1
        expected = (
            f"Natalia sold {n}/2 = <<{n}/2={n // 2}>>{n // 2} clips in May.\n"
            f"Natalia sold {n}+{n // 2} = <<{n}+{n // 2}={n + n // 2}>>{n + n // 2} clips altogether in "
            f"April and May.\n#### {n + n // 2}"
        )
        assert variant["conversation"][1]["content"] == expected
        assert variant["answer"] == str(n + n // 2)


def test_variants_are_distinct_copies_that_leave_the_original_alone() -> None:
    before = json.dumps(NATALIA, sort_keys=True)
    variants, _ = variants_of(NATALIA, n=4)
    assert json.dumps(NATALIA, sort_keys=True) == before
    questions = [v["conversation"][0]["content"] for v in variants]
    assert len(set(questions)) == len(questions)
    assert NATALIA["conversation"][0]["content"] not in questions
    assert len({v["id"] for v in variants}) == len(variants)


def test_tiny_numbers_and_colon_numbers_are_kept() -> None:
    record = math_record(
        "tiny",
        "At 10:30 Ben buys 3 boxes with 40 pens each. How many pens?",
        "3 * 40 = <<3*40=120>>120\n#### 120",
        "120",
    )
    variants, _ = variants_of(record, n=3)
    assert variants
    for variant in variants:
        assert_sound_variant(record, variant)
        question = variant["conversation"][0]["content"]
        assert question.startswith("At 10:30 Ben buys 3 boxes with ")
        assert numbers(question)[3] != 40


def test_order_of_question_numbers_is_kept() -> None:
    record = math_record(
        "order",
        "Ann has 20 apples and Bo has 21 apples. How many more does Bo have?",
        "21 - 20 = <<21-20=1>>1\n#### 1",
        "1",
    )
    for seed in range(10):
        for variant in variants_of(record, n=2, seed=seed)[0]:
            assert_sound_variant(record, variant)
            a, b = numbers(variant["conversation"][0]["content"])
            assert a < b


def test_wider_max_change_is_respected() -> None:
    record = FORMULAS[1][0]
    variants, _ = variants_of(record, n=5, max_change=0.5)
    assert variants
    for variant in variants:
        assert_sound_variant(record, variant, max_change=0.5)


@pytest.mark.parametrize(
    ("question", "solution", "answer", "reason"),
    [
        ("Tom has 120 marbles and gets 35 more. How many?", "He has 155 marbles.\n#### 155", "155",
         "no computation to recompute"),
        ("Tom has 3 bags of 2 apples. How many?", "3*2=<<3*2=6>>6\n#### 6", "6",
         "no number in the question can change"),
        ("Tom has 30 marbles and gets 12 more. How many?", "30+12=<<30+12=42>>42\nSo 42-2 = 40\n#### 40",
         "40", "final answer is not the result of any step"),
        ("Tom has 30 marbles and gets 12 more. How many?", "30+12=<<30+12=43>>43\n#### 43", "43",
         "original step does not check"),
        ("Tom has 30 marbles and gets 12 more. How many?", "30+37=<<30+37=67>>67\n#### 67", "67",
         "operand with no source (unannotated step?)"),
        ("Tom has 30 marbles and gets 12 more. How many?", "30+12=<<30+12=42>>42\n#### 42", "41",
         "answer field disagrees with the solution"),
        ("Tom has 30 marbles and gets 12 more. How many?", "30+12=<<30 plus 12=42>>42\n#### 42", "42",
         "expression does not evaluate"),
        ("Tom packs 12 eggs in boxes of 4. How many boxes?", "12/4=<<12/4=3>>3\n#### 3", "3",
         "non-integer result where the original was an integer"),
        ("Tom has 5 bags with 2 marbles each. Then he buys 12 more. How many?",
         "5 x 2 = 10 marbles.\n10+12=<<10+12=22>>22\n#### 22", "22", "visible arithmetic does not check"),
    ],
)
def test_skips_are_explained(question: str, solution: str, answer: str, reason: str) -> None:
    variants, reasons = variants_of(math_record("skip", question, solution, answer), n=2)
    assert variants == []
    assert reasons == [reason, reason]


def test_augment_records_counts_and_is_deterministic() -> None:
    records = [
        NATALIA,
        FORMULAS[1][0],
        math_record("none", "Tom has 120 marbles and gets 35 more.", "155\n#### 155", "155"),
        {"id": "chat-1", "type": "conversation", "source": "test", "conversation": []},
    ]
    output, stats = augment_records(records, n_variants=2, seed=7, max_change=0.2)
    assert output[: 1] == [NATALIA]
    assert [r for r in output if "parent_id" not in r] == records
    made = [r for r in output if r.get("parent_id")]
    assert stats["records_in"] == 4
    assert stats["math_originals"] == 3
    assert stats["variants_made"] == len(made) == 4
    assert stats["variants_skipped"] == sum(stats["skip_reasons"].values()) == 2
    assert stats["skip_reasons"] == {"no computation to recompute": 2}
    again, _ = augment_records(records, n_variants=2, seed=7, max_change=0.2)
    assert again == output
    reordered, _ = augment_records(list(reversed(records)), n_variants=2, seed=7, max_change=0.2)
    assert {r["id"]: r for r in reordered} == {r["id"]: r for r in output}
    other, _ = augment_records(records, n_variants=2, seed=8, max_change=0.2)
    assert other != output
    # variants are not varied again when the augmented set comes back in
    rerun, rerun_stats = augment_records(output, n_variants=2, seed=7, max_change=0.2)
    assert rerun_stats["math_originals"] == 3
    assert len(rerun) == len(output) + 4


def test_real_gsm8k_records_give_sound_variants() -> None:
    records = []
    with GSM8K_TRAIN.open(encoding="utf-8") as handle:
        for i, line in zip(range(60), handle, strict=False):
            row = json.loads(line)
            records.append(
                math_record(f"gsm8k-{i}", row["question"], row["answer"], row["answer"].split("####")[-1].strip())
            )
    output, stats = augment_records(records, n_variants=2, seed=13, max_change=0.2)
    originals = {r["id"]: r for r in records}
    variants = [r for r in output if r.get("parent_id")]
    assert stats["variants_made"] == len(variants) >= 40
    for variant in variants:
        assert_sound_variant(originals[variant["parent_id"]], variant)
    natalia = [v for v in variants if v["parent_id"] == "gsm8k-0"]
    assert natalia
    for variant in natalia:
        n = numbers(variant["conversation"][0]["content"])[0]
        assert Fraction(variant["answer"]) == n + n / 2
