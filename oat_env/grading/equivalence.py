"""Math answer equivalence: a fast string/number path, then math-verify in a worker pool.

Grading one ``(prediction, gold)`` pair:

1. extract the predicted answer from the response (:func:`oat_env.grading.extract.extract_answer`)
   and the gold answer from the gold text (a bare answer, or a solution ending in ``\\boxed{}`` /
   ``#### N``);
2. :func:`fast_equal` decides cheap cases exactly: canonical strings equal, plain numbers equal or
   clearly different, closed forms ``c*sqrt(r)*pi^k`` (:mod:`oat_env.grading.exact`) equal or clearly
   different, tuples/intervals/sets element by element, matrices equal element by element;
3. undecided pairs go to :func:`symbolic_equal` in a :class:`~oat_env.grading.pool.GradingPool`
   worker with a hard timeout (once per distinct pair in a batch; verdicts are remembered in a
   bounded LRU cache, :data:`VERDICT_CACHE`); a timeout, crash or parse failure grades as wrong.

Safety: :func:`symbolic_equal` only ever hands math-verify a ``\\boxed{...}`` LaTeX string with the
LaTeX extractor (no ``ExprExtractionConfig``, whose parser is sympy's ``parse_expr``, i.e. Python
``eval``), and each worker additionally replaces sympy's ``parse_expr`` with a guard that refuses
any string that is not plain arithmetic over whitelisted names. A response like
``__import__('os').system(...)`` is therefore graded wrong and executes nothing.

Verdicts agree with ``math_verify.verify(parse(gold), parse(pred))`` on standard answer forms;
math-verify's numeric tolerance (``float_rounding=6`` decimal places when a decimal is involved)
is respected by the fast path, which only calls two numbers different when they differ by more
than that tolerance could hide.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from oat_env.grading.cache import VerdictCache
from oat_env.grading.exact import Surd, clearly_apart, parse_surd
from oat_env.grading.extract import after_think, boxed_answers, extract_answer, gsm8k_answer, math_order
from oat_env.grading.normalize import has_percent, is_integer_literal, normalize_answer, parse_number
from oat_env.grading.poly import parse_polynomial
from oat_env.grading.rewrite import rewrite_answer, split_top_level

# The worker-side code lives in oat_env.grading.symbolic; the pool task name and preload module stay
# "oat_env.grading.equivalence", so those names are re-exported here.
from oat_env.grading.symbolic import (  # noqa: F401
    MAX_SYMBOLIC_CHARS,
    _check_safe_expression,
    _install_parse_guard,
    _parse_latex,
    symbolic_equal,
    worker_init,
)

# Answers longer than MAX_SYMBOLIC_CHARS, or nested deeper than this, are graded wrong without symbolic work.
MAX_NESTING = 40
DEFAULT_TIMEOUT_S = 5.0
_SYMBOLIC_TASK = "oat_env.grading.equivalence:symbolic_equal"


@dataclass(frozen=True)
class GradeResult:
    """The verdict on one response.

    Attributes:
        correct: the extracted answer is equivalent to the gold answer.
        formatted: an answer could be extracted from the response.
        extracted_answer: the extracted answer string (``None`` if none).
        reason: how the verdict was reached: ``no_answer``, ``string_match``, ``numeric_match``,
            ``numeric_mismatch``, ``exact_match``, ``exact_mismatch``, ``polynomial_match``,
            ``polynomial_mismatch``, ``structure_match``,
            ``structure_mismatch``, ``symbolic_match``, ``symbolic_mismatch`` (also when taken from
            the verdict cache), ``too_long``, ``too_nested``, ``timeout``, ``error``.
        timed_out: the symbolic check hit the hard timeout (graded wrong).
    """

    correct: bool
    formatted: bool
    extracted_answer: str | None
    reason: str
    timed_out: bool = False


# ---------------------------------------------------------------------- gold answers
def gold_answer(gold: str) -> str:
    """The answer inside a gold string: ``\\boxed{}`` content, text after ``####``, else the string."""
    if not isinstance(gold, str):
        raise TypeError(f"gold answer must be a str, got {type(gold).__name__}")
    # Boxes read as in a prediction (boxed_answers): "\\boxed{1} and \\boxed{2}" is the set "1, 2" on both sides.
    found = boxed_answers(gold) if "\\boxed" in gold or "\\fbox" in gold else None
    if found is None and "####" in gold:
        found = gsm8k_answer(gold)
    answer = (found if found is not None else gold).strip()
    if not answer:
        raise ValueError(f"empty gold answer in {gold[:80]!r}")
    return answer


