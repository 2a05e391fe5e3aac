"""Answer-level rewrites applied to both sides before comparison: one written form per meaning.

Each rewrite is plain string work (bounded regexes, no evaluation) and only fires on the whole
answer, so it can never change the value of an answer it does not fully recognise:

* **plain-ASCII math** (calculator syntax, :func:`ascii_to_latex`): ``x^(1/5)`` -> ``x^{(1/5)}``,
  ``3x**2`` -> ``3x^{2}``, ``sqrt(x)`` -> ``\\sqrt{x}``, ``pi`` -> ``\\pi``, ``sin(x)`` -> ``\\sin(x)``,
  ``exp(x)`` -> ``e^{x}``, ``3(4)`` -> ``3\\cdot(4)``, ``2*x`` -> ``2\\cdot x``; only for answers with no
  backslash or brace (LaTeX answers keep LaTeX's own reading: ``2^10`` there is math-verify's);
* **relations**: ``!=``/``\\ne`` -> ``\\neq``, ``>=``/``\\geq`` -> ``\\ge``, ``<=``/``\\leq`` -> ``\\le``;
  ``x \\in S`` -> ``S``; an inequality (chain) in one variable -> its interval (``-2 \\le x \\le 7`` ->
  ``[-2,7]``, ``x > 3`` -> ``(3,\\infty)``);
* **lists of assignments**: ``x=-1, x=2`` / ``x=-1 \\text{ or } x=2`` -> ``-1,2`` (the solution set);
  ``x=1, y=-2`` (distinct variables) -> ``(1,-2)`` (the solution tuple, in the order written);
* **matrices**: ``bmatrix``, ``Bmatrix`` and ``[\\begin{array}{..}..\\end{array}]`` -> ``pmatrix``;
* **choices**: ``(C)``, ``\\text{(C)}``, ``\\textbf{C}`` -> ``C`` (a single capital letter A-E).
"""

from __future__ import annotations

import re

MAX_REWRITE_CHARS = 500

