"""Answer extraction from free-form model responses.

Every function here is linear in the length of the text (no backtracking-prone regexes), so a
1 MB adversarial response costs milliseconds, never a hang.

Extractors, tried in this order by :func:`extract_answer`:

1. ``boxed``: the content of the last ``\\boxed{...}`` or ``\\fbox{...}`` (nested braces respected);
2. ``answer_tag``: the content of the last ``<answer>...</answer>``;
3. ``answer_is``: the text after the last "the answer is" / "final answer:" (to the end of line);
4. ``gsm8k``: the text after the last ``#### `` (GSM8K's gold format);
5. ``last_number``: the last number in the text (only when ``strict=False``).

Two more extractors serve the MATH-style envs (:data:`MATH_ORDER`, the default of
:func:`oat_env.grading.grade_batch`):

* ``boxes``: like ``boxed``, but several boxes written one after the other (``\\boxed{1}, \\boxed{2}``,
  ``\\boxed{1} and \\boxed{2}``) are one answer, comma-separated (``1, 2``: a set of answers);
* ``freeform``: math-verify-style extraction from text with no answer tag
  (:mod:`oat_env.grading.freeform`): "final answer is $x$", "answer: x", the last math span or number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

BOX_COMMANDS = ("\\boxed", "\\fbox")
# How many earlier \boxed occurrences to try when the last one is unbalanced (bounded work).
_MAX_BOX_RETRIES = 8
# A boxed answer longer than this is garbage; capping the brace scan keeps adversarial inputs
# (a megabyte of "{") cheap.
MAX_BOXED_CHARS = 20_000
# Integers longer than this are treated as unparsable: Python refuses to parse >4300 digits
# by default, and no arithmetic answer we grade is anywhere near this long.
MAX_NUMBER_DIGITS = 100

_NUMBER_RE = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_ANSWER_IS_RE = re.compile(r"(?:answer is|answer:|answer =)", re.IGNORECASE)
_GSM8K_MARK = "####"


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``; ``None`` if unbalanced."""
    depth = 0
    for i in range(open_idx, min(len(text), open_idx + MAX_BOXED_CHARS)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``/``\\fbox{...}`` (or ``\\boxed 5``)."""
    end = len(text)
    for _ in range(_MAX_BOX_RETRIES):
        start, command = max((text.rfind(cmd, 0, end), cmd) for cmd in BOX_COMMANDS)
        if start < 0:
            return None
        after = start + len(command)
        if after < len(text) and text[after] == "{":
            close = _matching_brace(text, after)
            if close is not None:
                return text[after + 1 : close].strip()
        elif after < len(text) and text[after] == " ":
            # "\boxed 5" form: the token up to the next whitespace or "$".
            token = re.match(r" +([^\s$]+)", text[after : after + 200])
            if token:
                return token.group(1)
        end = start
    return None


# Text allowed between two boxes that form one answer: separators, "and"/"or", math delimiters, spacing.
_BOX_GAP_RE = re.compile(r"[\s,;$]*(?:(?:and|or|\\quad|\\qquad|\\text\{\s*(?:and|or)\s*\})[\s,;$]*)?")
_MAX_JOINED_BOXES = 10


def boxed_answers(text: str) -> str | None:
    """The last balanced ``\\boxed{}`` joined with the boxes right before it (``1, 2`` for
    ``\\boxed{1}\\boxed{2}``); a single box gives its content, as :func:`last_boxed`."""
    parts: list[str] = []
    end = len(text)
    start_of_next = len(text)
    for _ in range(_MAX_JOINED_BOXES):
        start = max(text.rfind(cmd, 0, end) for cmd in BOX_COMMANDS)
        if start < 0:
            break
        command = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
        after = start + len(command)
        close = _matching_brace(text, after) if text.startswith("{", after) else None
        if close is None:
            break
        gap = text[close + 1 : start_of_next]
        if parts and (len(gap) > 40 or not _BOX_GAP_RE.fullmatch(gap)):
            break
        parts.append(text[after + 1 : close].strip())
        start_of_next, end = start, start
    if len(parts) <= 1:
        return last_boxed(text)
    return ", ".join(reversed(parts))


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>`` pair."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    open_ = text.rfind("<answer>", 0, close)
    if open_ < 0:
        return None
    return text[open_ + len("<answer>") : close].strip()


def answer_is(text: str) -> str | None:
    """The rest of the line after the last "answer is" / "answer:" phrase, trailing period removed."""
    last = None
    for match in _ANSWER_IS_RE.finditer(text):
        last = match
    if last is None:
        return None
    rest = text[last.end() : last.end() + 1000]
    line = rest.split("\n", 1)[0].strip()
    line = line.lstrip(":= ").rstrip(".").strip("$ ").rstrip(".").strip()
    return line or None


def gsm8k_answer(text: str) -> str | None:
    """The text after the last ``####`` marker (GSM8K gold solutions end with ``#### 42``)."""
    idx = text.rfind(_GSM8K_MARK)
    if idx < 0:
        return None
    line = text[idx + len(_GSM8K_MARK) : idx + len(_GSM8K_MARK) + 1000].split("\n", 1)[0].strip()
    return line or None


def last_number(text: str) -> str | None:
    """The last number in ``text`` (``1,234``, ``-5``, ``3.25``; unicode minus accepted)."""
    last = None
    for match in _NUMBER_RE.finditer(text):
        last = match
    return None if last is None else last.group(0)


def after_think(text: str) -> str:
    """The text after the last ``</think>`` (a reasoning model's scratch work is not its answer);
    ``text`` itself when it has none."""
    cut = text.rfind("</think>")
    return text if cut < 0 else text[cut + len("</think>") :]


def _freeform(text: str) -> str | None:
    from oat_env.grading.freeform import freeform_answer

    return freeform_answer(text)


EXTRACTORS = {
    "boxed": last_boxed,
    "boxes": boxed_answers,
    "freeform": _freeform,
    "answer_tag": answer_tag,
    "answer_is": answer_is,
    "gsm8k": gsm8k_answer,
    "last_number": last_number,
}
STRICT_ORDER = ("boxed", "answer_tag", "answer_is", "gsm8k")
LENIENT_ORDER = (*STRICT_ORDER, "last_number")
# MATH-style answers: boxes first, then <answer> tags, GSM8K's "####", then math-verify-style free-form
# extraction (which replaces "answer is" and the unanchored last number: it reads "\\frac{10}{9}" whole).
MATH_ORDER = ("boxes", "answer_tag", "gsm8k", "freeform")
# Strict MATH grading with no template: only explicit answer tags count (reward shaping for format).
MATH_STRICT_ORDER = ("boxes", "answer_tag")


def math_order(strict: bool = False, order: Sequence[str] | None = None) -> tuple[str, ...]:
    """The extractor order of MATH-style grading (:func:`oat_env.grading.grade_batch`).

    ``order`` (a template's order, see ``oat_env.data.math_data.TEMPLATE_EXTRACTORS``) wins; with
    ``strict=True`` only its first extractor -- the format the template asks for -- counts. Without
    ``order``: :data:`MATH_ORDER`, or :data:`MATH_STRICT_ORDER` when strict.
    """
    if order is not None:
        order = tuple(order)
        if not order:
            raise ValueError("order must name at least one extractor")
        return order[:1] if strict else order
    return MATH_STRICT_ORDER if strict else MATH_ORDER


def extract_answer(text: str, *, strict: bool = False, order: Sequence[str] | None = None) -> str | None:
    """The answer in ``text`` by the first extractor that finds one; ``None`` if none does.

    Args:
        text: the model response.
        strict: if True, only explicit answer formats count (no last-number fallback).
        order: explicit extractor names to try (keys of :data:`EXTRACTORS`); overrides ``strict``.
    """
    if not isinstance(text, str):
        raise TypeError(f"response must be a str, got {type(text).__name__}")
    names = order if order is not None else (STRICT_ORDER if strict else LENIENT_ORDER)
    for name in names:
        try:
            extractor = EXTRACTORS[name]
        except KeyError:
            raise ValueError(f"unknown extractor {name!r}; choose from {sorted(EXTRACTORS)}") from None
        found = extractor(text)
        if found:
            return found
    return None


def parse_integer(answer: str | None) -> int | None:
    """Parse an extracted answer as an integer, or ``None``.

    Accepts thousands separators, a leading ``+``/``-``/unicode minus, surrounding ``$``/spaces,
    a trailing period and a zero fractional part (``"42.0"``). Rejects anything else, including
    numbers with more than :data:`MAX_NUMBER_DIGITS` digits.
    """
    if answer is None:
        return None
    s = answer.strip().strip("$").strip().rstrip(".").replace("−", "-").replace(",", "").replace(" ", "")
    if s.startswith("\\text{") and s.endswith("}"):
        s = s[6:-1]
    if not s:
        return None
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if "." in s:
        whole, _, frac = s.partition(".")
        if frac.strip("0"):
            return None
        s = whole
    if not s.isascii() or not s.isdigit() or len(s) > MAX_NUMBER_DIGITS:
        return None
    return sign * int(s)
