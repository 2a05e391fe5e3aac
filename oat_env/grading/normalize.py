"""Fast string normalisation and exact numeric parsing of extracted answers.

This is the cheap first stage of grading: most answers (GSM8K integers, simple fractions and
decimals, answers copied verbatim from a standard form) are decided here in microseconds, with no
sympy and no worker process.

:func:`normalize_answer` maps an answer to a canonical string: it drops ``$``, ``\\left``/``\\right``,
spacing commands, ``\\text{}`` units, degree marks, percent signs, trailing periods, rewrites
``\\dfrac``/``\\tfrac`` to ``\\frac`` and brace-less ``\\frac12``/``\\sqrt2``/``x^2`` to braced forms.

Words after a number (the whole answer being ``<number> <words>``) are a reward-hack surface:
``3 or more``, ``7 is not the answer``, ``1 million`` must not read as ``3``, ``7``, ``1``. Only two
kinds of trailing words are understood:

* known units (:data:`_UNIT_WORDS`, plus ``percent``; several may follow each other, and ``per`` may
  join two of them: ``5 square feet``, ``5 miles per hour``) are dropped, as they always were;
* one scale word (:data:`SCALE_WORDS`: ``hundred``, ``thousand``, ``million``, ``billion``,
  ``trillion`` (short scale) and ``dozen``), optionally followed by units, multiplies the number:
  ``1.5 million dollars`` becomes ``1500000``.

Any other trailing words stay in the canonical string, separated by single spaces
(``3 or more``), so the answer equals only the same words and never parses as a number: the fast
path leaves it undecided and math-verify decides.

:func:`parse_number` turns a canonical string into an exact :class:`fractions.Fraction` when it is a
plain number: integers (thousands separators allowed), decimals, ``a/b``, ``\\frac{a}{b}``,
scientific notation (``1.5e3``, ``1.5\\times10^{3}``). Everything here is linear-time regex or
string work with bounded lengths: no evaluation of any kind.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Longer answers are never normalised (the caller treats them as undecided or wrong).
MAX_NORMALIZE_CHARS = 2_000
# Exponents in scientific notation beyond this are not expanded to exact fractions (10**10**9 would
# take minutes): such numbers are left to the (timeout-guarded) symbolic stage.
MAX_EXPONENT = 400

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox|mathbf|operatorname)\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(r"\\[,;:! ]|\\q?quad|~")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_HALF_SHORT_RE = re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*(\w)")
_SUP_SHORT_RE = re.compile(r"\^\s*([0-9A-Za-z])")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# Units that may trail a number as plain words (GSM8K-style "18 dollars").
_UNIT_WORDS = (
    "dollars", "dollar", "cents", "cent", "units", "unit", "meters", "meter", "cm", "mm", "km", "kg",
    "g", "m", "inches", "inch", "feet", "foot", "ft", "miles", "mile", "hours", "hour", "minutes",
    "minute", "seconds", "second", "days", "day", "degrees", "degree", "sq", "square",
)
# A unit may carry a square/cube mark ("5 m^2", "5 m²", "5\\text{ cm}^3").
_TRAILING_UNIT_RE = re.compile(
    r"^([-+]?[\d.,/]+)\s*(?:" + "|".join(_UNIT_WORDS) + r")(?![A-Za-z])(?:\^\{?[23]\}?|[²³])?\.?$", re.IGNORECASE
)
_CURRENCY_RE = re.compile(r"[€£¥₹₽₩]|\\(?:euro|pounds|yen)\b")
# Decimal commas that cannot be thousands separators or a list: "0,111", "1000,99" (4+ digits first).
_DECIMAL_COMMA_RE = re.compile(r"^([-+]?(?:0|\d{4,})),(\d+)$")
# With a currency sign, a comma before 1-2 digits is a decimal comma ("2,74 €").
_MONEY_COMMA_RE = re.compile(r"^([-+]?\d+),(\d{1,2})$")
# Words that may follow a number and be dropped: the units above and "percent" (the "%" sign is dropped
# too; has_percent() still sees the raw answer). "per" may only join two of them ("miles per hour").
_TRAILER_UNITS = frozenset(_UNIT_WORDS) | {"percent"}
# Scale words multiply the number before them (short scale: a billion is 10**9). Only the singular,
# only one, and only right after the number ("2 dozen", "1.5 million dollars").
SCALE_WORDS = {
    "hundred": 10**2, "thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12, "dozen": 12,
}
# "<number> <words>" as the whole (already stripped) answer.
_NUMBER_WORDS_RE = re.compile(r"([-+]?[\d.,]+)\s+([a-zA-Z]+(?:\s+[a-zA-Z]+)*)")
# A number a scale word may multiply: an integer (thousands separators allowed) or a decimal.
_SCALABLE_RE = re.compile(r"([-+]?)(\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(?:\.(\d+))?")

_INT_RE = re.compile(r"[-+]?\d+")
_DEC_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)")
_SLASH_RE = re.compile(r"([-+]?\d+)/(\d+)")
_LATEX_FRAC_RE = re.compile(r"([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}")
_SCI_E_RE = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d+)")
_SCI_TIMES_RE = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot|\*|x)10\^\{?([-+]?\d+)\}?")


def has_percent(answer: str) -> bool:
    """True if the answer carries a percent sign or word (``50\\%``, ``50%``, ``50 percent``)."""
    return "%" in answer or "percent" in answer.lower()


def _unwrap_text(s: str) -> str:
    # \text{ cm} after a number is a unit and goes; a lone \text{yes} keeps its content.
    stripped = _TEXT_CMD_RE.sub(lambda m: " " + m.group(1) + " ", s)
    return stripped


def _all_units(words: list[str]) -> bool:
    """True if ``words`` (lowercase) are known units, ``per`` only between two of them."""
    return all(
        word in _TRAILER_UNITS or (word == "per" and 0 < i < len(words) - 1 and words[i + 1] != "per")
        for i, word in enumerate(words)
    )


def _scaled(number: str, scale: int) -> str | None:
    """``number * scale`` as a plain integer or decimal string (exact), or ``None`` if ``number`` is
    not a plain integer/decimal (``1,5``, ``1.2.3``: left as words rather than guessed at)."""
    m = _SCALABLE_RE.fullmatch(number)
    if not m:
        return None
    whole, fraction = m.group(2).replace(",", "") or "0", m.group(3) or ""
    value = int(whole + fraction) * scale  # the number times 10**len(fraction), exactly
    if value == 0:
        return "0"
    sign = "-" if m.group(1) == "-" else ""
    if not fraction:
        return f"{sign}{value}"
    digits = str(value).rjust(len(fraction) + 1, "0")
    # A "." is always inserted first, so stripping zeros only ever touches the fractional part.
    return sign + (digits[: -len(fraction)] + "." + digits[-len(fraction):]).rstrip("0").rstrip(".")


def _number_with_words(s: str) -> str | None:
    """Canonical form of a ``<number> <words>`` answer, or ``None`` if ``s`` is not one.

    Units are dropped, a scale word multiplies, and anything else keeps its words (single-spaced),
    so ``3 or more`` is never the number ``3`` (see the module docstring).
    """
    m = _NUMBER_WORDS_RE.fullmatch(s)
    if not m:
        return None
    number, words = m.group(1), m.group(2).split()
    lower = [word.lower() for word in words]
    if _all_units(lower):
        return number
    scale = SCALE_WORDS.get(lower[0])
    if scale is not None and _all_units(lower[1:]):
        scaled = _scaled(number, scale)
        if scaled is not None:
            return scaled
    if _THOUSANDS_RE.match(number):
        number = number.replace(",", "")
    # Case is kept: math-verify reads unknown words as symbols, and "P" is not "p" there.
    return number + " " + " ".join(words)


def normalize_answer(answer: str, decimal_comma: bool = True) -> str:
    """Canonical string form of an extracted answer (see module docstring); ``""`` if too long.

    ``decimal_comma``: read an unambiguous decimal comma as a decimal point (``0,111``, ``1000,99``,
    ``2,74 €``; math-verify's convention); ``1,234`` stays one thousand two hundred and thirty-four,
    and ``1,2`` stays a list.
    """
    if len(answer) > MAX_NORMALIZE_CHARS:
        return ""
    s = answer.strip()
    # A lone "$" is a currency sign ("2,74 $", "$5"); a pair is math delimiters ("$5,12$" is a list).
    money = bool(_CURRENCY_RE.search(s)) or "\\$" in s or s.count("$") == 1
    s = _CURRENCY_RE.sub("", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("−", "-").replace("\\$", "").replace("$", "")
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _SPACING_RE.sub(" ", s)
    s = _unwrap_text(s)
    s = s.strip().rstrip(".").strip()
    unit = _TRAILING_UNIT_RE.match(s)
    if unit:
        s = unit.group(1)
    # "5 square feet" -> "5", "2 dozen" -> "24", "3 or more" stays "3 or more" (words kept: done here).
    with_words = _number_with_words(s)
    if with_words is not None:
        if " " in with_words:
            return with_words
        s = with_words
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_SHORT_RE.sub(r"\\frac\1{\2}", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    # A brace-less superscript takes one character in LaTeX: e^2 -> e^{2}, 10^34 -> 10^{3}4.
    s = _SUP_SHORT_RE.sub(r"^{\1}", s)
    s = s.replace(" ", "")
    comma = (_DECIMAL_COMMA_RE.match(s) or (_MONEY_COMMA_RE.match(s) if money else None)) if decimal_comma else None
    if comma:
        s = f"{comma.group(1)}.{comma.group(2)}"
    elif _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    return s.rstrip(".")


def _pow10(exponent: int) -> Fraction | None:
    if abs(exponent) > MAX_EXPONENT:
        return None
    return Fraction(10) ** exponent


def parse_number(canonical: str) -> Fraction | None:
    """Exact value of a canonical plain-number string, or ``None`` if it is not one.

    ``canonical`` should come from :func:`normalize_answer`. Accepted forms: ``-12``, ``3.50``,
    ``.5``, ``7/2``, ``\\frac{7}{2}``, ``-\\frac{7}{2}``, ``1.5e-3``, ``2\\times10^{5}``.
    Division by zero and huge exponents give ``None``.
    """
    s = canonical
    if not s or len(s) > 200:
        return None
    if _INT_RE.fullmatch(s):
        return Fraction(int(s)) if len(s) <= 400 else None
    if _DEC_RE.fullmatch(s):
        return Fraction(s)
    for regex in (_SLASH_RE, _LATEX_FRAC_RE):
        m = regex.fullmatch(s)
        if m:
            groups = m.groups()
            sign = -1 if groups[0] == "-" and regex is _LATEX_FRAC_RE else 1
            num, den = (int(groups[-2]), int(groups[-1]))
            return None if den == 0 else sign * Fraction(num, den)
    for regex in (_SCI_E_RE, _SCI_TIMES_RE):
        m = regex.fullmatch(s)
        if m:
            scale = _pow10(int(m.group(2)))
            return None if scale is None else Fraction(m.group(1)) * scale
    return None


def is_integer_literal(canonical: str) -> bool:
    """True for a canonical string that is a plain integer (no decimal point, fraction or exponent)."""
    return bool(_INT_RE.fullmatch(canonical))
