"""The elements of a :class:`~asyncpager.parsers._xmlrun.UniformRun` made
into the run's list, by one comprehension per signature.

A uniform run holds the texts of exactly the members its first element
holds, in model order, so the dict of each element can be written
as one display (``{'Key': a0, 'LastModified': ..., 'Size': int(a3)}``) with
no test for absent members and no tags to cut off: about a third of the cost
of the general reader (measured on a 1,000-key ``ListObjectsV2`` page: 0.7
against 2.7 ms). The comprehension for a signature is written and compiled
on its first page, then kept with the compiled parser.

Values are converted by the expressions the compiler writes for the same
members (``text_value``), so both readers give the same values, in the same
key order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncpager.parsers._timestamps import _NAIVE_EPOCH, _fromisoformat
from asyncpager.parsers._xmlrun import ZULU, Signature, UniformRun

__all__ = ["UNIFORM_NAMESPACE", "UniformField", "UniformReader", "VALUE"]

#: Where a template takes the member's text.
VALUE = "\x00"

#: What the templates may use beyond the compiled parser's own names: the
#: parts of ``fast_timestamp``'s fast path.
UNIFORM_NAMESPACE: dict[str, Any] = {
    "_fromiso": _fromisoformat,
    "_naive_epoch": _NAIVE_EPOCH,
}


@dataclass(frozen=True)
class UniformField:
    """One member as the comprehension writes it."""

    name: str
    #: "scalar", "list" (one item) or "structure"
    kind: str
    #: The value of the member's text (of its one item, for a list).
    text: str = ""
    #: When not empty, the value of a ``ZULU`` text (a timestamp without
    #: its ``Z``) when ``_zulu``, the datetime of the epoch in the zone of a
    #: ``Z``, is not ``None``. Otherwise a ZULU text is read by ``text``,
    #: its ``Z`` put back.
    zulu: str = ""
    members: tuple[UniformField, ...] = ()


class UniformReader:
    """Reads the uniform runs of one compiled parser."""

    __slots__ = ("_fields", "_made", "_namespace", "_zulu_epoch")

    def __init__(
        self,
        fields: tuple[UniformField, ...],
        namespace: dict[str, Any],
        zulu_epoch: Callable[[], datetime | None],
    ) -> None:
        self._fields = fields
        self._namespace = namespace
        self._zulu_epoch = zulu_epoch
        self._made: dict[tuple[Signature, int], Callable[..., list[dict[str, Any]]]] = {}

    def read(self, run: UniformRun) -> list[dict[str, Any]]:
        key = (run.signature, run.references)
        function = self._made.get(key)
        if function is None:
            function = self._made[key] = self._make(run.signature, run.references)
        return function(run.texts, self._zulu_epoch())

    def source(self, signature: Signature, references: int) -> str:
        """The function written for ``signature`` (for reading and tests)."""
        names: list[str] = []
        fast_needed = False

        def value(member: UniformField, entry: int, fast: bool) -> str:
            nonlocal fast_needed
            name = f"a{len(names)}"
            names.append(name)
            if entry == ZULU:
                if member.zulu:
                    fast_needed = True
                    if fast:
                        return member.zulu.replace(VALUE, name)
                return member.text.replace(VALUE, f"({name} + 'Z')")
            # A reference can only stand in a text captured whole (a ZULU
            # text is digits and punctuation).
            if references == 1:
                text = f"({name} if '&' not in {name} else {name}.replace('&quot;', '\"'))"
            elif references == 2:
                text = f"({name} if '&' not in {name} else _unescape({name}))"
            else:
                text = name
            return member.text.replace(VALUE, text)

        def display(fast: bool) -> str:
            names.clear()
            items = []
            for member, entry in zip(self._fields, signature, strict=True):
                if isinstance(entry, tuple):
                    inner = ", ".join(
                        f"{m.name!r}: {value(m, e, fast)}"
                        for m, e in zip(member.members, entry, strict=True)
                        if e
                    )
                    items.append(f"{member.name!r}: {{{inner}}}")
                elif entry:
                    one = value(member, entry, fast)
                    items.append(
                        f"{member.name!r}: [{one}]"
                        if member.kind == "list"
                        else f"{member.name!r}: {one}"
                    )
            return f"[{{{', '.join(items)}}} for {', '.join(names)}, _ in rows]"

        slow = display(fast=False)
        # Each element's texts and the empty string after them (see UniformRun).
        head = [
            "def read(texts, _zulu):",
            "    each = iter(texts)",
            "    next(each)",
            f"    rows = zip({', '.join(['each'] * (len(names) + 1))})",
        ]
        if not fast_needed:
            return "\n".join([*head, f"    return {slow}", ""])
        fast = display(fast=True)
        return "\n".join(
            [*head, "    if _zulu is None:", f"        return {slow}", f"    return {fast}", ""]
        )

    def _make(self, signature: Signature, references: int) -> Callable[..., list[dict[str, Any]]]:
        code = compile(self.source(signature, references), "<asyncpager uniform run>", "exec")
        made: dict[str, Any] = {}
        exec(code, self._namespace, made)
        function: Callable[..., list[dict[str, Any]]] = made["read"]
        return function
