"""Free-form answer extraction: the answer of a response with no ``\\boxed{}`` or ``<answer>`` tag.

This mirrors what math-verify's default ``parse`` (its LaTeX and expression extractors together)
accepts, in the same priority order, but with a linear-time scanner instead of backtracking
regexes and without parsing anything:

0. ``final answer is <X>. I hope`` (the Minerva / lm-eval-harness format);
1. ``final answer ... is <X>`` (at most 100 characters between the two);
2. ``answer: <X>`` (``<X>`` starting at most 50 characters after the colon);
3. ``answer ... <X>`` (``<X>`` starting at most 50 characters after the word);
4. the whole response when it is nothing but a short math expression (``1.2^2``, ``x = 5``);
5. the last ``<X>`` of the response.

``<X>`` is a math span -- ``$...$`` / ``\\(...\\)`` (one line), ``$$...$$`` / ``\\[...\\]`` (any
lines), a bare ``\\frac{a}{b}`` -- or a plain number / arithmetic expression (``1,000.99``,
``1 000``, ``.4``, ``10/9``, ``$50``, ``50%``) that stands on its own: preceded by the start, a
space or ``=``, never by a letter or a digit (``AZYUK2A`` has no answer). Among the candidates of the
best level the one ending last wins (math-verify's rule); up to five spans joined by ``,``/``and``/
``or`` (``$x=1$ and $x=2$``) are one answer, returned comma-separated.

Before scanning, Markdown emphasis (``**18**``) is dropped. A candidate followed by ``=`` is the value
after the chain's last ``=`` (``12 + 30 = 42`` states 42). Plain numbers joined by ``,``/``and`` (``1, 2``,
``5 and 6``) are one answer, a set, after an "answer" anchor or when they end the response. ``not 5``,
``5 to 6``, ``3 or more``, ``5 less than 7`` are hedged (never the bare number); ``3.14 to two decimal
places`` / ``12 more than Tom`` are the number.

Only the text after the last ``</think>`` is read (a reasoning model's scratch work is not its
answer), and only its last :data:`MAX_TAIL_CHARS` characters, so every call is linear and bounded.
"""

from __future__ import annotations

import bisect
import re

MAX_TAIL_CHARS = 20_000
MAX_SPAN_CHARS = 2_000
MAX_WHOLE_CHARS = 120
MAX_JOINED = 5