# ---------------------------------------------------------------------- fast path
def _nesting_depth(s: str) -> int:
    depth = best = 0
    for ch in s:
        if ch in "{([":
            depth += 1
            best = max(best, depth)
        elif ch in "})]":
            depth -= 1
    return best


def _never_negative(s: str) -> bool:
    """True if no prefix of ``s`` closes more brackets than it opens (``1)+(2`` is not one unit)."""
    depth = 0
    for ch in s:
        depth += (ch in "{([") - (ch in "})]")
        if depth < 0:
            return False
    return True


def _numbers_differ(a: Fraction, b: Fraction, a_text: str, b_text: str) -> bool:
    """True iff math-verify would certainly call these two numbers different.

    Integers compare exactly. If a decimal is involved math-verify rounds both to 6 decimal places
    (and uses 15 significant digits), so only a gap that rounding cannot close counts.
    """
    if is_integer_literal(a_text) and is_integer_literal(b_text):
        return a != b
    if max(abs(a), abs(b)) > 10**12:
        return False
    return abs(a - b) > Fraction(2, 10**6)


_MATRIX_RE = re.compile(r"^\\begin\{([pbvBV]?matrix)\}(.*)\\end\{\1\}$", re.DOTALL)


def _structure(s: str) -> tuple[str, list[str]] | None:
    """``(kind, elements)`` for a tuple/interval/set/matrix in canonical form, else ``None``."""
    m = _MATRIX_RE.match(s)
    if m:
        rows = [r for r in m.group(2).split("\\\\") if r]
        cells = [c for row in rows for c in row.split("&")]
        return f"{m.group(1)}{len(rows)}x{len(cells) // max(1, len(rows))}", cells
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", sorted(split_top_level(s[2:-2]))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
        parts = split_top_level(inner)
        if len(parts) >= 2 and _never_negative(inner):
            return s[0] + s[-1], parts
    return None


# Answers carrying units, percentages or degrees are never decided by the exact-value rules:
# math-verify reads them in its own ways (50\% vs 0.5, 45^\circ vs 45).
_MAYBE_POLY_RE = re.compile(r"[a-df-hj-z]")
_NOT_PLAIN_RE = re.compile(r"%|percent|\\circ|°|\\degree|\\text|\\math|\\mbox|\\operatorname", re.IGNORECASE)


_INFINITY = {"\\infty": 1, "+\\infty": 1, "-\\infty": -1}


def _exact_value(canonical: str, allow_infinity: bool = False) -> Surd | int | None:
    """Exact value of a canonical element for the structure rules: a :class:`Surd`, ``+1``/``-1``
    for ``+-infinity`` (interval endpoints only), or ``None`` (undecided here)."""
    if allow_infinity and canonical in _INFINITY:
        return _INFINITY[canonical]
    value = parse_surd(canonical)
    return None if value is None or value.rational_root else value


def _apart(x: Surd | int, y: Surd | int) -> bool:
    """Certainly different values (an infinity differs from every finite number)."""
    if isinstance(x, int) or isinstance(y, int):
        return x != y
    return clearly_apart(x, y)


def _ordered(values: list) -> bool:
    """Two certainly increasing endpoints (so the brackets parse as an interval)."""
    if len(values) != 2 or not _apart(values[0], values[1]):
        return False
    lo, hi = values
    if isinstance(lo, int) or isinstance(hi, int):
        return not (isinstance(lo, int) and lo == 1) and not (isinstance(hi, int) and hi == -1)
    return lo.approx() < hi.approx()


