"""Code tasks of difficulty 1..3: one-liners, simple loops, simple conditions."""

from __future__ import annotations

import math
from random import Random

from bitzero.data.seed.code_task import WORDS, Builder, Task, ints, sentence
from bitzero.data.seed.slots import PEOPLE


def _binary(r: Random) -> Task:
    op, names, does, ref = r.choice((
        ("+", ("add", "add_numbers", "sum_two", "plus"), "returns the sum of `{a}` and `{b}`", lambda a, b: a + b),
        ("-", ("subtract", "minus", "difference"), "returns `{a}` minus `{b}`", lambda a, b: a - b),
        ("*", ("multiply", "product", "times"), "returns the product of `{a}` and `{b}`", lambda a, b: a * b),
    ))
    a, b = r.choice((("a", "b"), ("x", "y"), ("first", "second"), ("m", "n")))
    return Task(r.choice(names), (a, b), does.format(a=a, b=b), f"    return {a} {op} {b}\n",
                lambda q: (q.randint(-20, 99), q.randint(-20, 99)), ref)


def _scale(r: Random) -> Task:
    k = r.randint(2, 12)
    x = r.choice(("x", "n", "value"))
    return Task(r.choice((f"times_{k}", "scale", f"multiply_by_{k}")), (x,), f"returns `{x}` multiplied by {k}",
                f"    return {x} * {k}\n", lambda q: (q.randint(-50, 50),), lambda v: v * k)


def _divisible(r: Random) -> Task:
    k = r.randint(2, 9)
    n = r.choice(("n", "number", "x"))
    return Task(r.choice((f"divisible_by_{k}", "is_divisible", "is_multiple")), (n,),
                f"returns True if `{n}` is divisible by {k} and False otherwise",
                f"    return {n} % {k} == 0\n",
                lambda q: (q.randint(0, 12) * q.choice((1, k)),), lambda v: v % k == 0)


def _larger(r: Random) -> Task:
    a, b = r.choice((("a", "b"), ("x", "y"), ("left", "right")))
    return Task(r.choice(("larger", "max_of_two", "bigger")), (a, b), f"returns the larger of `{a}` and `{b}`",
                f"    if {a} > {b}:\n        return {a}\n    return {b}\n",
                lambda q: (q.randint(-30, 30), q.randint(-30, 30)), max)


def _greet(r: Random) -> Task:
    word = r.choice(("Hello", "Hi", "Welcome", "Good morning", "Good evening"))
    p = r.choice(("name", "person", "who"))
    return Task(r.choice(("greet", "greeting", "say_hello", "welcome")), (p,),
                f"returns the greeting \"{word}, NAME!\" for the given `{p}`",
                f"    return \"{word}, \" + {p} + \"!\"\n",
                lambda q: (q.choice(PEOPLE)[0],), lambda s: f"{word}, {s}!")


def _reverse(r: Random) -> Task:
    s = r.choice(("s", "text", "word"))
    return Task(r.choice(("reverse", "reverse_string", "backwards", "flip")), (s,),
                f"returns the string `{s}` reversed", f"    return {s}[::-1]\n",
                lambda q: (q.choice(WORDS),), lambda v: "".join(reversed(v)))


def _count_vowels(r: Random) -> Task:
    s = r.choice(("s", "text", "sentence"))
    body = (f"    count = 0\n    for ch in {s}.lower():\n        if ch in \"aeiou\":\n            count += 1\n"
            "    return count\n")
    return Task(r.choice(("count_vowels", "vowel_count", "num_vowels")), (s,),
                f"returns how many vowels (a, e, i, o, u) are in `{s}`", body,
                lambda q: (sentence(q),), lambda v: sum(c in "aeiouAEIOU" for c in v))


def _fold_list(r: Random) -> Task:
    v = r.choice(("numbers", "nums", "values", "items"))
    names, does, start, update, ref = r.choice((
        (("largest", "max_value", "find_max"),
         f"returns the largest number in the non-empty list `{v}` without using max()",
         f"{v}[0]", "        if x > result:\n            result = x\n", max),
        (("total", "sum_list", "add_all"), f"returns the sum of the numbers in `{v}` without using sum()",
         "0", "        result += x\n", sum),
        (("smallest", "min_value", "find_min"),
         f"returns the smallest number in the non-empty list `{v}` without using min()",
         f"{v}[0]", "        if x < result:\n            result = x\n", min),
    ))
    body = f"    result = {start}\n    for x in {v}:\n{update}    return result\n"
    return Task(r.choice(names), (v,), does, body, lambda q: (ints(q, -20, 99),), ref)


def _count_char(r: Random) -> Task:
    c = r.choice("aelnorst")
    s = r.choice(("s", "text", "word"))
    return Task(r.choice((f"count_{c}", "count_letter", "letter_count")), (s,),
                f"returns how many times the letter '{c}' appears in `{s}`",
                f"    return {s}.count(\"{c}\")\n", lambda q: (sentence(q),), lambda v: sum(ch == c for ch in v))