_OPENERS_RE = re.compile(r"\$\$|\\\[|\\\(|\$")
# A number: thousands groups (comma or space), a decimal part (point or comma), or a leading-dot decimal;
# then an optional percent sign or word. Groups of exactly 3 digits after a 1-3 digit head.
_NUMBER = r"[-−]?(?:[1-9]\d{0,2}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)"
_PERCENT = r"(?:\s*(?:\\?%|percent\b|pct\b))?"
_OPS = r"+\-−*/^()×÷"
# An arithmetic expression: starts with a digit (or "(" / "-"), holds at least one operator.
# Bounded possessive repeats: every start position costs O(1) work, whatever the text.
_EXPR = rf"[-−]?\(?[-−]?\d(?:[\d. ]{{0,30}}+[{_OPS}]){{1,12}}+[\d. {_OPS}]{{0,30}}+"
_CURRENCY = "$€£¥₹₽₩"
# Before a number: the start, a space, "=", "*", ":" ("Answer:42"), "(" / "[" ("[42]"), "~" (checked further in
# :func:`_plain_candidates`); then an optional currency sign, escaped or not ("\\$18").
_PLAIN_RE = re.compile(rf"(?:(?<=[\s=*:(\[~])|^)(?:\\?[{_CURRENCY}])?(?P<value>{_EXPR}|{_NUMBER}{_PERCENT})")
# A multiple-choice letter in brackets: "(C)".
_CHOICE_RE = re.compile(r"(?<![A-Za-z])\(([A-E])\)(?![A-Za-z])")
# Words after a number that change what it says: a scale multiplies it ("1 million"), a hedge makes it
# another answer ("3 or more", "7 is not the answer"); both stay part of the answer (see normalize.py).
_SCALE_WORDS = ("hundred", "thousand", "million", "billion", "trillion", "dozen")
_HEDGE_WORDS = ("or", "not", "than", "times", "squared", "cubed", "plus", "minus")
# Hedge words only in some contexts: "to" before a number ("5 to 6"; "to two decimal places" / "to the nearest
# dollar" are precision or unit trailers, dropped), "more" / "less" before "than <number>" or ending the clause
# ("3 more"; "12 more than Tom" is prose about the number).
_TO_NUMBER_RE = re.compile(r"[ \t]+[-−]?\$?\.?\d")
_THAN_NUMBER_RE = re.compile(r"[ \t]+than[ \t]+[-−]?\$?\.?\d|[ \t]*(?:[.;!?,)\n]|$)")
# "not 5": a number right after "not" is denied (a hedge, kept with the number).
_NOT_BEFORE_RE = re.compile(r"(?<![A-Za-z])not[ \t]+$", re.IGNORECASE)
# The rest of an equation chain after a candidate: "12 + 30 = 42" states 42.
_CHAIN_RE = re.compile(r"[ \t]*=[ \t]*")
# Markdown emphasis ("**18**", "__18__"): dropped unless between two operands ("2**3" is a power).
_EMPHASIS_RE = re.compile(r"\*\*+|__+")
# "is" alone is ordinary prose ("x = 5 is the solution"); "is not" / "isn't" deny the number.
_NEXT_WORD_RE = re.compile(r"[ \t]+(is[ \t]+not|isn't|[A-Za-z]+)")
_FRAC_RE = re.compile(r"-?\\[dt]?frac\{-?\d+(?:[.,]\d+)?\}\{-?\d+(?:[.,]\d+)?\}")
_JOIN_RE = re.compile(r"\s*(?:,?\s*and|,?\s*or|,)\s*")
_FINAL_IS_RE = re.compile(r"final answer", re.IGNORECASE)
_ANSWER_RE = re.compile(r"answer", re.IGNORECASE)
_IS_RE = re.compile(r"\s+is:?\s*")
_HOPE_RE = re.compile(r"\s*\.?\s?I hope")
# A whole response that is only math: digits, letters, operators, brackets, LaTeX commands.
_WHOLE_MATH_RE = re.compile(r"[\w\\{}()\[\]^_+\-*/=<>!.,|: ]+")
_SPACED_DIGITS_RE = re.compile(r"\d+(?: \d+)+")
_SPACED_THOUSANDS_RE = re.compile(r"\d{1,3}(?: \d{3})+")
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{2,}")
# Letter runs a math answer may contain (function names, constants, LaTeX commands without "\").
_MATH_WORDS = frozenset(
    "sqrt sin cos tan cot sec csc arcsin arccos arctan log ln exp pi infty inf oo frac dfrac tfrac cdot times le "
    "ge leq geq neq ne in cup cap mathbb abs".split()
)


class _Candidate:
    """One possible answer: where it starts and ends in the scanned text, and its content."""

    __slots__ = ("start", "end", "content", "plain", "anchored_only")

    def __init__(self, start: int, end: int, content: str, plain: bool = False):
        self.start, self.end, self.content = start, end, content
        self.plain = plain  # a plain number / expression with no words (may join a list)
        self.anchored_only = False  # a list of plain numbers inside prose: only after an "answer" anchor


def _find_close(text: str, closer: str, start: int, missing: set[str]) -> int:
    """Index of ``closer`` after ``start`` (within :data:`MAX_SPAN_CHARS`), or -1.

    ``missing`` remembers closers absent from the rest of the text, so a response full of unclosed
    ``\\(`` costs one scan, not one per opener.
    """
    if closer in missing:
        return -1
    close = text.find(closer, start, start + MAX_SPAN_CHARS)
    if close < 0 and text.find(closer, start) < 0:
        missing.add(closer)
    return close