def _bracket_kind(kind: str, values: list) -> str:
    """Bracket pair with infinite endpoints counted as open (sympy opens ``[-oo, 0]`` itself)."""
    left = "(" if isinstance(values[0], int) else kind[0]
    right = ")" if isinstance(values[-1], int) else kind[-1]
    return left + right


def _polynomial_verdict(p: str, g: str) -> tuple[bool | None, str]:
    """Expanded polynomials with rational coefficients (:mod:`oat_env.grading.poly`)."""
    if not _MAYBE_POLY_RE.search(p) or not _MAYBE_POLY_RE.search(g):
        return None, ""
    pp, pg = parse_polynomial(p), parse_polynomial(g)
    if pp is None or pg is None:
        return None, ""
    return (True, "polynomial_match") if pp == pg else (False, "polynomial_mismatch")


def _exact_verdict(p: str, g: str, a: Fraction | None, b: Fraction | None) -> tuple[bool | None, str]:
    """Closed forms ``c*sqrt(r)*pi^k`` (see :mod:`oat_env.grading.exact`), possibly against a decimal."""
    sp, sg = parse_surd(p), parse_surd(g)
    if sp is not None and sg is not None:
        # \sqrt{4} vs 2 stays on the symbolic path (tests/test_math_oracles.py counts it there).
        if sp.rational_root or sg.rational_root:
            return None, ""
        if sp.key == sg.key:
            return True, "exact_match"
        return (False, "exact_mismatch") if clearly_apart(sp, sg) else (None, "")
    if a is not None and sg is not None:
        decimal, exact, dec_text, exact_text = a, sg, p, g
    elif b is not None and sp is not None:
        decimal, exact, dec_text, exact_text = b, sp, g, p
    else:
        return None, ""
    if exact.rational_root:
        return None, ""
    if exact.is_rational:
        if decimal == exact.coef:
            return True, "numeric_match"
        if _numbers_differ(decimal, exact.coef, dec_text, exact_text):
            return False, "numeric_mismatch"
        return None, ""
    # A decimal vs an irrational: math-verify rounds both to 6 decimal places, so only a gap of more
    # than 1e-5 (well above the 1e-6 rounding can close) is a certain mismatch; equality is left to it.
    x = exact.approx()
    if x is None or max(abs(x), abs(decimal)) > 1e9:
        return None, ""
    return (False, "numeric_mismatch") if abs(float(decimal) - x) > 1e-5 else (None, "")


def _pairwise_apart(values: list[Surd]) -> bool:
    """True if any two values with different keys are clearly apart (so set matching is exact)."""
    distinct = list({v.key: v for v in values}.values())
    return all(clearly_apart(x, y) for i, x in enumerate(distinct) for y in distinct[i + 1:])


