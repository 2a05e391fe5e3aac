"""Text spaces for LLM environments.

Gymnasium's :class:`gymnasium.spaces.Text` only accepts characters from a fixed charset
(alphanumerics by default), so real prompts and responses -- punctuation, newlines, LaTeX,
emoji, any language -- are rejected by ``contains``. :class:`TextSpace` accepts *any* Python
``str`` whose length lies in ``[min_length, max_length]``; :class:`TextPairSpace` is the
action space of dueling environments: a pair ``(response_a, response_b)``.

Batching follows Gymnasium's rule for custom spaces: ``batch_space(TextSpace(...), n)`` is a
``Tuple`` of ``n`` text spaces, so a vector env's observation is a tuple of ``n`` strings, and
``batch_space(TextPairSpace(...), n)`` is ``Tuple((Tuple(n texts), Tuple(n texts)))``: the
vector action of a dueling env is ``(responses_a, responses_b)``.

Shared memory (``gymnasium.vector.AsyncVectorEnv``, i.e. ``gym.make_vec(..., vectorization_mode=
"async")``, whose default ``shared_memory=True`` sends observations through shared memory): this
module registers :func:`~gymnasium.vector.utils.create_shared_memory`,
:func:`~gymnasium.vector.utils.read_from_shared_memory` and
:func:`~gymnasium.vector.utils.write_to_shared_memory` for :class:`TextSpace` and
:class:`ConversationSpace` (a :class:`TextPairSpace` is a ``Tuple`` and uses Gymnasium's own
``Tuple`` hooks over its two text spaces). Layout, per sub-env, in ``int32`` slots:

* :class:`TextSpace`: ``1 + max_length`` slots: the length in code points, then the code points
  (UTF-32; lone surrogates survive). Any ``str`` the space contains round-trips exactly, NUL
  characters included.
* :class:`ConversationSpace`: ``1 + max_messages * (2 + max_length)`` slots: the number of
  messages, then per message the index of its role in :data:`CHAT_ROLES`, the content length
  and ``max_length`` code points.

So a sub-env's observation costs ``4 * (1 + max_length)`` bytes (400 kB at the envs' default
``max_prompt_length=100_000``) or ``4 * (1 + max_messages * (2 + max_length))`` bytes; for
spaces with a huge ``max_length`` pass ``vector_kwargs={"shared_memory": False}`` (observations
are then pickled through the pipes). Writing a value the space does not contain raises
``ValueError``.

``read_from_shared_memory`` returns a *live view* (:class:`SharedTextBatch`,
:class:`SharedConversationBatch`): a read-only sequence of the ``n`` observations that decodes
the buffer on every access. ``AsyncVectorEnv`` reads once at construction and, with its default
``copy=True``, returns ``deepcopy`` of that view from every ``reset``/``step``, which is a plain
``tuple`` of the current observations (``str``, or tuples of ``{"role", "content"}`` dicts). With
``copy=False`` the view itself is returned; it changes at the next ``reset``/``step`` (take
``tuple(obs)`` to keep a snapshot). (Gymnasium's own hook for ``spaces.Text`` decodes once at
construction instead, so its async observations never change; the views avoid that.)
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, overload

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

# Characters ``sample()`` draws from: printable ASCII, whitespace and a few non-ASCII
# characters, so random samples exercise unicode handling in the code that consumes them.
DEFAULT_SAMPLE_CHARSET = (
    "".join(chr(c) for c in range(32, 127)) + "\n\t" + "éüßçñøåæœ€£¥°±×÷πΣλ中文日本語한국어😀🙂∑√∞"
)


class TextSpace(spaces.Space[str]):
    """Any unicode string with ``min_length <= len(x) <= max_length`` (length in code points).

    Args:
        max_length: maximum number of characters (inclusive).
        min_length: minimum number of characters (inclusive).
        sample_charset: characters used by :meth:`sample` only; ``contains`` accepts any character.
        sample_max_length: cap on the length of sampled strings (sampling a 100k-character string
            every call would make random agents needlessly slow); defaults to ``min(max_length, 64)``.
        seed: seed for the space's own random generator (used by :meth:`sample`).
    """

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        sample_charset: str = DEFAULT_SAMPLE_CHARSET,
        sample_max_length: int | None = None,
        seed: int | np.random.Generator | None = None,
    ):
        if not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool):
            raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
        if not isinstance(min_length, (int, np.integer)) or isinstance(min_length, bool):
            raise TypeError(f"min_length must be an int, got {type(min_length).__name__}")
        if min_length < 0:
            raise ValueError(f"min_length must be >= 0, got {min_length}")
        if max_length < min_length:
            raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
        if not sample_charset:
            raise ValueError("sample_charset must contain at least one character")
        self.max_length = int(max_length)
        self.min_length = int(min_length)
        self.sample_charset = sample_charset
        self._sample_chars = np.array(list(sample_charset), dtype=object)
        cap = min(self.max_length, 64) if sample_max_length is None else int(sample_max_length)
        self.sample_max_length = max(self.min_length, min(cap, self.max_length))
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of length uniform in ``[min_length, sample_max_length]``."""
        if mask is not None or probability is not None:
            raise NotImplementedError("TextSpace.sample does not support masks or probabilities")
        length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
        if length == 0:
            return ""
        idx = self.np_random.integers(0, len(self._sample_chars), size=length)
        return "".join(self._sample_chars[idx])

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def check(self, x: Any, what: str = "text") -> str:
        """Return ``x`` if it belongs to the space, else raise a ``TypeError``/``ValueError`` naming ``what``."""
        if not isinstance(x, str):
            raise TypeError(f"{what} must be a str, got {type(x).__name__}")
        if len(x) > self.max_length:
            raise ValueError(f"{what} has {len(x)} characters, more than max_length={self.max_length}")
        if len(x) < self.min_length:
            raise ValueError(f"{what} has {len(x)} characters, fewer than min_length={self.min_length}")
        return x

    def __repr__(self) -> str:
        return f"TextSpace(min_length={self.min_length}, max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, TextSpace)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

    def to_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)

    def from_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)


