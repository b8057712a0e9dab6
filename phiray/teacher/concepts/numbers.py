"""Arithmetic, recursion, searching and sorting concepts."""

from __future__ import annotations

from phiray.teacher.concepts import Rng, Spec, concept


@concept("arithmetic", "A loop can accumulate a product: start from 1 and multiply by each number in turn.")
def factorial(r: Rng) -> Spec:
    n = r.param("n")
    rec = r.random() < 0.5
    name = r.name("factorial", "fact", "product_up_to")
    doc = f"Return {n}! (the product 1 * 2 * ... * {n}) for a non-negative integer {n}; 0! is 1."
    body = (
        f"if {n} <= 1:\n    return 1\nreturn {n} * {name}({n} - 1)"
        if rec
        else f"result = 1\nfor i in range(2, {n} + 1):\n    result *= i\nreturn result"
    )
    return Spec(name, [n], doc, body, [(r.randint(0, 12),) for _ in range(4)] + [(0,)], 1 + rec)


@concept("arithmetic", "Euclid's algorithm: gcd(a, b) = gcd(b, a % b) until the remainder is zero.")
def gcd(r: Rng) -> Spec:
    a, b = r.choice([("a", "b"), ("x", "y"), ("m", "n")])
    doc = r.choice(
        [
            f"Return the greatest common divisor of the positive integers {a} and {b}.",
            f"Compute the largest integer that divides both {a} and {b}.",
        ]
    )
    body = f"while {b}:\n    {a}, {b} = {b}, {a} % {b}\nreturn {a}"
    inputs = [(r.randint(1, 200), r.randint(1, 200)) for _ in range(4)] + [(r.randint(2, 9) * 6, 18)]
    return Spec(r.name("gcd", "greatest_common_divisor", "hcf"), [a, b], doc, body, inputs)


@concept("arithmetic", "Trial division up to the square root decides whether a number is prime.")
def is_prime(r: Rng) -> Spec:
    n = r.param("n")
    doc = f"Return True if {n} is a prime number, False otherwise ({n} may be any integer)."
    body = f"if {n} < 2:\n    return False\ni = 2\nwhile i * i <= {n}:\n    if {n} % i == 0:\n        return False\n    i += 1\nreturn True"
    inputs = [(r.randint(-3, 120),) for _ in range(6)] + [(2,), (97,)]
    return Spec(r.name("is_prime", "prime", "check_prime"), [n], doc, body, inputs)


@concept("arithmetic", "n % 10 is the last digit of n and n // 10 drops it, so a loop can walk the digits.")
def digit_sum(r: Rng) -> Spec:
    n = r.param("n")
    doc = f"Return the sum of the decimal digits of the integer {n} (the sign is ignored)."
    body = f"{n} = abs({n})\ntotal = 0\nwhile {n}:\n    total += {n} % 10\n    {n} //= 10\nreturn total"
    return Spec(
        r.name("digit_sum", "sum_of_digits", "add_digits"),
        [n],
        doc,
        body,
        [(r.randint(-9999, 99999),) for _ in range(4)] + [(0,)],
    )


@concept("arithmetic", "The modulo operator tells whether one number divides another.")
def fizzbuzz(r: Rng) -> Spec:
    n = r.param("n")
    a, b = r.choice([(3, 5), (2, 7), (3, 4), (4, 6)])
    wa, wb = r.choice([("Fizz", "Buzz"), ("Foo", "Bar"), ("Ping", "Pong")])
    doc = (
        f"Return a list of strings for the numbers 1..{n}: '{wa}' for multiples of {a}, '{wb}' for multiples "
        f"of {b}, '{wa}{wb}' for multiples of both, otherwise the number itself as a string."
    )
    body = (
        f"out = []\nfor i in range(1, {n} + 1):\n    word = ''\n    if i % {a} == 0:\n        word += '{wa}'\n"
        f"    if i % {b} == 0:\n        word += '{wb}'\n    out.append(word or str(i))\nreturn out"
    )
    return Spec(
        r.name("fizzbuzz", "fizz_buzz_list", "word_numbers"), [n], doc, body, [(r.randint(0, 25),) for _ in range(3)], 2
    )


@concept("arithmetic", "A while loop runs until a condition fails, e.g. the Collatz sequence reaching 1.")
def collatz_steps(r: Rng) -> Spec:
    n = r.param("n")
    doc = (
        f"Return how many steps the Collatz process takes to turn {n} into 1: an even number is halved, "
        "an odd number becomes 3 * n + 1."
    )
    body = (
        f"steps = 0\nwhile {n} != 1:\n    {n} = {n} // 2 if {n} % 2 == 0 else 3 * {n} + 1\n    steps += 1\nreturn steps"
    )
    return Spec(
        r.name("collatz_steps", "collatz_length", "steps_to_one"),
        [n],
        doc,
        body,
        [(r.randint(1, 60),) for _ in range(4)] + [(1,)],
        2,
    )


@concept("arithmetic", "sum() over a generator expression adds up computed values in one line.")
def sum_of_powers(r: Rng) -> Spec:
    n = r.param("n")
    p = r.randint(1, 3)
    what = {1: "integers", 2: "squares", 3: "cubes"}[p]
    doc = f"Return the sum of the {what} of the integers from 1 to {n} inclusive."
    body = f"return sum(i ** {p} for i in range(1, {n} + 1))"
    return Spec(
        r.name(f"sum_of_{what}", f"total_{what}", f"add_{what}"),
        [n],
        doc,
        body,
        [(r.randint(0, 30),) for _ in range(4)],
    )