def _structure_verdict(p: str, g: str) -> tuple[bool | None, str]:
    """Tuples, intervals, sets and matrices compared element by element."""
    sp, sg = _structure(p), _structure(g)
    if not sp or not sg:
        return None, ""
    (kind_p, elems_p), (kind_g, elems_g) = sp, sg
    if kind_p == kind_g and len(elems_p) == len(elems_g):
        # Set elements come sorted, so equal sets written in another order still match.
        if all(fast_equal(x, y)[0] is True for x, y in zip(elems_p, elems_g, strict=True)):
            return True, "structure_match"
    brackets = kind_p[0] in "([" and kind_p[-1] in ")]" and kind_g[0] in "([" and kind_g[-1] in ")]"
    pairs = brackets and len(elems_p) == len(elems_g) == 2
    vp = [_exact_value(x, allow_infinity=pairs) for x in elems_p]
    vg = [_exact_value(y, allow_infinity=pairs) for y in elems_g]
    if any(v is None for v in vp + vg):
        return None, ""
    if kind_p == kind_g == "set":
        # math-verify's FiniteSets drop duplicates and ignore order: compare the sets of exact values.
        if not _pairwise_apart(vp + vg):
            return None, ""
        same = {v.key for v in vp} == {v.key for v in vg}
        return (True, "structure_match") if same else (False, "structure_mismatch")
    if kind_p == kind_g and "matrix" in kind_p and len(vp) == len(vg):
        # Same shape: math-verify compares matrices entry by entry.
        if any(_apart(x, y) for x, y in zip(vp, vg, strict=True)):
            return False, "structure_mismatch"
        return None, ""
    if not brackets:
        return None, ""
    # Two-element brackets parse as an interval when start < end and as a tuple otherwise; both are
    # compared element by element, and intervals also by the kind of each bracket.
    ordered_p, ordered_g = _ordered(vp), _ordered(vg)
    if ordered_p and ordered_g:
        kind_p, kind_g = _bracket_kind(kind_p, vp), _bracket_kind(kind_g, vg)
    elif any(isinstance(v, int) for v in vp + vg):
        return None, ""  # an infinity outside a proper interval: not decided here
    if kind_p != kind_g:
        if ordered_p and ordered_g:
            return False, "structure_mismatch"
        return None, ""
    if len(vp) != len(vg) or (kind_p not in ("()", "[]") and not (ordered_p and ordered_g)):
        return None, ""
    if any(_apart(x, y) for x, y in zip(vp, vg, strict=True)):
        return False, "structure_mismatch"
    return None, ""


_DECIMAL_LITERAL_RE = re.compile(r"^-?\d+\.(\d+)$")


def _round_half_away(x: Fraction, places: int) -> Fraction:
    """``x`` rounded to ``places`` decimals, halves away from zero (how a gold answer is written rounded)."""
    scaled = abs(x) * 10**places
    rounded = Fraction(math.floor(scaled + Fraction(1, 2)), 10**places)
    return rounded if x >= 0 else -rounded


def _gold_precision_verdict(a: Fraction, b: Fraction, p: str, g: str) -> tuple[bool, str] | None:
    """With ``gold_precision``: a decimal gold stating ``d >= 1`` decimals (``3.14``) is matched by a decimal
    prediction with more decimals that rounds to it (``3.14159``); integer golds and less precise predictions
    are never rounded (``3.4`` is not ``3``, ``3.1`` is not ``3.14``)."""
    gold_places = _DECIMAL_LITERAL_RE.match(g)
    pred_places = _DECIMAL_LITERAL_RE.match(p)
    if gold_places is None or pred_places is None or len(pred_places.group(1)) <= len(gold_places.group(1)):
        return None
    if _round_half_away(a, len(gold_places.group(1))) == b:
        return True, "precision_match"
    return False, "precision_mismatch"