def math_spans(text: str) -> list[_Candidate]:
    """Every ``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` span, left to right (linear scan)."""
    spans: list[_Candidate] = []
    missing: set[str] = set()
    pos = 0
    while True:
        m = _OPENERS_RE.search(text, pos)
        if m is None:
            return spans
        opener, start = m.group(), m.start()
        if start > 0 and text[start - 1] == "\\":  # an escaped \$ or \\[ is text, not math
            pos = m.end()
            continue
        closer = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}[opener]
        if opener == "$":
            close = start + 1
            while True:  # the next unescaped "$"
                close = _find_close(text, "$", close, missing)
                if close < 0 or text[close - 1] != "\\":
                    break
                close += 1
        else:
            close = _find_close(text, closer, m.end(), missing)
        content = text[m.end() : close] if close >= 0 else ""
        one_line = opener in ("$", "\\(")
        if (
            close < 0
            or (one_line and "\n" in content)
            or (opener == "$" and start > 0 and text[start - 1].isdigit())
        ):
            pos = m.end()
            continue
        if content.strip():
            spans.append(_Candidate(start, close + len(closer), content.strip()))
        pos = close + len(closer)


def _plain_candidates(text: str, spans: list[_Candidate]) -> list[_Candidate]:
    """Numbers, arithmetic expressions and bare ``\\frac{a}{b}`` outside math spans."""
    found: list[_Candidate] = []
    starts = [s.start for s in spans]
    for regex in (_PLAIN_RE, _FRAC_RE):
        for m in regex.finditer(text):
            group = "value" if regex is _PLAIN_RE else 0
            start, end = m.start(group), m.end(group)
            # A trailing operator is never part of the answer ("18*" of a stray emphasis mark).
            value = m.group(group).rstrip(" .+-−*/^×÷(" if regex is _PLAIN_RE else " .")
            if not value or _inside(spans, starts, start) or not _stands_alone(text, m.start()):
                continue
            # A number glued to a letter or digit is part of a word ("AZYUK2A", "x2"): not an answer.
            after = text[start + len(value) : start + len(value) + 1]
            if regex is _PLAIN_RE and after[:1].isalnum() and not _unit_follows(text, start + len(value)):
                continue
            end = start + len(value)
            head = m.start()
            if regex is _PLAIN_RE:
                end = _with_words(text, end)
                value = text[start:end]
                denied = _NOT_BEFORE_RE.search(text[max(0, head - 12) : head])
                if denied:  # "the answer is not 5": the denial stays with the number (never equals 5)
                    head -= len(denied.group())
                    value = text[head:end]
            found.append(_Candidate(head, end, value, plain=not any(ch.isalpha() for ch in value)))
    for m in _CHOICE_RE.finditer(text):
        if not _inside(spans, starts, m.start()):
            found.append(_Candidate(m.start(), m.end(), m.group()))
    return found


def _stands_alone(text: str, head: int) -> bool:
    """A number after "(" / "[" stands alone unless the bracket is glued to a word ("f(3)"); after ":"
    unless a digit precedes it ("3:4", "10:30")."""
    if head < 2:
        return True
    before, prev = text[head - 1], text[head - 2]
    if before in "([":
        return not prev.isalnum()
    if before == ":":
        return not prev.isdigit()
    return True


def _with_words(text: str, end: int) -> int:
    """End of a number's answer: past a scale word, or to the end of the clause after a hedge word."""
    m = _NEXT_WORD_RE.match(text, end, end + 40)
    if m is None:
        return end
    word = " ".join(m.group(1).lower().split())
    if word in _SCALE_WORDS:
        return m.end()
    if word == "to" and _TO_NUMBER_RE.match(text, m.end()):
        word = "or"  # "5 to 6": a range, another answer
    if word in ("more", "less") and _THAN_NUMBER_RE.match(text, m.end()):
        word = "or"  # "3 more", "5 less than 7"
    if word in _HEDGE_WORDS or word in ("is not", "isn't"):
        stop = re.search(r"[.\n;]|$", text[m.end() : m.end() + 60])
        return m.end() + stop.start()
    return end