_FUNCS = ("sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "ln", "log", "exp")
_ASCII_RE = re.compile(r"[0-9A-Za-z+\-*/^()., =<>!|]+")
_TOKEN_RE = re.compile(r"\*\*|\d+(?:\.\d+)?|\.\d+|[A-Za-z]+|\s+|.")
_REL_RE = re.compile(r"!=|\\neq?\b|>=|\\geq?\b|<=|\\leq?\b|≤|≥|≠")
_REL_MAP = {
    "!=": "\\neq",
    "\\ne": "\\neq",
    "\\neq": "\\neq",
    "≠": "\\neq",
    ">=": "\\ge",
    "\\ge": "\\ge",
    "\\geq": "\\ge",
    "≥": "\\ge",
    "<=": "\\le",
    "\\le": "\\le",
    "\\leq": "\\le",
    "≤": "\\le",
}
_IN_RE = re.compile(r"^[a-zA-Z]\s*\\in\s*(.+)$")
# Relations are matched with "\\le"/"\\ge" turned into single characters, so values are simple runs.
_VALUE = r"[^<>≤≥=,]+"
_CMP = r"([<>≤≥])"
_CHAIN_RE = re.compile(rf"^({_VALUE}){_CMP}\s*([a-zA-Z])\s*{_CMP}({_VALUE})$")
_SINGLE_RE = re.compile(rf"^\s*([a-zA-Z])\s*{_CMP}({_VALUE})$")
_SINGLE_FLIP_RE = re.compile(rf"^({_VALUE}){_CMP}\s*([a-zA-Z])\s*$")
_ASSIGN_RE = re.compile(r"^\s*([a-zA-Z](?:_\{?\d\}?)?)\s*=\s*([^=<>]+?)\s*$")
_OR_RE = re.compile(r"\\text\{\s*(?:or|and)\s*\}|\\(?:quad|qquad)|\bor\b|\band\b|;")
_MATRIX_ENV_RE = re.compile(r"\\begin\{[bB]matrix\}(.*)\\end\{[bB]matrix\}", re.DOTALL)
_ARRAY_RE = re.compile(r"^\[?\s*\\begin\{array\}\{[^{}]*\}(.*)\\end\{array\}\s*\]?$", re.DOTALL)
_CHOICE_RE = re.compile(r"^\s*(?:\\text(?:bf)?\{\s*)?\(?\s*([A-E])\s*\)?(?:\s*\})?\s*$")


def split_top_level(s: str, seps: str = ",") -> list[str]:
    """``s`` split at the ``seps`` characters that are outside every bracket (``{}``, ``()``, ``[]``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        elif ch in seps and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _closing_paren(tokens: list[str], i: int) -> int:
    """Index of the ``)`` token closing the ``(`` token at ``i``, or -1."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += (tokens[j] == "(") - (tokens[j] == ")")
        if depth == 0:
            return j
    return -1


def ascii_to_latex(s: str) -> str | None:
    """LaTeX for a plain-ASCII math answer, or ``None`` if ``s`` is not one (see module docstring)."""
    if len(s) > MAX_REWRITE_CHARS or not _ASCII_RE.fullmatch(s):
        return None
    tokens = _TOKEN_RE.findall(s)
    known = {*_FUNCS, "pi", "inf", "infinity", "oo"}
    if any(t.isalpha() and len(t) > 2 and t.lower() not in known for t in tokens):
        return None  # prose ("(3 or more)"), not calculator syntax
    if not any(t in ("**", "^", "*", "(") or t.lower() in _FUNCS or t.lower() == "pi" for t in tokens):
        return None  # nothing calculator-specific: leave the answer to the LaTeX reading
    return _convert(tokens)


def _convert(tokens: list[str]) -> str | None:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        low = t.lower()
        if t in ("**", "^"):
            # An exponent: the next number, name, or parenthesised group, braced whole.
            j = i + 1
            while j < len(tokens) and tokens[j].isspace():
                j += 1
            if j >= len(tokens):
                return None
            if tokens[j] == "(":
                close = _closing_paren(tokens, j)
                if close < 0:
                    return None
                inner = _convert(tokens[j : close + 1])
                i = close + 1
            elif tokens[j] == "-" and j + 1 < len(tokens):
                inner, i = "-" + tokens[j + 1], j + 2
            else:
                inner, i = tokens[j], j + 1
            if inner is None:
                return None
            out.append("^{" + inner + "}")
            continue
        if low in _FUNCS and i + 1 < len(tokens) and tokens[i + 1] == "(":
            close = _closing_paren(tokens, i + 1)
            if close < 0:
                return None
            inner = _convert(tokens[i + 2 : close])
            if inner is None:
                return None
            if low == "sqrt":
                out.append("\\sqrt{" + inner + "}")
            elif low == "exp":
                out.append("e^{" + inner + "}")
            else:
                out.append("\\" + low + "\\left(" + inner + "\\right)")
            i = close + 1
            continue
        if low == "pi":
            out.append("\\pi ")
        elif low in ("inf", "infinity", "oo"):
            out.append("\\infty ")
        elif t == "*":
            out.append("\\cdot ")
        elif t == "(" and out and (out[-1][-1:].isdigit() or out[-1] == ")"):
            out.append("\\cdot(")  # "3(4)" and "(x-1)(x+1)" are products in calculator syntax
        elif t.isalpha() and len(t) > 1:
            out.append(" ".join(t) + " ")  # "ab" is a*b
        else:
            out.append(t)
        i += 1
    return "".join(out).strip()


def _interval(lo: str, lo_op: str, hi: str, hi_op: str) -> str:
    left = "(" if lo_op in "<>" or "infty" in lo else "["
    right = ")" if hi_op in "<>" or "infty" in hi else "]"
    return f"{left}{lo.strip()},{hi.strip()}{right}"


def _has_variable(value: str) -> bool:
    """A letter outside LaTeX commands: ``y < 2x+1`` relates two variables, it is no interval."""
    return bool(re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", value)))


def _relation_to_interval(s: str) -> str | None:
    s = s.replace("\\le ", "≤").replace("\\ge ", "≥")
    m = _CHAIN_RE.match(s)
    if m:
        a, op1, _, op2, b = m.groups()
        if _has_variable(a) or _has_variable(b):
            return None
        if op1 in "<≤" and op2 in "<≤":
            return _interval(a, op1, b, op2)
        if op1 in ">≥" and op2 in ">≥":
            return _interval(b, op2, a, op1)
        return None
    m = _SINGLE_RE.match(s)
    if m:
        _, op, v = m.groups()
    else:
        m = _SINGLE_FLIP_RE.match(s)
        if not m:
            return None
        v, op, _ = m.groups()
        op = {"<": ">", ">": "<", "≤": "≥", "≥": "≤"}[op]
    if not v.strip() or "infty" in v or not any(ch.isalnum() for ch in v) or _has_variable(v):
        return None
    if op in "<≤":
        return _interval("-\\infty", "<", v, op)
    return _interval(v, op, "\\infty", "<")


def _assignments(s: str) -> str | None:
    """``x=1, x=2`` -> ``1,2``; ``x=1, y=2`` -> ``(1,2)``; otherwise ``None``."""
    pieces = [p for chunk in split_top_level(_OR_RE.sub(",", s)) if (p := chunk.strip())]
    if len(pieces) < 2:
        return None
    names, values = [], []
    for piece in pieces:
        m = _ASSIGN_RE.match(piece)
        if not m:
            return None
        names.append(m.group(1))
        values.append(m.group(2))
    if len(set(names)) == 1:
        return ",".join(values)
    if len(set(names)) == len(names):
        return "(" + ",".join(values) + ")"
    return None


def rewrite_answer(answer: str) -> str:
    """The answer in its canonical written form (see module docstring); unchanged if nothing fires."""
    s = answer.strip()
    if not s or len(s) > MAX_REWRITE_CHARS:
        return answer
    s = s.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "").strip()
    while s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s[1:-1].strip()
    if "\\" not in s and "{" not in s:
        ascii_form = ascii_to_latex(s)
        if ascii_form is not None:
            s = ascii_form
    s = _REL_RE.sub(lambda m: _REL_MAP[m.group().rstrip()] + " ", s)
    choice = _CHOICE_RE.match(s)
    if choice:
        return choice.group(1)
    m = _IN_RE.match(s)
    if m:
        s = m.group(1).strip()
    interval = _relation_to_interval(s)
    if interval is not None:
        return interval
    listed = _assignments(s)
    if listed is not None:
        return listed
    m = _MATRIX_ENV_RE.fullmatch(s)
    if m:
        return "\\begin{pmatrix}" + m.group(1) + "\\end{pmatrix}"
    m = _ARRAY_RE.fullmatch(s)
    if m and "&" in m.group(1) or m and "\\\\" in m.group(1):
        return "\\begin{pmatrix}" + m.group(1) + "\\end{pmatrix}"
    return s