def fast_equal(pred: str, gold: str, decimal_comma: bool = True,
               gold_precision: bool = False) -> tuple[bool | None, str]:
    """Decide ``pred ≡ gold`` cheaply: ``(True|False, reason)``, or ``(None, "")`` if undecided.

    Never evaluates anything. Decides: equal canonical strings; exact numbers (equal, or apart by
    more than math-verify's tolerance); closed forms ``c*sqrt(r)*pi^k`` (:mod:`oat_env.grading.exact`:
    fractions, mixed numbers, integer powers, square roots, multiples of pi) equal or clearly apart;
    a decimal clearly apart from such a form; tuples/intervals/sets element by element. Each rule
    only answers where math-verify's ``verify(parse(gold), parse(pred))`` is known to give the same
    verdict (checked against it in tests/test_grading_fastpath.py); anything else is undecided.
    Both answers are first put in one written form (:func:`oat_env.grading.rewrite.rewrite_answer`:
    calculator syntax, relations and intervals, assignment lists, matrix environments, choices).
    ``decimal_comma``: see :func:`oat_env.grading.normalize.normalize_answer`. ``gold_precision``: a decimal
    prediction that rounds to a decimal gold's stated precision matches it (:func:`_gold_precision_verdict`).
    """
    pred, gold = rewrite_answer(pred), rewrite_answer(gold)
    p, g = normalize_answer(pred, decimal_comma), normalize_answer(gold, decimal_comma)
    if not p or not g:
        return None, ""
    if p == g:
        return True, "string_match"
    a, b = parse_number(p), parse_number(g)
    if a is not None and b is not None:
        if a == b:
            return True, "numeric_match"
        if gold_precision and not (has_percent(pred) or has_percent(gold)):
            verdict = _gold_precision_verdict(a, b, p, g)
            if verdict is not None:
                return verdict
        # 50% vs 0.5 is a match for math-verify; leave percentages to it.
        if not (has_percent(pred) or has_percent(gold)) and _numbers_differ(a, b, p, g):
            return False, "numeric_mismatch"
        return None, ""
    plain = not (_NOT_PLAIN_RE.search(pred) or _NOT_PLAIN_RE.search(gold))
    if plain:
        for rule in (_exact_verdict, _polynomial_verdict, _structure_verdict):
            verdict = rule(p, g, a, b) if rule is _exact_verdict else rule(p, g)
            if verdict[0] is not None:
                return verdict
        return None, ""
    sp, sg = _structure(p), _structure(g)
    if sp and sg and sp[0] == sg[0] and len(sp[1]) == len(sg[1]):
        if all(fast_equal(x, y)[0] is True for x, y in zip(sp[1], sg[1], strict=True)):
            return True, "structure_match"
    return None, ""


# ---------------------------------------------------------------------- symbolic path (parent side)
def _for_symbolic(answer: str, decimal_comma: bool) -> str:
    """The form of an answer math-verify is given: rewritten, with a plain decimal-comma number or a
    number with a unit reduced to its canonical number (math-verify would read ``1000,99`` as a list)."""
    rewritten = rewrite_answer(answer)
    if has_percent(rewritten):
        return rewritten  # math-verify's own reading of percentages (50% is 0.5 and 50)
    canonical = normalize_answer(rewritten, decimal_comma)
    if canonical and parse_number(canonical) is not None:
        return canonical
    return rewritten


# ---------------------------------------------------------------------- batched API
# Symbolic verdicts already computed in this process, keyed by (answer, gold, symmetric).
VERDICT_CACHE = VerdictCache()


def clear_verdict_cache() -> None:
    """Forget all cached symbolic verdicts (e.g. between benchmark runs)."""
    VERDICT_CACHE.clear()