def _unit_follows(text: str, index: int) -> bool:
    """``1,000.99m²`` / ``5cm``: a short unit glued to a number still leaves the number an answer."""
    word = re.match(r"[A-Za-z]{1,3}(?:²|³|\^?\d)?(?![A-Za-z\d])", text[index : index + 8])
    return word is not None and word.group().rstrip("²³^0123456789").lower() in _GLUED_UNITS


_GLUED_UNITS = frozenset("m cm mm km kg g mg l ml s h min ft in mi lb oz".split())


def _inside(spans: list[_Candidate], starts: list[int], index: int) -> bool:
    """True if ``index`` lies in one of ``spans`` (sorted, disjoint; ``starts`` their starts)."""
    i = bisect.bisect_right(starts, index) - 1
    return i >= 0 and index < spans[i].end


def _join_following(text: str, spans: list[_Candidate], first: int) -> _Candidate:
    """Span ``first`` plus up to :data:`MAX_JOINED` spans joined to it by ``,``/``and``/``or``."""
    head = spans[first]
    parts, end = [head.content], head.end
    for nxt in spans[first + 1 : first + 1 + MAX_JOINED]:
        gap = text[end : nxt.start]
        if len(gap) > 12 or not _JOIN_RE.fullmatch(gap):
            break
        parts.append(nxt.content)
        end = nxt.end
    return _Candidate(head.start, end, ", ".join(parts))


def _first_starting_in(cands: list[_Candidate], starts: list[int], lo: int, hi: int) -> _Candidate | None:
    """The candidate starting first in ``[lo, hi]`` (the lazy ``.{0,50}?`` of math-verify); ``cands``
    sorted by ``(start, -end)`` with ``starts`` their starts."""
    i = bisect.bisect_left(starts, lo)
    return cands[i] if i < len(cands) and cands[i].start <= hi else None


def _usable(content: str) -> bool:
    """A candidate worth grading: some digit, letter or LaTeX command, balanced braces."""
    if not any(ch.isalnum() for ch in content):
        return False
    depth = 0
    for ch in content:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _whole_math(text: str) -> str | None:
    """The response itself when it is a short one-line math expression with no prose words."""
    s = text.strip().rstrip(".").strip().removeprefix("=").strip()  # "= 18": the stated result
    if not s or len(s) > MAX_WHOLE_CHARS or "\n" in s or not _WHOLE_MATH_RE.fullmatch(s):
        return None
    # Digits split by spaces are one number only in 3-digit thousands groups ("1 000", never "1 2").
    if any(not _SPACED_THOUSANDS_RE.fullmatch(m.group()) for m in _SPACED_DIGITS_RE.finditer(s)):
        return None
    words = [w for w in _PROSE_WORD_RE.findall(s) if w.lower() not in _MATH_WORDS]
    # "ab+ac" is math; "3 or more" is prose. Two-letter runs count as prose only when spaced out as words.
    if any(len(w) > 2 for w in words) or any(re.search(rf"(?<![\w\\]){w}(?!\w)", s) for w in words):
        return None
    return s if any(ch.isdigit() or ch.isalpha() for ch in s) else None


def _drop_emphasis(text: str) -> str:
    """``**18**`` -> ``18``: Markdown bold / underline marks go, a power between operands (``2**3``) stays."""
    if "**" not in text and "__" not in text:
        return text

    def keep(m: re.Match) -> str:
        i, j = m.start(), m.end()
        operands = i > 0 and j < len(text) and (text[i - 1].isalnum() or text[i - 1] in ")}")
        return m.group() if operands and (text[j].isalnum() or text[j] in "({\\") else ""

    return _EMPHASIS_RE.sub(keep, text)


