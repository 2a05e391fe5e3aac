"""Wire format of the remote oracle service (msgpack maps).

Requests (``POST /reward`` and ``POST /compare``)::

    {"id": <int|str>, "prompts": [str, ...], "responses": [str, ...], "references": [str|nil, ...] | nil}
    {"id": <int|str>, "prompts": [...], "responses_a": [...], "responses_b": [...], "references": ... }

Responses::

    {"id": <echoed>, "n": <items>, "scores" | "prob_a_wins": [float, ...],
     "info": {key: [value, ...]}, "metrics": {key: float}}
    {"id": <echoed>, "error": str, "status": int}          # one request rejected inside a batch

``id`` is echoed so the client can check that the answer it got belongs to the chunk it sent.
Everything in this module is pure Python + msgpack + numpy, shared by server and client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from oat_env.oracles.base import OracleResult

OPS = ("reward", "compare")
FIELDS = {"reward": ("prompts", "responses"), "compare": ("prompts", "responses_a", "responses_b")}
RESULT_FIELD = {"reward": "scores", "compare": "prob_a_wins"}


#: What ``oat-serve-oracle``'s front forwards in place of an empty POST body (Mosec would answer an
#: empty body 200 itself): the one byte msgpack never uses, so no valid request equals it.
EMPTY_BODY_MARKER = b"\xc1"


class RequestError(ValueError):
    """A request body is malformed (wrong type, missing field, mismatched lengths, too many items)."""


class BodyDecodeError(RequestError):
    """The request body is not msgpack at all."""


def pack(obj: Any) -> bytes:
    import msgpack

    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_request(op: str, request_id: int | str, columns: dict[str, Sequence[Any] | None]) -> bytes:
    """Encode one request for ``op``; ``columns`` holds the op's fields and ``references``."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; expected one of {OPS}")
    body: dict[str, Any] = {"id": request_id}
    for name in FIELDS[op]:
        body[name] = list(columns[name])  # type: ignore[arg-type]
    refs = columns.get("references")
    body["references"] = None if refs is None else list(refs)
    return pack(body)


def decode_request(
    op: str, payload: bytes, max_items: int, max_item_bytes: int | None = None
) -> dict[str, Any]:
    """Parse and validate one request body; raise :class:`RequestError` naming the problem.

    ``max_items`` caps the items per request and ``max_item_bytes`` (if given) the UTF-8 size of
    each string (prompt, response, reference); both raise :class:`RequestError` (HTTP 422).
    """
    if not payload or payload == EMPTY_BODY_MARKER:
        raise BodyDecodeError("empty body: expected a msgpack map")
    try:
        body = unpack(payload)
    except Exception as err:  # msgpack raises several unrelated exception types
        # Only the exception type: msgpack messages can echo parts of the body.
        raise BodyDecodeError(f"body is not valid msgpack ({type(err).__name__})") from err
    if not isinstance(body, dict):
        raise RequestError(f"body must be a msgpack map, got {type(body).__name__}")
    fields = FIELDS[op]
    missing = [f for f in fields if f not in body]
    if missing:
        raise RequestError(
            f"{op} request is missing field(s) {missing}; expected {list(fields)} (+ references)"
        )
    unknown = set(body) - set(fields) - {"id", "references"}
    if unknown:
        raise RequestError(f"{op} request has unknown field(s) {sorted(unknown)}")
    n = None
    for name in fields:
        col = body[name]
        if not isinstance(col, list | tuple):
            raise RequestError(f"`{name}` must be an array of strings, got {type(col).__name__}")
        bad = next((i for i, x in enumerate(col) if not isinstance(x, str)), None)
        if bad is not None:
            raise RequestError(f"`{name}[{bad}]` must be a string, got {type(col[bad]).__name__}")
        if n is None:
            n = len(col)
        elif len(col) != n:
            raise RequestError(f"`{name}` has {len(col)} items, `{fields[0]}` has {n}")
    refs = body.get("references")
    if refs is not None:
        if not isinstance(refs, list | tuple) or len(refs) != n:
            raise RequestError(f"`references` must be nil or an array of {n} strings/nils")
        if any(r is not None and not isinstance(r, str) for r in refs):
            raise RequestError("`references` items must be strings or nil")
    if n == 0:
        raise RequestError("request has no items")
    if n > max_items:
        raise RequestError(f"request has {n} items, more than the server's limit of {max_items}")
    if max_item_bytes is not None:
        for name in (*fields, "references"):
            for i, x in enumerate(body.get(name) or ()):
                # len(str) <= UTF-8 size <= 4 * len(str): encode only when it can matter.
                if x is not None and 4 * len(x) > max_item_bytes and len(x.encode()) > max_item_bytes:
                    raise RequestError(
                        f"`{name}[{i}]` is {len(x.encode())} bytes, more than the server's "
                        f"per-item limit of {max_item_bytes} bytes"
                    )
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, int | str):
        raise RequestError(f"`id` must be an int or string, got {type(request_id).__name__}")
    out = {name: list(body[name]) for name in fields}
    out.update(op=op, id=request_id, n=n, references=None if refs is None else list(refs))
    return out


def _to_wire(arr: Any) -> list[Any]:
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        return arr.astype(np.float64).tolist()
    return arr.tolist()


def result_to_response(
    op: str, request_id: Any, result: OracleResult, start: int, stop: int
) -> dict[str, Any]:
    """Slice ``[start, stop)`` of a concatenated batch result into one request's response map."""
    values = getattr(result, RESULT_FIELD[op])
    return {
        "id": request_id,
        "n": stop - start,
        RESULT_FIELD[op]: _to_wire(np.asarray(values)[start:stop]),
        "info": {k: _to_wire(np.asarray(v)[start:stop]) for k, v in result.info.items()},
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def response_to_result(op: str, body: dict[str, Any], expected_id: Any, expected_n: int) -> OracleResult:
    """Check a response against its request (id, item count) and convert it to an OracleResult."""
    if not isinstance(body, dict):
        raise ValueError(f"response must be a map, got {type(body).__name__}")
    if body.get("id") != expected_id:
        raise ValueError(f"response id {body.get('id')!r} does not match request id {expected_id!r}")
    values = body.get(RESULT_FIELD[op])
    if values is None or len(values) != expected_n or body.get("n") != expected_n:
        raise ValueError(f"response carries {body.get('n')} items, request had {expected_n}")
    info = {k: np.asarray(v) for k, v in (body.get("info") or {}).items()}
    return OracleResult(
        **{RESULT_FIELD[op]: np.asarray(values, dtype=np.float64)},
        info=info,
        metrics=dict(body.get("metrics") or {}),
    )