class TextPairSpace(spaces.Tuple):
    """A pair ``(response_a, response_b)`` of strings, the action of a dueling bandit.

    ``contains`` accepts a tuple or list of two strings (or a length-2 object array), each within
    the length bounds of :class:`TextSpace`.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None):
        super().__init__(
            (
                TextSpace(max_length, min_length=min_length),
                TextSpace(max_length, min_length=min_length),
            ),
            seed=seed,
        )
        self.max_length = int(max_length)
        self.min_length = int(min_length)

    def __repr__(self) -> str:
        return f"TextPairSpace(min_length={self.min_length}, max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, TextPairSpace)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )


CHAT_ROLES = ("system", "user", "assistant", "tool")


class ConversationSpace(spaces.Space[tuple]):
    """A conversation: a tuple of ``{"role": str, "content": str}`` messages.

    ``contains`` accepts tuples or lists of 1..``max_messages`` dicts whose role is one of
    :data:`CHAT_ROLES` and whose content is a string of at most ``max_length`` characters.
    """

    def __init__(self, max_length: int, max_messages: int = 64, seed: int | None = None):
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.content_space = TextSpace(max_length)
        self.max_messages = int(max_messages)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> int | list[int]:
        return [super().seed(seed), self.content_space.seed(seed)]

    def sample(self, mask: Any = None, probability: Any = None) -> tuple:
        """A one-message conversation from the user with random text."""
        if mask is not None or probability is not None:
            raise NotImplementedError("ConversationSpace.sample does not support masks or probabilities")
        return ({"role": "user", "content": self.content_space.sample()},)

    def contains(self, x: Any) -> bool:
        if not isinstance(x, (tuple, list)) or not 1 <= len(x) <= self.max_messages:
            return False
        return all(
            isinstance(m, dict)
            and m.get("role") in CHAT_ROLES
            and self.content_space.contains(m.get("content"))
            for m in x
        )

    def __repr__(self) -> str:
        return f"ConversationSpace(max_length={self.content_space.max_length}, max_messages={self.max_messages})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, ConversationSpace)
            and self.content_space == other.content_space
            and self.max_messages == other.max_messages
        )


# -- shared memory (gymnasium.vector.AsyncVectorEnv) -------------------------------------------------
def _encode(text: str) -> np.ndarray:
    """The code points of ``text`` as ``int32`` (lone surrogates kept)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int32)


def _decode(codes: np.ndarray) -> str:
    return codes.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _buffer(shared_memory: Any) -> np.ndarray:
    """The ``int32`` numpy view of a ``multiprocessing`` array (no copy)."""
    return np.frombuffer(shared_memory.get_obj(), dtype=np.int32)


def _slot_length(value: int, capacity: int, where: str) -> int:
    if not 0 <= value <= capacity:
        raise ValueError(f"corrupt shared memory: {where} length {value} is outside [0, {capacity}]")
    return int(value)


