"""Lists, dicts, sets, comprehensions, generators, classes and exceptions."""

from __future__ import annotations

from phiray.teacher.concepts import Rng, Spec, concept


@concept("lists", "A for loop with an if inside filters a list; the % operator tests evenness.")
def sum_evens(r: Rng) -> Spec:
    xs = r.param("items")
    odd = r.random() < 0.5
    doc = f"Return the sum of the {'odd' if odd else 'even'} numbers in the list {xs}."
    body = f"return sum(x for x in {xs} if x % 2 {'== 1' if odd else '== 0'})"
    return Spec(
        r.name("sum_odds" if odd else "sum_evens", "add_odd" if odd else "add_even"),
        [xs],
        doc,
        body,
        [(r.ints(),) for _ in range(4)],
    )


@concept("lists", "A running total keeps an accumulator and appends it after each step.")
def running_total(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Return the list of running totals of {xs}: element i is the sum of {xs}[0] .. {xs}[i]."
    body = f"out, total = [], 0\nfor x in {xs}:\n    total += x\n    out.append(total)\nreturn out"
    return Spec(
        r.name("running_total", "cumulative_sum", "prefix_sums"), [xs], doc, body, [(r.ints(),) for _ in range(4)]
    )


@concept("lists", "Slices build new lists: xs[i:i + k] is a chunk of length at most k.")
def chunk_list(r: Rng) -> Spec:
    xs, k = r.param("items"), r.choice(["size", "k", "width"])
    doc = f"Split {xs} into consecutive chunks of length {k} (the last chunk may be shorter) and return them."
    body = f"return [{xs}[i:i + {k}] for i in range(0, len({xs}), {k})]"
    return Spec(
        r.name("chunk_list", "chunks", "split_into_groups"),
        [xs, k],
        doc,
        body,
        [(r.ints(0, 10), r.randint(1, 4)) for _ in range(4)],
    )


@concept("lists", "Rotating a list is two slices glued together; % keeps the shift in range.")
def rotate_list(r: Rng) -> Spec:
    xs, k = r.param("items"), r.choice(["k", "steps", "shift"])
    doc = f"Return {xs} rotated to the right by {k} positions (elements falling off the end reappear at the front)."
    body = f"if not {xs}:\n    return []\n{k} %= len({xs})\nreturn {xs}[-{k}:] + {xs}[:-{k}] if {k} else list({xs})"
    return Spec(
        r.name("rotate_list", "rotate_right", "shift_items"),
        [xs, k],
        doc,
        body,
        [(r.ints(0, 7), r.randint(0, 9)) for _ in range(4)],
        2,
    )


@concept("lists", "Tracking the two best values in one pass avoids sorting the whole list.")
def second_largest(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Return the second largest distinct value in {xs}, or None if there are fewer than two distinct values."
    body = f"distinct = sorted(set({xs}))\nreturn distinct[-2] if len(distinct) >= 2 else None"
    return Spec(
        r.name("second_largest", "runner_up", "second_max"),
        [xs],
        doc,
        body,
        [(r.ints(0, 8, 0, 9),) for _ in range(4)] + [([5, 5],)],
        2,
    )


@concept("lists", "Merging two sorted lists walks both with two indices, always taking the smaller head.")
def merge_sorted(r: Rng) -> Spec:
    a, b = r.choice([("left", "right"), ("a", "b"), ("xs", "ys")])
    doc = f"Merge the two sorted lists {a} and {b} into one sorted list without calling sort()."
    body = (
        f"out, i, j = [], 0, 0\nwhile i < len({a}) and j < len({b}):\n    if {a}[i] <= {b}[j]:\n        out.append({a}[i])\n"
        f"        i += 1\n    else:\n        out.append({b}[j])\n        j += 1\nreturn out + {a}[i:] + {b}[j:]"
    )
    inputs = [(sorted(r.ints(0, 6)), sorted(r.ints(0, 6))) for _ in range(4)]
    return Spec(r.name("merge_sorted", "merge_two", "combine_sorted"), [a, b], doc, body, inputs, 3)


@concept("lists", "zip() walks two sequences in step, pairing their elements.")
def pairwise_differences(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Return the list of differences between consecutive elements of {xs} (next minus previous)."
    body = f"return [b - a for a, b in zip({xs}, {xs}[1:])]"
    return Spec(r.name("pairwise_differences", "deltas", "gaps"), [xs], doc, body, [(r.ints(),) for _ in range(4)])


@concept("dicts", "Swapping keys and values builds an inverted index with a dict comprehension.")
def invert_dict(r: Rng) -> Spec:
    d = r.param("mapping")
    doc = f"Return a new dictionary whose keys are the values of {d} and whose values are its keys (values are unique)."
    body = f"return {{value: key for key, value in {d}.items()}}"
    inputs = [({w: i for i, w in enumerate(dict.fromkeys(r.words(0, 5)))},) for _ in range(3)]
    return Spec(r.name("invert_dict", "swap_keys_values", "reverse_mapping"), [d], doc, body, inputs)


@concept("dicts", "dict.get(key, default) avoids KeyError when counting things.")
def word_count(r: Rng) -> Spec:
    s = r.param("text")
    doc = (
        f"Return a dictionary mapping each word of {s} (split on whitespace, lower-cased) to its number of occurrences."
    )
    body = f"counts = {{}}\nfor word in {s}.lower().split():\n    counts[word] = counts.get(word, 0) + 1\nreturn counts"
    return Spec(
        r.name("word_count", "count_words", "word_frequencies"),
        [s],
        doc,
        body,
        [(" ".join(r.choice(["red", "Blue", "red", "green"]) for _ in range(r.randint(0, 6))),) for _ in range(4)],
    )


@concept("dicts", "dict.setdefault(key, []) creates a list the first time a key is seen, to group items.")
def group_by_length(r: Rng) -> Spec:
    ws = r.param("words")
    doc = f"Group the strings in {ws} by their length: return a dict from length to the list of strings of that length, in input order."
    body = f"groups = {{}}\nfor w in {ws}:\n    groups.setdefault(len(w), []).append(w)\nreturn groups"
    return Spec(
        r.name("group_by_length", "bucket_by_length", "lengths_to_words"),
        [ws],
        doc,
        body,
        [(r.words(0, 6),) for _ in range(4)],
        2,
    )


@concept("dicts", "Iterating over dict.items() gives key/value pairs; max() with a key picks the best one.")
def top_scorer(r: Rng) -> Spec:
    d = r.param("mapping")
    doc = f"Return the key of {d} with the largest value (the first such key on ties), or None if {d} is empty."
    body = f"best = None\nfor key, value in {d}.items():\n    if best is None or value > {d}[best]:\n        best = key\nreturn best"
    inputs = [({w: r.randint(0, 9) for w in r.words(0, 5)},) for _ in range(4)]
    return Spec(r.name("top_scorer", "argmax_key", "best_key"), [d], doc, body, inputs)


@concept("sets", "Sets support & (intersection), | (union) and - (difference).")
def common_elements(r: Rng) -> Spec:
    a, b = r.choice([("a", "b"), ("first", "second"), ("xs", "ys")])
    op, what = r.choice(
        [("&", "appear in both"), ("^", "appear in exactly one of"), ("-", "appear in the first but not the second of")]
    )
    doc = f"Return a sorted list of the distinct values that {what} the lists {a} and {b}."
    body = f"return sorted(set({a}) {op} set({b}))"
    inputs = [(r.ints(0, 7, 0, 9), r.ints(0, 7, 0, 9)) for _ in range(4)]
    return Spec(r.name("common_elements", "set_compare", "compare_lists"), [a, b], doc, body, inputs)


@concept("sets", "Comparing len(set(xs)) with len(xs) reveals duplicates.")
def has_duplicates(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Return True if any value occurs more than once in {xs}."
    body = f"return len(set({xs})) != len({xs})"
    return Spec(
        r.name("has_duplicates", "contains_repeat", "any_duplicates"),
        [xs],
        doc,
        body,
        [(r.ints(0, 6, 0, 9),) for _ in range(4)] + [([1, 2, 3],)],
    )


@concept("comprehensions", "A list comprehension maps and filters in one expression: [f(x) for x in xs if cond].")
def squares_of_odds(r: Rng) -> Spec:
    xs = r.param("items")
    p, cond = r.choice([(2, "odd"), (3, "even"), (2, "positive")])
    test = {"odd": "x % 2 == 1", "even": "x % 2 == 0", "positive": "x > 0"}[cond]
    doc = f"Return a list with x ** {p} for every {cond} x in {xs}, in the original order."
    body = f"return [x ** {p} for x in {xs} if {test}]"
    return Spec(
        r.name("powers_of_filtered", f"{cond}_powers", f"map_{cond}"), [xs], doc, body, [(r.ints(),) for _ in range(4)]
    )


@concept("comprehensions", "A nested comprehension can transpose a matrix: rows become columns.")
def transpose(r: Rng) -> Spec:
    m = r.choice(["matrix", "grid", "rows"])
    doc = f"Return the transpose of the rectangular matrix {m} (a list of equal-length lists)."
    body = f"if not {m}:\n    return []\nreturn [[row[j] for row in {m}] for j in range(len({m}[0]))]"
    inputs = []
    for _ in range(3):
        rows, cols = r.randint(1, 4), r.randint(1, 4)
        inputs.append(([[r.randint(0, 9) for _ in range(cols)] for _ in range(rows)],))
    return Spec(r.name("transpose", "flip_matrix", "columns_of"), [m], doc, body, inputs, 2)


@concept("generators", "A generator function uses yield to produce values lazily, one at a time.")
def multiples_gen(r: Rng) -> Spec:
    n, k = r.param("n"), r.choice(["step", "factor", "m"])
    doc = f"Yield the first {n} positive multiples of {k}, in increasing order."
    body = f"for i in range(1, {n} + 1):\n    yield i * {k}"
    return Spec(
        r.name("multiples", "gen_multiples", "iter_multiples"),
        [n, k],
        doc,
        body,
        [(r.randint(0, 6), r.randint(1, 9)) for _ in range(4)],
        2,
        wrap="list",
    )


@concept("generators", "A generator can keep state between yields, e.g. the previous item when skipping repeats.")
def skip_repeats_gen(r: Rng) -> Spec:
    xs = r.param("items")
    doc = f"Yield the items of {xs}, skipping any item equal to the one just before it."
    body = f"previous = object()\nfor item in {xs}:\n    if item != previous:\n        yield item\n    previous = item"
    return Spec(
        r.name("skip_repeats", "compress_runs_gen", "unique_runs"),
        [xs],
        doc,
        body,
        [([r.randint(0, 2) for _ in range(r.randint(0, 9))],) for _ in range(4)],
        3,
        wrap="list",
    )


@concept("classes", "A class bundles data with the methods that use it; __init__ sets up the attributes.")
def rectangle_areas(r: Rng) -> Spec:
    cls = r.choice(["Rectangle", "Box", "Tile"])
    w, h = r.choice([("width", "height"), ("w", "h"), ("cols", "rows")])
    pre = (
        f"class {cls}:\n    def __init__(self, {w}, {h}):\n        self.{w} = {w}\n        self.{h} = {h}\n\n"
        f"    def area(self):\n        return self.{w} * self.{h}\n"
    )
    shapes = r.choice(["shapes", "items", "tiles"])
    doc = f"Given a list of ({w}, {h}) pairs, build a {cls} for each and return the total area of all of them."
    body = f"return sum({cls}(a, b).area() for a, b in {shapes})"
    inputs = [([(r.randint(0, 9), r.randint(0, 9)) for _ in range(r.randint(0, 4))],) for _ in range(4)]
    return Spec(r.name("total_area", "sum_areas", "combined_area"), [shapes], doc, body, inputs, 2, preamble=pre)


@concept("classes", "Methods change an object's state; a stack pushes and pops at the same end.")
def stack_ops(r: Rng) -> Spec:
    cls = r.choice(["Stack", "Pile", "LifoStack"])
    pre = (
        f"class {cls}:\n    def __init__(self):\n        self._items = []\n\n    def push(self, item):\n"
        f"        self._items.append(item)\n\n    def pop(self):\n        return self._items.pop()\n\n"
        f"    def is_empty(self):\n        return not self._items\n"
    )
    ops = r.choice(["ops", "commands", "actions"])
    doc = (
        f"Run {ops} on a new {cls}: an integer is pushed, the string 'pop' pops. Return the list of popped "
        f"values; a 'pop' on an empty stack is ignored."
    )
    body = (
        f"stack, popped = {cls}(), []\nfor op in {ops}:\n    if op == 'pop':\n        if not stack.is_empty():\n"
        f"            popped.append(stack.pop())\n    else:\n        stack.push(op)\nreturn popped"
    )
    inputs = [([r.choice(["pop", r.randint(0, 9)]) for _ in range(r.randint(0, 8))],) for _ in range(4)]
    return Spec(r.name("run_stack", "simulate_stack", "stack_pops"), [ops], doc, body, inputs, 3, preamble=pre)


@concept("exceptions", "try/except catches an error and lets the function return a fallback instead.")
def safe_divide(r: Rng) -> Spec:
    a, b, d = r.choice([("a", "b", "default"), ("num", "den", "fallback"), ("x", "y", "otherwise")])
    doc = f"Return {a} / {b}, or {d} when {b} is zero."
    body = f"try:\n    return {a} / {b}\nexcept ZeroDivisionError:\n    return {d}"
    inputs = [(r.randint(-20, 20), r.choice([0, 1, 2, 4, 5]), r.choice([None, 0, -1])) for _ in range(4)]
    return Spec(r.name("safe_divide", "divide_or_default", "checked_division"), [a, b, d], doc, body, inputs)


@concept("exceptions", "int() raises ValueError on text that is not a number; catching it skips bad input.")
def parse_ints(r: Rng) -> Spec:
    xs = r.param("words")
    doc = f"Convert every string in {xs} that holds an integer to int and return those ints, skipping the others."
    body = f"out = []\nfor item in {xs}:\n    try:\n        out.append(int(item))\n    except ValueError:\n        continue\nreturn out"
    inputs = [([r.choice([str(r.randint(-50, 50)), r.word()]) for _ in range(r.randint(0, 6))],) for _ in range(4)]
    return Spec(r.name("parse_ints", "extract_integers", "to_ints"), [xs], doc, body, inputs, 2)


@concept("exceptions", "raise ValueError('...') rejects invalid arguments early, with a message.")
def validated_mean(r: Rng) -> Spec:
    xs = r.param("items")
    name = r.name("validated_mean", "checked_average", "mean_or_raise")
    doc = f"Return the mean of {xs} as a float; raise ValueError if {xs} is empty."
    body = f"if not {xs}:\n    raise ValueError('empty input')\nreturn sum({xs}) / len({xs})"
    extra = [
        f"try:\n    {name}([])\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('expected ValueError')"
    ]
    return Spec(
        name,
        [xs],
        doc,
        body,
        [([r.randint(0, 8) * 2 for _ in range(r.choice([1, 2, 4]))],) for _ in range(4)],
        2,
        extra_tests=extra,
    )