@concept("recursion", "A recursive function calls itself on a smaller input and stops at a base case.")
def fibonacci(r: Rng) -> Spec:
    n = r.param("n")
    memo = r.random() < 0.5
    name = r.name("fibonacci", "fib", "nth_fibonacci")
    doc = f"Return the {n}-th Fibonacci number, where fib(0) = 0 and fib(1) = 1."
    body = (
        f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, a + b\nreturn a"
        if memo
        else f"if {n} < 2:\n    return {n}\nreturn {name}({n} - 1) + {name}({n} - 2)"
    )
    return Spec(name, [n], doc, body, [(r.randint(0, 18),) for _ in range(4)], 2)


@concept("recursion", "Recursion handles nested structure naturally: recurse into each sub-list.")
def nested_sum(r: Rng) -> Spec:
    x = r.param("items")
    name = r.name("nested_sum", "deep_sum", "sum_nested")
    doc = f"Return the sum of all integers in {x}, a list whose elements are integers or (nested) lists."
    body = f"total = 0\nfor item in {x}:\n    if isinstance(item, list):\n        total += {name}(item)\n    else:\n        total += item\nreturn total"

    def nested(depth: int) -> list:
        return [nested(depth - 1) if depth and r.random() < 0.3 else r.randint(-9, 9) for _ in range(r.randint(0, 4))]

    return Spec(name, [x], doc, body, [(nested(3),) for _ in range(4)], 3)


@concept("recursion", "Exponentiation by squaring halves the exponent at each recursive call.")
def fast_power(r: Rng) -> Spec:
    b, e = r.choice([("base", "exp"), ("x", "n"), ("a", "k")])
    name = r.name("fast_power", "power", "pow_rec")
    doc = f"Return {b} raised to the non-negative integer power {e}, using recursion on {e} // 2."
    body = f"if {e} == 0:\n    return 1\nhalf = {name}({b}, {e} // 2)\nreturn half * half * ({b} if {e} % 2 else 1)"
    return Spec(name, [b, e], doc, body, [(r.randint(-5, 9), r.randint(0, 12)) for _ in range(4)], 3)


@concept("searching", "Binary search halves a sorted range at every step, finding an item in O(log n).")
def binary_search(r: Rng) -> Spec:
    xs, t = r.param("items"), r.choice(["target", "value", "key"])
    doc = f"Return the index of {t} in the sorted list {xs}, or -1 if it is not present."
    body = (
        f"lo, hi = 0, len({xs}) - 1\nwhile lo <= hi:\n    mid = (lo + hi) // 2\n    if {xs}[mid] == {t}:\n"
        f"        return mid\n    if {xs}[mid] < {t}:\n        lo = mid + 1\n    else:\n        hi = mid - 1\nreturn -1"
    )
    inputs = []
    for _ in range(4):
        data = sorted(set(r.ints(1, 10)))
        inputs.append((data, r.choice(data) if r.random() < 0.7 else 99))
    return Spec(r.name("binary_search", "bsearch", "find_sorted"), [xs, t], doc, body, inputs + [([], 1)], 2)


@concept("searching", "enumerate() yields (index, item) pairs, handy for collecting positions.")
def find_all_indices(r: Rng) -> Spec:
    xs, t = r.param("items"), r.choice(["target", "value", "x"])
    doc = f"Return a list of every index at which {t} occurs in {xs}."
    body = f"return [i for i, item in enumerate({xs}) if item == {t}]"
    inputs = [([r.randint(0, 3) for _ in range(r.randint(0, 8))], r.randint(0, 3)) for _ in range(4)]
    return Spec(r.name("find_all_indices", "positions_of", "indices_of"), [xs, t], doc, body, inputs)


@concept("sorting", "sorted() accepts a key function, e.g. lambda pair: pair[1] to sort by the second element.")
def sort_by_second(r: Rng) -> Spec:
    xs = r.choice(["pairs", "records", "tuples"])
    rev = r.random() < 0.5
    doc = f"Return the list of 2-tuples {xs} sorted by their second element, {'largest first' if rev else 'smallest first'}."
    body = f"return sorted({xs}, key=lambda pair: pair[1]{', reverse=True' if rev else ''})"
    inputs = [([(r.word(), r.randint(0, 50)) for _ in range(r.randint(0, 5))],) for _ in range(3)]
    return Spec(r.name("sort_by_second", "order_by_value", "sort_pairs"), [xs], doc, body, inputs)


@concept("sorting", "Insertion sort grows a sorted prefix by inserting each new item in its place.")
def insertion_sort(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Return a new list with the elements of {xs} in ascending order, using insertion sort."
    body = (
        f"out = list({xs})\nfor i in range(1, len(out)):\n    item = out[i]\n    j = i - 1\n"
        f"    while j >= 0 and out[j] > item:\n        out[j + 1] = out[j]\n        j -= 1\n    out[j + 1] = item\nreturn out"
    )
    return Spec(
        r.name("insertion_sort", "sort_numbers", "isort"), [xs], doc, body, [(r.ints(0, 9),) for _ in range(4)], 2
    )


@concept("sorting", "Sorting by a tuple key sorts by the first part, breaking ties with the next.")
def sort_by_length(r: Rng) -> Spec:
    ws = r.param("words")
    doc = f"Return the strings in {ws} sorted by length, shortest first, and alphabetically among equal lengths."
    body = f"return sorted({ws}, key=lambda w: (len(w), w))"
    return Spec(
        r.name("sort_by_length", "order_by_length", "length_sort"),
        [ws],
        doc,
        body,
        [(r.words(0, 6),) for _ in range(4)],
    )
