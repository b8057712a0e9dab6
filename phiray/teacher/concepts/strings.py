"""String concepts: counting, transforming, comparing and encoding text."""

from __future__ import annotations

from phiray.teacher.concepts import Rng, Spec, concept

S = "strings"


@concept(S, "A string is a sequence of characters; a loop or a generator expression can visit each one.")
def count_vowels(r: Rng) -> Spec:
    s = r.param("text")
    ci = r.random() < 0.5
    doc = r.choice(
        [
            f"Return how many vowels (a, e, i, o, u) the string {s} contains",
            f"Count the vowels in {s} and return the count",
            f"Given a string {s}, count its vowels",
        ]
    )
    doc += ", ignoring case." if ci else " (lowercase vowels only)."
    body = f"return sum(1 for ch in {s}{'.lower()' if ci else ''} if ch in 'aeiou')"
    inputs = [(r.sentence().title() if ci else r.sentence(),) for _ in range(4)] + [("",)]
    return Spec(r.name("count_vowels", "vowel_count", "num_vowels"), [s], doc, body, inputs, 1 + ci)


@concept(S, "split() breaks a string into words and ' '.join() glues a list of words back together.")
def reverse_words(r: Rng) -> Spec:
    s = r.param("text")
    doc = r.choice(
        [f"Return {s} with the order of its words reversed.", f"Reverse the order of the space-separated words in {s}."]
    )
    body = f"return ' '.join(reversed({s}.split()))"
    inputs = [(r.sentence(),) for _ in range(4)]
    return Spec(r.name("reverse_words", "flip_words", "words_backwards"), [s], doc, body, inputs)


@concept(S, "Slicing with a step of -1 reverses a sequence, which makes palindrome checks short.")
def is_palindrome(r: Rng) -> Spec:
    s = r.param("text")
    clean = r.random() < 0.5
    doc = f"Return True if {s} reads the same forwards and backwards"
    doc += ", ignoring case and non-letter characters." if clean else "."
    body = (
        f"letters = [ch.lower() for ch in {s} if ch.isalpha()]\nreturn letters == letters[::-1]"
        if clean
        else f"return {s} == {s}[::-1]"
    )
    pals = ["level", "racecar", "noon", "Step on no pets" if clean else "stats", "abcba"]
    inputs = [(r.choice(pals),), (r.word(),), (r.word(),), ("",)]
    return Spec(r.name("is_palindrome", "palindrome", "reads_same_backwards"), [s], doc, body, inputs, 1 + clean)


@concept(S, "str methods such as capitalize(), upper() and title() return new strings; strings never change in place.")
def capitalize_words(r: Rng) -> Spec:
    s = r.param("text")
    doc = r.choice(
        [
            f"Return {s} with the first letter of every word in upper case.",
            f"Capitalize each space-separated word of {s}.",
        ]
    )
    body = f"return ' '.join(word[:1].upper() + word[1:] for word in {s}.split(' '))"
    return Spec(
        r.name("capitalize_words", "title_case", "upper_first_letters"),
        [s],
        doc,
        body,
        [(r.sentence(),) for _ in range(4)],
    )


@concept(S, "A dictionary can count how often each character occurs: d[ch] = d.get(ch, 0) + 1.")
def char_frequency(r: Rng) -> Spec:
    s = r.param("text")
    skip = r.random() < 0.5
    doc = f"Return a dictionary mapping each character of {s} to the number of times it occurs"
    doc += ", skipping spaces." if skip else "."
    cond = "\n    if ch == ' ':\n        continue" if skip else ""
    body = f"counts = {{}}\nfor ch in {s}:{cond}\n    counts[ch] = counts.get(ch, 0) + 1\nreturn counts"
    return Spec(
        r.name("char_frequency", "count_chars", "letter_counts"),
        [s],
        doc,
        body,
        [(r.sentence(1, 3),) for _ in range(3)],
        1 + skip,
    )


@concept(S, "A set remembers what was already seen, so we can keep only the first occurrence of each item.")
def dedupe_chars(r: Rng) -> Spec:
    s = r.param("text")
    doc = r.choice(
        [
            f"Return {s} with repeated characters removed, keeping the first occurrence of each.",
            f"Remove every character of {s} that already appeared earlier in it.",
        ]
    )
    body = f"seen = set()\nout = []\nfor ch in {s}:\n    if ch not in seen:\n        seen.add(ch)\n        out.append(ch)\nreturn ''.join(out)"
    return Spec(
        r.name("dedupe_chars", "unique_chars", "remove_repeats"),
        [s],
        doc,
        body,
        [(r.word() + r.word(),) for _ in range(4)],
        2,
    )


@concept(S, "ord() and chr() convert between characters and their code points, so letters can be shifted.")
def caesar_shift(r: Rng) -> Spec:
    s, k = r.param("text"), r.choice(["shift", "key", "offset"])
    doc = (
        f"Shift every lowercase letter of {s} forward by {k} places in the alphabet, wrapping from z "
        "to a; leave other characters unchanged."
    )
    body = (
        f"out = []\nfor ch in {s}:\n    if 'a' <= ch <= 'z':\n        out.append(chr((ord(ch) - ord('a') + {k}) % 26 + ord('a')))\n"
        f"    else:\n        out.append(ch)\nreturn ''.join(out)"
    )
    inputs = [(r.sentence(1, 3), r.randint(0, 30)) for _ in range(4)]
    return Spec(r.name("caesar_shift", "rotate_letters", "encode_caesar"), [s, k], doc, body, inputs, 2)