def _resolve_chains(text: str, cands: list[_Candidate], by_start: dict[int, _Candidate]) -> None:
    """``12 + 30 = 41``: a candidate followed by ``=`` states the value after the chain's last ``=``
    (the stated result is the answer, never the expression before it). Right to left: each link is
    resolved before the candidate pointing at it."""
    for c in reversed(cands):
        m = _CHAIN_RE.match(text, c.end)
        if m is None:
            continue
        nxt = by_start.get(m.end())
        if nxt is not None and nxt is not c:
            c.content, c.end, c.plain = nxt.content, nxt.end, nxt.plain


def _plain_lists(text: str, cands: list[_Candidate]) -> list[_Candidate]:
    """``1, 2`` / ``5 and 6``: plain numbers joined by ``,``/``and`` are one answer (a set). A list inside
    prose ("in 2020, 15 people") counts only after an "answer" anchor; one ending the response counts anywhere."""
    plain = [c for c in cands if c.plain]
    lists = []
    for i, head in enumerate(plain):
        parts, end = [head.content], head.end
        for nxt in plain[i + 1 : i + 1 + MAX_JOINED]:
            gap = text[end : nxt.start]
            if nxt.start < end or len(gap) > 12 or not _PLAIN_JOIN_RE.fullmatch(gap):
                break
            parts.append(nxt.content)
            end = nxt.end
        if len(parts) > 1:
            joined = _Candidate(head.start, end, ", ".join(parts), plain=True)
            joined.anchored_only = bool(text[end : end + 40].strip(" \t\n.!"))
            lists.append(joined)
    return lists


_PLAIN_JOIN_RE = re.compile(r"\s*(?:,?\s*and|,)\s+")


def freeform_answer(text: str) -> str | None:
    """The answer of a free-form response (see module docstring), or ``None``."""
    think = text.rfind("</think>")
    if think >= 0:
        text = text[think + len("</think>") :]
    text = _drop_emphasis(text[-MAX_TAIL_CHARS:])
    whole = _whole_math(text)
    spans = math_spans(text)
    joined = [_join_following(text, spans, i) for i in range(len(spans))]
    cands = [c for c in joined + _plain_candidates(text, spans) if _usable(c.content)]
    if not cands:
        return whole
    cands.sort(key=lambda c: (c.start, -c.end))
    by_start: dict[int, _Candidate] = {}
    for c in cands:
        by_start.setdefault(c.start, c)
    _resolve_chains(text, cands, by_start)
    cands.extend(_plain_lists(text, cands))
    cands.sort(key=lambda c: (c.start, -c.end))
    starts = [c.start for c in cands]
    by_start = {}
    for c in cands:
        by_start.setdefault(c.start, c)
    # Level 0 / 1: "final answer is X. I hope" / "final answer ... is X".
    hoped, anchored = [], []
    for m in _FINAL_IS_RE.finditer(text):
        window = text[m.end() : m.end() + 110]
        for is_match in _IS_RE.finditer(window):
            pos = m.end() + is_match.end()
            c = by_start.get(pos)
            if c is not None:
                anchored.append(c)
                if window[: is_match.start()].strip() == "" and _HOPE_RE.match(text, c.end):
                    hoped.append(c)
                break
    for level in (hoped, anchored):
        if level:
            return max(level, key=lambda c: (c.end, -c.start)).content
    # Level 2 / 3: "answer:" / "answer" then X within 50 characters.
    colon, plain = [], []
    for m in _ANSWER_RE.finditer(text):
        c = _first_starting_in(cands, starts, m.end(), m.end() + 51)
        if c is None:
            continue
        plain.append(c)
        if text.startswith(":", m.end()):
            colon.append(c)
    for level in (colon, plain):
        if level:
            return max(level, key=lambda c: (c.end, -c.start)).content
    if whole is not None:
        return whole
    return max((c for c in cands if not c.anchored_only), key=lambda c: (c.end, -c.start)).content
