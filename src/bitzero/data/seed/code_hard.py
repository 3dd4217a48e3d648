"""Code tasks of difficulty 4..5: classic small algorithms."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from random import Random

from bitzero.data.seed.code_easy import FIZZ_PAIRS, fizz_word
from bitzero.data.seed.code_task import WORDS, Builder, Task, ints, sentence


def _gcd(r: Random) -> Task:
    a, b = r.choice((("a", "b"), ("x", "y"), ("m", "n")))
    body = f"    while {b} != 0:\n        {a}, {b} = {b}, {a} % {b}\n    return {a}\n"
    return Task(r.choice(("gcd", "greatest_common_divisor", "common_divisor")), (a, b),
                f"returns the greatest common divisor of the positive integers `{a}` and `{b}`", body,
                lambda q: (q.randint(1, 12) * (k := q.randint(1, 15)), q.randint(1, 12) * k), math.gcd)


def _running_total(r: Random) -> Task:
    v = r.choice(("numbers", "nums", "amounts"))
    body = (f"    totals = []\n    current = 0\n    for x in {v}:\n        current += x\n"
            "        totals.append(current)\n    return totals\n")
    return Task(r.choice(("running_total", "cumulative_sum", "prefix_sums")), (v,),
                f"returns the running totals of `{v}` (each item is the sum of all numbers so far)", body,
                lambda q: (ints(q, -10, 30),), lambda xs: list(itertools.accumulate(xs)))


def _fibonacci(r: Random) -> Task:
    n = r.choice(("n", "index", "k"))
    body = f"    a, b = 0, 1\n    for _ in range({n}):\n        a, b = b, a + b\n    return a\n"

    def ref(m: int) -> int:
        seq = [0, 1]
        while len(seq) <= m:
            seq.append(seq[-1] + seq[-2])
        return seq[m]

    return Task(r.choice(("fibonacci", "fib", "nth_fibonacci")), (n,),
                f"returns Fibonacci number `{n}`, counting from 0 (number 0 is 0 and number 1 is 1)", body,
                lambda q: (q.randint(0, 25),), ref)


def _is_prime(r: Random) -> Task:
    n = r.choice(("n", "number", "x"))
    body = (f"    if {n} < 2:\n        return False\n    d = 2\n    while d * d <= {n}:\n"
            f"        if {n} % d == 0:\n            return False\n        d += 1\n    return True\n")
    return Task(r.choice(("is_prime", "prime", "check_prime")), (n,), f"returns True if `{n}` is a prime number",
                body, lambda q: (q.randint(0, 100),), lambda m: m > 1 and all(m % d for d in range(2, m)))


def _dedupe(r: Random) -> Task:
    v = r.choice(("items", "values", "numbers"))
    body = (f"    seen = set()\n    result = []\n    for x in {v}:\n        if x not in seen:\n"
            "            seen.add(x)\n            result.append(x)\n    return result\n")
    return Task(r.choice(("remove_duplicates", "dedupe", "unique_in_order")), (v,),
                f"returns `{v}` without duplicates, keeping the first occurrence of each item in order", body,
                lambda q: (ints(q, 0, 6, (4, 9)),), lambda xs: list(dict.fromkeys(xs)))


def _digit_sum(r: Random) -> Task:
    n = r.choice(("n", "number", "value"))
    body = f"    total = 0\n    while {n} > 0:\n        total += {n} % 10\n        {n} //= 10\n    return total\n"
    return Task(r.choice(("digit_sum", "sum_digits", "add_digits")), (n,),
                f"returns the sum of the digits of the non-negative integer `{n}`", body,
                lambda q: (q.randint(0, 99999),), lambda m: sum(map(int, str(m))))


def _second_largest(r: Random) -> Task:
    v = r.choice(("numbers", "nums", "scores"))
    return Task(r.choice(("second_largest", "runner_up", "second_max")), (v,),
                f"returns the second largest distinct value in `{v}` (it has at least two different values)",
                f"    distinct = sorted(set({v}))\n    return distinct[-2]\n",
                lambda q: (ints(q, 0, 9) + [10],), lambda xs: max(x for x in xs if x != max(xs)))


def _char_frequency(r: Random) -> Task:
    s = r.choice(("s", "text", "word"))
    body = f"    counts = {{}}\n    for ch in {s}:\n        counts[ch] = counts.get(ch, 0) + 1\n    return counts\n"
    return Task(r.choice(("char_frequency", "letter_counts", "count_chars")), (s,),
                f"returns a dictionary mapping each character of `{s}` to how many times it appears", body,
                lambda q: (q.choice(WORDS),), lambda v: dict(Counter(v)))


def _fizzbuzz_list(r: Random) -> Task:
    a, b = r.choice(FIZZ_PAIRS)
    n = r.choice(("n", "limit", "count"))
    body = (f"    result = []\n    for i in range(1, {n} + 1):\n        word = \"\"\n"
            f"        if i % {a} == 0:\n            word += \"Fizz\"\n        if i % {b} == 0:\n"
            "            word += \"Buzz\"\n"
            "        result.append(word or str(i))\n    return result\n")
    return Task(r.choice(("fizzbuzz_list", "fizzbuzz", "play_fizzbuzz")), (n,),
                f"returns a list for the numbers 1 to `{n}` where multiples of {a} become \"Fizz\", multiples of {b} "
                "become \"Buzz\", multiples of both become \"FizzBuzz\" and other numbers become strings",
                body, lambda q: (q.randint(1, 16),), lambda m: [fizz_word(a, b, i) for i in range(1, m + 1)])


def _flatten(r: Random) -> Task:
    v = r.choice(("lists", "nested", "groups"))
    body = (f"    flat = []\n    for inner in {v}:\n        for x in inner:\n            flat.append(x)\n"
            "    return flat\n")
    return Task(r.choice(("flatten", "flatten_once", "join_lists")), (v,),
                f"takes a list of lists `{v}` and returns one list with all their items in order", body,
                lambda q: ([ints(q, 0, 9, (0, 3)) for _ in range(q.randint(1, 4))],), lambda xs: sum(xs, []))


def _merge_sorted(r: Random) -> Task:
    a, b = r.choice((("a", "b"), ("left", "right"), ("first", "second")))
    body = (f"    result = []\n    i = j = 0\n    while i < len({a}) and j < len({b}):\n"
            f"        if {a}[i] <= {b}[j]:\n            result.append({a}[i])\n            i += 1\n"
            f"        else:\n            result.append({b}[j])\n            j += 1\n"
            f"    return result + {a}[i:] + {b}[j:]\n")
    return Task(r.choice(("merge_sorted", "merge", "merge_lists")), (a, b),
                f"merges the sorted lists `{a}` and `{b}` into one sorted list without calling sort", body,
                lambda q: (sorted(ints(q, 0, 30, (0, 5))), sorted(ints(q, 0, 30, (0, 5)))),
                lambda x, y: sorted(x + y))


def _binary_search(r: Random) -> Task:
    v, t = r.choice((("items", "target"), ("numbers", "value"), ("sorted_list", "x")))
    body = (f"    low, high = 0, len({v}) - 1\n    while low <= high:\n        mid = (low + high) // 2\n"
            f"        if {v}[mid] == {t}:\n            return mid\n        if {v}[mid] < {t}:\n"
            "            low = mid + 1\n"
            "        else:\n            high = mid - 1\n    return -1\n")

    def make(q: Random) -> tuple[list[int], int]:
        values = sorted(q.sample(range(50), q.randint(1, 8)))
        return values, q.choice(values) if q.random() < 0.7 else q.randint(0, 49)

    return Task(r.choice(("binary_search", "find_index", "search_sorted")), (v, t),
                f"returns the index of `{t}` in the sorted list `{v}` using binary search, or -1 if it is missing",
                body, make, lambda xs, x: xs.index(x) if x in xs else -1)


def _caesar(r: Random) -> Task:
    k = r.randint(1, 25)
    s = r.choice(("text", "message", "s"))
    body = (f"    result = \"\"\n    for ch in {s}:\n        if \"a\" <= ch <= \"z\":\n"
            f"            result += chr((ord(ch) - ord(\"a\") + {k}) % 26 + ord(\"a\"))\n"
            "        else:\n            result += ch\n    return result\n")
    letters = "abcdefghijklmnopqrstuvwxyz"
    table = str.maketrans(letters, letters[k:] + letters[:k])
    return Task(r.choice(("caesar", f"shift_{k}", "encode")), (s,),
                f"shifts every lowercase letter of `{s}` {k} places forward in the alphabet (wrapping from z to a) "
                "and leaves other characters unchanged", body, lambda q: (sentence(q),), lambda v: v.translate(table))


def _anagram(r: Random) -> Task:
    a, b = r.choice((("a", "b"), ("first", "second"), ("word1", "word2")))

    def make(q: Random) -> tuple[str, str]:
        w = q.choice(WORDS)
        return w, "".join(q.sample(w, len(w))) if q.random() < 0.5 else q.choice(WORDS)

    return Task(r.choice(("is_anagram", "anagrams", "same_letters")), (a, b),
                f"returns True if `{a}` and `{b}` contain exactly the same letters (they are anagrams)",
                f"    return sorted({a}) == sorted({b})\n", make, lambda x, y: Counter(x) == Counter(y))


def _run_length(r: Random) -> Task:
    s = r.choice(("s", "text", "data"))
    body = (f"    if not {s}:\n        return \"\"\n    result = \"\"\n    current, count = {s}[0], 0\n"
            f"    for ch in {s}:\n        if ch == current:\n            count += 1\n        else:\n"
            "            result += current + str(count)\n            current, count = ch, 1\n"
            "    return result + current + str(count)\n")
    return Task(r.choice(("run_length", "rle", "compress")), (s,),
                f"returns the run-length encoding of `{s}`, for example \"aaab\" becomes \"a3b1\"", body,
                lambda q: ("".join(q.choice("abc") * q.randint(1, 4) for _ in range(q.randint(0, 5))),),
                lambda v: "".join(ch + str(len(list(g))) for ch, g in itertools.groupby(v)))


def _longest_word(r: Random) -> Task:
    s = r.choice(("sentence", "text", "s"))
    body = (f"    best = \"\"\n    for word in {s}.split():\n        if len(word) > len(best):\n"
            "            best = word\n    return best\n")
    return Task(r.choice(("longest_word", "find_longest", "biggest_word")), (s,),
                f"returns the longest word in `{s}` (the first one if several have the same length)", body,
                lambda q: (sentence(q),), lambda v: max(v.split(), key=len))


BY_DIFFICULTY: dict[int, tuple[Builder, ...]] = {
    4: (_gcd, _running_total, _fibonacci, _is_prime, _dedupe, _digit_sum, _second_largest, _char_frequency),
    5: (_fizzbuzz_list, _flatten, _merge_sorted, _binary_search, _caesar, _anagram, _run_length, _longest_word),
}