@concept(S, "max() with a key function picks the item that scores highest, e.g. key=len for the longest word.")
def longest_word(r: Rng) -> Spec:
    s = r.param("text")
    doc = (
        f"Return the longest word in {s} (words are separated by spaces); if several are equally long, "
        "return the first of them. Return an empty string when there are no words."
    )
    body = f"words = {s}.split()\nif not words:\n    return ''\nreturn max(words, key=len)"
    return Spec(
        r.name("longest_word", "find_longest_word", "biggest_word"),
        [s],
        doc,
        body,
        [(r.sentence(),) for _ in range(4)] + [("",)],
    )


@concept(S, "str.count counts non-overlapping occurrences; a sliding index finds overlapping ones too.")
def count_overlapping(r: Rng) -> Spec:
    s, sub = r.param("text"), r.choice(["sub", "pattern", "needle"])
    doc = f"Count how many times {sub} occurs in {s}, counting overlapping occurrences."
    body = (
        f"if not {sub}:\n    return 0\ncount = 0\nfor i in range(len({s}) - len({sub}) + 1):\n"
        f"    if {s}[i:i + len({sub})] == {sub}:\n        count += 1\nreturn count"
    )
    inputs = [("aaaa", "aa"), ("abababa", "aba"), (r.word(), r.choice("aeiou")), (r.sentence(), "an")]
    return Spec(r.name("count_overlapping", "occurrences", "count_matches"), [s, sub], doc, body, inputs, 2)


@concept(S, "Run-length encoding replaces a run of equal characters with the character and its count.")
def run_length_encode(r: Rng) -> Spec:
    s = r.param("text")
    doc = (
        f"Return the run-length encoding of {s}: each run of identical characters becomes the character "
        "followed by the length of the run, e.g. 'aaab' -> 'a3b1'."
    )
    body = (
        f"if not {s}:\n    return ''\nout = []\nprev, run = {s}[0], 1\nfor ch in {s}[1:]:\n    if ch == prev:\n"
        f"        run += 1\n    else:\n        out.append(prev + str(run))\n        prev, run = ch, 1\n"
        f"out.append(prev + str(run))\nreturn ''.join(out)"
    )
    inputs = [("".join(r.choice("ab") * r.randint(1, 4) for _ in range(r.randint(1, 4))),) for _ in range(4)]
    return Spec(r.name("run_length_encode", "rle", "compress_runs"), [s], doc, body, inputs + [("",)], 3)


@concept(S, "Two words are anagrams when their sorted letters are equal.")
def is_anagram(r: Rng) -> Spec:
    a, b = r.sample(["first", "second", "a", "b", "word1", "word2", "left", "right"], 2)
    doc = f"Return True if {a} and {b} are anagrams of each other (same letters, ignoring case)."
    body = f"return sorted({a}.lower()) == sorted({b}.lower())"
    w = r.word()
    inputs = [(w, "".join(r.sample(w, len(w)))), (r.word(), r.word()), ("Listen", "Silent"), (w, w + "s")]
    return Spec(r.name("is_anagram", "are_anagrams", "same_letters"), [a, b], doc, body, inputs)


@concept(S, "Indexing a string gives one character; word[0] is the first letter of a word.")
def acronym(r: Rng) -> Spec:
    s = r.param("text")
    doc = f"Build an acronym from {s}: the upper-cased first letter of every word."
    body = f"return ''.join(word[0].upper() for word in {s}.split())"
    return Spec(r.name("acronym", "make_acronym", "initials"), [s], doc, body, [(r.sentence(2, 5),) for _ in range(4)])


@concept(S, "str.replace returns a copy with every occurrence of a substring replaced.")
def censor_word(r: Rng) -> Spec:
    s, w = r.param("text"), r.choice(["word", "banned", "target"])
    mask = r.choice(["*", "#", "-"])
    doc = f"Return {s} with every occurrence of {w} replaced by as many '{mask}' characters as it has letters."
    body = f"return {s}.replace({w}, '{mask}' * len({w}))"
    inputs = []
    for _ in range(3):
        words = r.words(2, 5)
        inputs.append((" ".join(words), r.choice(words)))
    return Spec(r.name("censor_word", "mask_word", "hide_word"), [s, w], doc, body, inputs)


@concept(S, "Characters have predicates such as isdigit(), isalpha() and isupper() for classifying them.")
def split_letters_digits(r: Rng) -> Spec:
    s = r.param("text")
    doc = f"Return a tuple (letters, digits): the letters of {s} and the digits of {s}, each as a string, in order."
    body = f"letters = ''.join(ch for ch in {s} if ch.isalpha())\ndigits = ''.join(ch for ch in {s} if ch.isdigit())\nreturn letters, digits"
    inputs = [("".join(r.choice([r.word()[:2], str(r.randint(0, 99))]) for _ in range(4)),) for _ in range(4)]
    return Spec(r.name("split_letters_digits", "letters_and_digits", "separate_chars"), [s], doc, body, inputs)