class _SharedBatch(Sequence):
    """A read-only, live view of ``n`` observations in a shared buffer (see the module docstring).

    ``copy.copy``/``copy.deepcopy`` and pickling give a plain ``tuple`` snapshot; ``==`` compares
    the current contents with any sequence.
    """

    def __init__(self, space: spaces.Space, shared_memory: Any, n: int, slots: int):
        self.space = space
        self.shared_memory = shared_memory
        self.n = int(n)
        self.slots = int(slots)

    def _item(self, data: np.ndarray) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> tuple: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(self.n)))
        i = int(index)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {index} out of range for {self.n} observations")
        return self._item(_buffer(self.shared_memory)[i * self.slots : (i + 1) * self.slots])

    def __iter__(self) -> Iterator[Any]:
        data = _buffer(self.shared_memory)
        for i in range(self.n):
            yield self._item(data[i * self.slots : (i + 1) * self.slots])

    def snapshot(self) -> tuple:
        """The current observations as a plain tuple."""
        return tuple(self)

    def __copy__(self) -> tuple:
        return self.snapshot()

    def __deepcopy__(self, memo: dict) -> tuple:
        return self.snapshot()

    def __reduce__(self) -> tuple:
        return (tuple, (self.snapshot(),))

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, (_SharedBatch, tuple, list)):
            return self.snapshot() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable contents

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.snapshot()!r})"


class SharedTextBatch(_SharedBatch):
    """Live view of ``n`` strings of a :class:`TextSpace` in shared memory (``1 + max_length`` slots each)."""

    def _item(self, data: np.ndarray) -> str:
        length = _slot_length(int(data[0]), self.space.max_length, "text")
        return _decode(data[1 : 1 + length])


class SharedConversationBatch(_SharedBatch):
    """Live view of ``n`` conversations of a :class:`ConversationSpace` in shared memory; each item is a
    tuple of ``{"role", "content"}`` dicts (``1 + max_messages * (2 + max_length)`` slots each)."""

    def _item(self, data: np.ndarray) -> tuple:
        space: ConversationSpace = self.space
        max_length = space.content_space.max_length
        count = _slot_length(int(data[0]), space.max_messages, "message count")
        messages = []
        for j in range(count):
            start = 1 + j * (2 + max_length)
            role = int(data[start])
            if not 0 <= role < len(CHAT_ROLES):
                raise ValueError(f"corrupt shared memory: role index {role} of message {j}")
            length = _slot_length(int(data[start + 1]), max_length, f"message {j} content")
            messages.append({"role": CHAT_ROLES[role], "content": _decode(data[start + 2 : start + 2 + length])})
        return tuple(messages)


def _text_slots(space: TextSpace) -> int:
    return 1 + space.max_length


def _conversation_slots(space: ConversationSpace) -> int:
    return 1 + space.max_messages * (2 + space.content_space.max_length)


@create_shared_memory.register(TextSpace)
def _create_text_shared_memory(space: TextSpace, n: int = 1, ctx: ModuleType = mp) -> Any:
    return ctx.Array(ctypes.c_int32, n * _text_slots(space))


@read_from_shared_memory.register(TextSpace)
def _read_text_from_shared_memory(space: TextSpace, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(space, shared_memory, n, _text_slots(space))


@write_to_shared_memory.register(TextSpace)
def _write_text_to_shared_memory(space: TextSpace, index: int, value: str, shared_memory: Any) -> None:
    if not space.contains(value):
        space.check(value, f"observation of sub-env {index}")  # raises, naming the problem
    slots = _text_slots(space)
    row = _buffer(shared_memory)[index * slots : (index + 1) * slots]
    codes = _encode(value)
    row[0] = len(codes)
    row[1 : 1 + len(codes)] = codes


@create_shared_memory.register(ConversationSpace)
def _create_conversation_shared_memory(space: ConversationSpace, n: int = 1, ctx: ModuleType = mp) -> Any:
    return ctx.Array(ctypes.c_int32, n * _conversation_slots(space))


@read_from_shared_memory.register(ConversationSpace)
def _read_conversation_from_shared_memory(
    space: ConversationSpace, shared_memory: Any, n: int = 1
) -> SharedConversationBatch:
    return SharedConversationBatch(space, shared_memory, n, _conversation_slots(space))


@write_to_shared_memory.register(ConversationSpace)
def _write_conversation_to_shared_memory(
    space: ConversationSpace, index: int, value: Sequence[dict], shared_memory: Any
) -> None:
    if not space.contains(value):
        raise ValueError(
            f"observation of sub-env {index} is not in {space}: expected 1..{space.max_messages} "
            f"{{'role', 'content'}} messages with roles in {CHAT_ROLES}, got {type(value).__name__}"
        )
    slots = _conversation_slots(space)
    max_length = space.content_space.max_length
    row = _buffer(shared_memory)[index * slots : (index + 1) * slots]
    row[0] = len(value)
    for j, message in enumerate(value):
        start = 1 + j * (2 + max_length)
        codes = _encode(message["content"])
        row[start] = CHAT_ROLES.index(message["role"])
        row[start + 1] = len(codes)
        row[start + 2 : start + 2 + len(codes)] = codes