def grade_batch(
    predictions: Sequence[str],
    golds: Sequence[str],
    *,
    strict: bool = False,
    order: Sequence[str] | None = None,
    symmetric: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pool=None,
    cache: VerdictCache | None = VERDICT_CACHE,
    decimal_comma: bool = True,
    gold_precision: bool = False,
) -> list[GradeResult]:
    """Grade ``predictions[i]`` (model responses) against ``golds[i]`` (gold answers or solutions).

    Args:
        predictions: model responses; the answer is extracted with ``strict``/``order``
            (:func:`oat_env.grading.extract.math_order`).
        golds: gold answers (``"\\frac{1}{2}"``) or gold solutions ending in ``\\boxed{}``/``#### N``.
        strict: only the template's format counts: the first extractor of ``order``, or only
            ``\\boxed{}``/``<answer>`` without ``order`` (no free-form extraction).
        order: extractor order (keys of ``oat_env.grading.extract.EXTRACTORS``); default
            :data:`~oat_env.grading.extract.MATH_ORDER` (boxes, ``<answer>``, ``####``, free-form).
        symmetric: accept if either ``verify(gold, pred)`` or ``verify(pred, gold)`` holds.
        timeout_s: hard wall-clock limit per symbolic check.
        pool: a :class:`~oat_env.grading.pool.GradingPool`; default the process-wide one, which
            is started only if some pair needs the symbolic check.
        cache: where symbolic verdicts are remembered across calls (default: the process-wide
            :data:`VERDICT_CACHE`; ``None`` disables it). Timeouts and errors are never cached.
        decimal_comma: read unambiguous decimal commas (``0,111``, ``1000,99``, ``2,74 €``) as decimal
            points, as math-verify does (default); ``False``: a comma is only a separator.
        gold_precision: a decimal gold answer is taken at its stated precision: ``3.14159`` matches a gold
            of ``3.14`` (it rounds to it, halves away from zero); integer golds are never rounded to. Off by
            default, as in math-verify (which compares at 6 decimals); on for data whose golds are stated
            rounded ("give your answer to two decimal places").

    Pairs the fast path cannot decide go to the pool once per distinct ``(answer, gold)`` in the
    batch (GRPO groups repeat answers), sorted by gold so that a worker's parse cache is reused.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"batch sizes differ: {len(predictions)} predictions, {len(golds)} golds")
    results: list[GradeResult | None] = [None] * len(predictions)
    names = math_order(strict, order)
    deferred: dict[tuple[str, str], list[int]] = {}  # (answer, gold) -> indices waiting for it
    for i, (prediction, gold) in enumerate(zip(predictions, golds, strict=True)):
        if not isinstance(prediction, str):
            raise TypeError(f"predictions[{i}] must be a str, got {type(prediction).__name__}")
        gold_text = gold_answer(gold)
        # Only the text after the last </think> is the answer, for every extractor (a box in the
        # scratch work is not); extract_answer itself keeps reading everything (oat/Arithmetic-v0).
        answer = extract_answer(after_think(prediction), order=names)
        if answer is None:
            results[i] = GradeResult(False, False, None, "no_answer")
            continue
        if (answer, gold_text) in deferred:
            deferred[(answer, gold_text)].append(i)
            continue
        verdict, reason = fast_equal(answer, gold_text, decimal_comma, gold_precision)
        if verdict is not None:
            results[i] = GradeResult(verdict, True, answer, reason)
        elif len(answer) > MAX_SYMBOLIC_CHARS:
            results[i] = GradeResult(False, True, answer, "too_long")
        elif _nesting_depth(answer) > MAX_NESTING:
            results[i] = GradeResult(False, True, answer, "too_nested")
        else:
            cached = cache.get((answer, gold_text, symmetric, decimal_comma)) if cache is not None else None
            if cached is not None:
                results[i] = GradeResult(cached, True, answer, "symbolic_match" if cached else "symbolic_mismatch")
            else:
                deferred[(answer, gold_text)] = [i]
    if deferred:
        if pool is None:
            from oat_env.grading.pool import default_pool

            pool = default_pool()
        keys = sorted(deferred, key=lambda k: (k[1], k[0]))
        # The worker sees the rewritten forms (calculator syntax as LaTeX, relations as intervals).
        tasks = [(_for_symbolic(answer, decimal_comma), _for_symbolic(gold_text, decimal_comma), symmetric)
                 for answer, gold_text in keys]
        outcomes = pool.run(_SYMBOLIC_TASK, tasks, timeout_s)
        for (answer, gold_text), outcome in zip(keys, outcomes, strict=True):
            if outcome.status == "ok":
                ok = bool(outcome.value)
                if cache is not None:
                    cache.put((answer, gold_text, symmetric, decimal_comma), ok)
                result = GradeResult(ok, True, answer, "symbolic_match" if ok else "symbolic_mismatch")
            else:
                timed_out = outcome.status == "timeout"
                result = GradeResult(False, True, answer, "timeout" if timed_out else "error", timed_out)
            for i in deferred[(answer, gold_text)]:
                results[i] = result
    return results  # type: ignore[return-value]


def grade(prediction: str, gold: str, **kwargs) -> GradeResult:
    """Grade a single response; see :func:`grade_batch` for the arguments."""
    return grade_batch([prediction], [gold], **kwargs)[0]
