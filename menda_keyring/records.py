"""Immutable value types that cost next to nothing to define.

A frozen dataclass takes about 0.35 ms to define, and the modules on the path of a
``keyring get`` define some twenty value types (wire messages, the flow's effects):
several milliseconds of every installer's start-up. A :class:`Record` subclass names
its fields in ``__slots__``, assigns them in its own typed ``__init__`` through
``_set``, and lists in ``_hidden`` the fields ``repr`` must not show (tokens, secrets).
Equality is by type and fields; instances cannot be changed.
"""

from __future__ import annotations

from typing import Any


class Record:
    __slots__ = ()
    #: Fields left out of ``repr`` (a token, a secret, an environment).
    _hidden: tuple[str, ...] = ()

    def _set(self, **fields: Any) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = type(self).__slots__
        return names

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self), *self._fields()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._names() if name not in self._hidden
        )
        return f"{type(self).__name__}({shown})"