def _palindrome(r: Random) -> Task:
    s = r.choice(("s", "text", "word"))
    return Task(r.choice(("is_palindrome", "palindrome", "reads_same_backwards")), (s,),
                f"returns True if `{s}` reads the same forwards and backwards",
                f"    return {s} == {s}[::-1]\n",
                lambda q: (q.choice(WORDS),), lambda v: list(v) == list(reversed(v)))


def _sum_evens(r: Random) -> Task:
    v = r.choice(("numbers", "nums", "values"))
    odd = r.random() < 0.5
    kind, rem = ("odd", 1) if odd else ("even", 0)
    body = f"    total = 0\n    for x in {v}:\n        if x % 2 == {rem}:\n            total += x\n    return total\n"
    return Task(r.choice((f"sum_{kind}s", f"sum_of_{kind}", f"{kind}_total")), (v,),
                f"returns the sum of the {kind} numbers in `{v}`", body,
                lambda q: (ints(q, 0, 50),), lambda xs: sum(x for x in xs if x % 2 == rem))


def _factorial(r: Random) -> Task:
    n = r.choice(("n", "k", "number"))
    body = f"    result = 1\n    for i in range(2, {n} + 1):\n        result *= i\n    return result\n"
    return Task(r.choice(("factorial", "fact", "product_up_to")), (n,),
                f"returns the factorial of `{n}` (the factorial of 0 is 1)",
                body, lambda q: (q.randint(0, 10),), math.factorial)


def _count_greater(r: Random) -> Task:
    k = r.randint(0, 40)
    v = r.choice(("numbers", "nums", "scores"))
    body = f"    count = 0\n    for x in {v}:\n        if x > {k}:\n            count += 1\n    return count\n"
    return Task(r.choice((f"count_above_{k}", "count_greater", "how_many_above")), (v,),
                f"returns how many numbers in `{v}` are greater than {k}", body,
                lambda q: (ints(q, 0, 60),), lambda xs: len([x for x in xs if x > k]))


FIZZ_PAIRS = ((3, 5), (2, 3), (3, 7), (4, 5), (2, 5), (3, 4))


def fizz_word(a: int, b: int, n: int) -> str:
    """The reference FizzBuzz word, written apart from the templates' if-chains on purpose."""
    return ("Fizz" if n % a == 0 else "") + ("Buzz" if n % b == 0 else "") or str(n)


def _fizzbuzz(r: Random) -> Task:
    a, b = r.choice(FIZZ_PAIRS)
    n = r.choice(("n", "number", "i"))
    body = (f"    if {n} % {a} == 0 and {n} % {b} == 0:\n        return \"FizzBuzz\"\n"
            f"    if {n} % {a} == 0:\n        return \"Fizz\"\n    if {n} % {b} == 0:\n        return \"Buzz\"\n"
            f"    return str({n})\n")
    return Task(r.choice(("fizzbuzz", "fizz_buzz", "fizz_word")), (n,),
                f"returns \"Fizz\" if `{n}` is divisible by {a}, \"Buzz\" if it is divisible by {b}, "
                f"\"FizzBuzz\" if both, and otherwise `{n}` as a string", body,
                lambda q: (q.randint(1, 40),), lambda v: fizz_word(a, b, v))


def _word_count(r: Random) -> Task:
    s = r.choice(("sentence", "text", "s"))
    return Task(r.choice(("word_count", "count_words", "num_words")), (s,), f"returns the number of words in `{s}`",
                f"    return len({s}.split())\n", lambda q: (sentence(q),), lambda v: v.count(" ") + 1)


def _sequence(r: Random) -> Task:
    k = r.randint(2, 9)
    n = r.choice(("n", "limit", "top"))
    names, does, body, ref = r.choice((
        (("squares", "list_squares", "square_numbers"),
         f"returns a list of the squares of the numbers from 1 to `{n}`",
         f"    result = []\n    for i in range(1, {n} + 1):\n        result.append(i * i)\n    return result\n",
         lambda m: [i**2 for i in range(1, m + 1)]),
        ((f"multiples_of_{k}", "multiples", "count_by"),
         f"returns a list of the multiples of {k} from {k} up to and including `{n}`",
         f"    return list(range({k}, {n} + 1, {k}))\n", lambda m: [x for x in range(1, m + 1) if x % k == 0]),
    ))
    return Task(r.choice(names), (n,), does, body, lambda q: (q.randint(1, 30),), ref)


BY_DIFFICULTY: dict[int, tuple[Builder, ...]] = {
    1: (_binary, _scale, _divisible, _larger, _greet),
    2: (_reverse, _count_vowels, _fold_list, _count_char, _palindrome),
    3: (_sum_evens, _factorial, _count_greater, _fizzbuzz, _word_count, _sequence),
}
