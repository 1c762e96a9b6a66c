"""Key-space arithmetic for S3 key-range shards.

One S3 listing is split into shards that run at the same time. A shard is a
:class:`KeyRange` ``(lo, hi]`` and lists, under the listing's ``Prefix``, the
keys ``k`` with ``lo < k <= hi``:

* it asks S3 for ``StartAfter=lo`` (S3 itself drops every key ``<= lo``), or
  sends no ``StartAfter`` when ``lo`` is ``None``;
* it stops at the first key ``> hi`` (:meth:`KeyRange.is_past`) and drops that
  key, which belongs to the next shard; ``hi=None`` lists to the end of the
  prefix.

The upper bound is inclusive on purpose. The next shard starts with
``StartAfter=hi``, which excludes ``hi``, so ``(lo, m]`` and ``(m, hi]`` cover
``(lo, hi]`` exactly, whether or not a key equal to ``m`` exists. An exclusive
upper bound would lose a key equal to a boundary, and the inclusive lower
bound that would make it whole again (``StartAfter=predecessor(m)``) does not
exist: strings have no predecessor (the largest string below ``"b"`` would be
``"a"`` followed by infinitely many U+10FFFF).

Order. S3 orders keys by their UTF-8 bytes. For valid Unicode (no surrogates)
that is the same as Python's code-point order, but a ``str`` may hold lone
surrogates, which sort differently and cannot be S3 keys; so every comparison
here is done on ``key.encode("utf-8")`` (:func:`key_bytes`), which also rejects
surrogates at the door.

Split points. Every boundary this module makes is a valid S3 key: valid
UTF-8, 1 to :data:`MAX_KEY_BYTES` bytes, starting with the listing's prefix.
Points are placed by a :class:`KeyDensity`, a model of how likely each
character is. It turns a key into a number ``u`` in ``[0, 1)`` the way
arithmetic coding does (the key's first character picks a sub-interval, the
second a sub-interval of that, and so on), evenly spaced ``u`` values are
turned back into short keys, and every candidate is then checked exactly in
byte order. Because the model works on whole code points, a point it produces
is always valid UTF-8: there is no byte sequence to round.
:data:`UNIFORM_BYTES` is the plain "keys are base-256 fractions" split
(restricted to the byte sequences that are valid UTF-8); :data:`TYPICAL_KEYS`
(the default) puts most of the weight on printable ASCII, where real keys
live.

XML-safe points. S3 answers in XML and echoes ``StartAfter`` back. Real S3
URL-encodes the echo when asked to (botocore always asks), but some
S3-compatible servers, moto among them, echo it raw, and a raw control
character makes the whole answer unparsable. So the built-in densities give
no weight to characters XML 1.0 cannot carry (C0 controls other than tab,
newline and carriage return, U+FFFE, U+FFFF), and the exact fallback avoids
them too unless the range leaves no other choice (a range like
``(k, k + "\x00\x00"]`` can only be cut at ``k + "\x00"``).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise

from asyncpager.errors import ConfigurationError

__all__ = [
    "MAX_KEY_BYTES",
    "TYPICAL_KEYS",
    "UNIFORM_BYTES",
    "KeyDensity",
    "KeyRange",
    "is_valid_key",
    "key_bytes",
    "key_lt",
    "learned_density",
    "midpoint",
    "split",
    "split_after",
    "successor",
]

#: The longest S3 key, in UTF-8 bytes. Boundaries are used as ``StartAfter``
#: and must be no longer than a key.
MAX_KEY_BYTES = 1024

_CODE_POINTS = 0x110000
_SURROGATES = range(0xD800, 0xE000)
#: Code points as sorted ``(first, stop)`` ranges: every Unicode scalar value
#: (what UTF-8 can encode), and the ones XML 1.0 can carry.
_SCALARS = ((0x0, 0xD800), (0xE000, _CODE_POINTS))
_XML_CHARS = ((0x9, 0xB), (0xD, 0xE), (0x20, 0xD800), (0xE000, 0xFFFE), (0x10000, _CODE_POINTS))
#: How many characters of a bound (after the part lo and hi share) the model
#: reads. The characters after them move the bound by less than the weight
#: of one 64-character key, far below any useful shard, and cutting there
#: keeps the arithmetic small for 1024-byte keys. Points are still checked
#: exactly, so the cut can cost balance in a range that narrow, never
#: correctness.
_MODEL_DEPTH = 64


def key_bytes(key: str) -> bytes:
    """The bytes S3 sorts ``key`` by: its UTF-8 encoding.

    Use it as a sort key (``sorted(keys, key=key_bytes)``). Raises
    :class:`~asyncpager.errors.ConfigurationError` (a ``ValueError``) for a
    string with a lone surrogate, which no S3 key can contain.
    """
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"not a valid S3 key (lone surrogate): {key!r}") from exc


def key_lt(a: str, b: str) -> bool:
    """Whether S3 lists ``a`` before ``b``."""
    return key_bytes(a) < key_bytes(b)


def is_valid_key(key: str) -> bool:
    """Whether ``key`` can be an S3 key, and so a ``StartAfter`` boundary.

    A key is 1 to :data:`MAX_KEY_BYTES` bytes of valid UTF-8. Any code point is
    allowed, control characters included.
    """
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return 0 < size <= MAX_KEY_BYTES


def successor(key: str) -> str:
    """The smallest string that sorts after ``key``: ``key + "\\x00"``.

    ``KeyRange(key, successor(key))`` holds one possible key and cannot be
    split. The result ignores the length limit; it may be one byte longer
    than any S3 key.
    """
    key_bytes(key)  # rejects a lone surrogate
    return key + "\x00"


def _next_in(chars: tuple[tuple[int, int], ...], cp: int) -> int | None:
    """The first code point after ``cp`` in the ranges ``chars``."""
    cp += 1
    for first, stop in chars:
        if cp < stop:
            return max(cp, first)
    return None


@dataclass(frozen=True)
class KeyRange:
    """The keys ``k`` with ``lo < k <= hi`` in UTF-8 byte order.

    ``lo=None`` is unbounded below (the start of the listing's prefix) and
    ``hi=None`` unbounded above (the end of the prefix). The range itself does
    not know the prefix: the listing's ``Prefix`` parameter filters keys, the
    range only cuts the listing into pieces. A range with ``hi <= lo`` is
    empty; it is allowed so that arithmetic on ranges never has to special-case
    it.
    """

    lo: str | None = None
    hi: str | None = None
    _lo_bytes: bytes | None = field(init=False, repr=False, compare=False)
    _hi_bytes: bytes | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Encoded once: a shard checks every key it lists against its bounds.
        object.__setattr__(self, "_lo_bytes", None if self.lo is None else key_bytes(self.lo))
        object.__setattr__(self, "_hi_bytes", None if self.hi is None else key_bytes(self.hi))

    @property
    def is_empty(self) -> bool:
        """True when no key can be in the range (``hi <= lo``)."""
        return (
            self._lo_bytes is not None
            and self._hi_bytes is not None
            and self._hi_bytes <= self._lo_bytes
        )

    def contains(self, key: str) -> bool:
        """Whether ``key`` belongs to this range."""
        b = key_bytes(key)
        return (self._lo_bytes is None or b > self._lo_bytes) and (
            self._hi_bytes is None or b <= self._hi_bytes
        )

    def is_past(self, key: str) -> bool:
        """Whether ``key`` sorts after the range, so a listing can stop there.

        A shard lists with ``StartAfter=lo`` and ends at the first key for
        which this is true; that key is dropped (the next shard lists it).
        """
        return self._hi_bytes is not None and key_bytes(key) > self._hi_bytes


@dataclass(frozen=True)
class KeyDensity:
    """How likely each character is, at any position of a key.

    ``segments`` are ``(first, stop, weight)`` triples: each code point in
    ``range(first, stop)`` has weight ``weight`` (a positive integer), and a
    character's probability is its weight over the total. Segments are sorted,
    do not overlap and never cover surrogates; code points in no segment have
    weight 0, and the points the model places never contain them.

    The model treats characters as independent, which is crude, but a split
    only needs to be roughly balanced: every point is checked exactly, so a
    poor model costs balance, never correctness. Work stealing
    (:func:`split_after`) corrects the balance while the listing runs.
    """

    segments: tuple[tuple[int, int, int], ...]
    _starts: list[int] = field(init=False, repr=False, compare=False)
    _cumulative: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts: list[int] = []
        cumulative = [0]
        previous_stop = 0
        for first, stop, weight in self.segments:
            if not previous_stop <= first < stop <= _CODE_POINTS or weight <= 0:
                raise ConfigurationError(
                    f"bad density segment {(first, stop, weight)!r}: segments must be "
                    "sorted, non-overlapping code point ranges with a positive weight"
                )
            if first < _SURROGATES.stop and _SURROGATES.start < stop:
                raise ConfigurationError(f"density segment {(first, stop)!r} covers surrogates")
            starts.append(first)
            cumulative.append(cumulative[-1] + (stop - first) * weight)
            previous_stop = stop
        if not starts:
            raise ConfigurationError("a density needs at least one segment")
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_cumulative", cumulative)

    @property
    def total(self) -> int:
        """The sum of all weights."""
        return self._cumulative[-1]

    def _locate(self, cp: int) -> tuple[int, int]:
        """``(weight of all code points below cp, weight of cp)``."""
        i = bisect.bisect_right(self._starts, cp) - 1
        if i < 0:
            return 0, 0
        first, stop, weight = self.segments[i]
        if cp >= stop:
            return self._cumulative[i + 1], 0
        return self._cumulative[i] + (cp - first) * weight, weight

    def position(self, key: str) -> Fraction:
        """Where ``key`` falls in ``[0, 1)``; never decreasing in byte order.

        Exact: numerator and denominator are carried as integers over
        ``total ** depth`` instead of as a Fraction per step, which would
        reduce by a gcd on every character of a 1024-byte key.
        """
        total = self.total
        numerator, mass, depth = 0, 1, 0
        for ch in key:
            below, weight = self._locate(ord(ch))
            numerator = numerator * total + mass * below
            mass *= weight
            depth += 1
            if mass == 0:
                break
        return Fraction(numerator, total**depth)

    def key_at(self, u: Fraction, tolerance: Fraction, max_bytes: int) -> str | None:
        """The shortest key whose :meth:`position` is in ``[u - tolerance, u]``.

        Walks down the intervals holding ``u`` and stops as soon as the key
        spelled so far starts close enough below ``u``: a short key makes a
        readable boundary and a cheap ``StartAfter``. ``None`` when such a key
        would be longer than ``max_bytes`` (``tolerance`` must be positive).

        The interval is kept as integers over ``scale = total ** depth``, for
        the same reason as in :meth:`position`: a range between two long,
        close keys needs hundreds of characters of precision.
        """
        total, cumulative = self.total, self._cumulative
        u_num, u_den = u.numerator, u.denominator
        tol_num, tol_den = tolerance.numerator, tolerance.denominator
        start, mass, scale = 0, 1, 1
        chars: list[str] = []
        size = 0
        # u - start / scale > tolerance, cross-multiplied.
        while (u_num * scale - start * u_den) * tol_den > tol_num * u_den * scale:
            # total * (u - start) / mass, as num / den: which character's
            # weight interval holds u at this depth.
            num = (u_num * scale - start * u_den) * total
            den = u_den * mass
            i = bisect.bisect_right(cumulative, num // den) - 1
            first, _, weight = self.segments[i]
            offset = (num - cumulative[i] * den) // (den * weight)
            start = start * total + mass * (cumulative[i] + offset * weight)
            mass *= weight
            scale *= total
            ch = chr(first + offset)
            size += len(ch.encode("utf-8"))
            if size > max_bytes:
                return None
            chars.append(ch)
        return "".join(chars)


# Per code point weights. Printable ASCII carries about 94% of the weight
# (letters and digits four times more than punctuation and space, because
# ids, hashes, dates and words decide most splits, while separators like "/"
# sit in the parts keys share); the rest goes mostly to the Basic
# Multilingual Plane (CJK and other scripts) and a little to the astral
# planes. Control characters (C0, DEL, C1) get none: they are rare in keys,
# invisible in logs, and most of them cannot travel in XML.
_ALNUM = 4_000_000
_PUNCT = 1_000_000

#: The default density: most split points land in printable ASCII.
TYPICAL_KEYS = KeyDensity(
    (
        (0x20, 0x30, _PUNCT),  # space ! " # $ % & ' ( ) * + , - . /
        (0x30, 0x3A, _ALNUM),  # 0-9
        (0x3A, 0x41, _PUNCT),  # : ; < = > ? @
        (0x41, 0x5B, _ALNUM),  # A-Z
        (0x5B, 0x61, _PUNCT),  # [ \ ] ^ _ `
        (0x61, 0x7B, _ALNUM),  # a-z
        (0x7B, 0x7F, _PUNCT),  # { | } ~
        (0xA0, 0x800, 3_000),
        (0x800, 0xD800, 200),
        (0xE000, 0xFFFE, 200),
        (0x10000, _CODE_POINTS, 1),
    )
)

#: Keys as uniform base-256 fractions: a character of UTF-8 length L has
#: weight 256 ** -L, as the byte sequences starting with it do. Byte
#: sequences that are not valid UTF-8 get no weight (a raw base-256 point
#: there would have to be rounded up to the next valid string, so about half
#: of all points would pile up on a few strings), nor do characters XML
#: cannot carry.
UNIFORM_BYTES = KeyDensity(
    (
        (0x09, 0x0B, 256**3),  # tab, newline
        (0x0D, 0x0E, 256**3),  # carriage return
        (0x20, 0x80, 256**3),
        (0x80, 0x800, 256**2),
        (0x800, 0xD800, 256),
        (0xE000, 0xFFFE, 256),
        (0x10000, _CODE_POINTS, 1),
    )
)


def learned_density(
    keys: Iterable[str], *, base: KeyDensity = TYPICAL_KEYS, seen_share: float = 0.95
) -> KeyDensity:
    """A density that puts ``seen_share`` of the weight on the characters of
    a sample of keys (in proportion to how often they occur) and the rest on
    ``base``, so that points fall where such keys are: a bucket of hex names
    is cut into even parts of ``0-9a-f`` rather than into ranges of
    printable ASCII of which most hold nothing. Characters the sample did
    not show keep some weight: a point is never forced into them, nor
    barred from them.
    """
    if not 0 < seen_share < 1:
        raise ConfigurationError(f"seen_share is in (0, 1), not {seen_share}")
    counts = Counter(ord(ch) for key in keys for ch in key)
    for cp in list(counts):
        # Only characters the base allows: points stay where the base keeps
        # them (out of control characters, which XML answers cannot carry).
        if base._locate(cp)[1] == 0:
            del counts[cp]
    if not counts:
        return base
    seen_total = sum(counts.values())
    # Seen characters together weigh seen_share of the whole.
    scale = max(1, math.ceil(seen_share / (1 - seen_share) * base.total / seen_total))
    bounds = {0, _CODE_POINTS}
    for first, stop, _weight in base.segments:
        bounds.update((first, stop))
    for cp in counts:
        bounds.update((cp, cp + 1))
    segments = []
    for first, stop in pairwise(sorted(bounds)):
        if first < _SURROGATES.stop and _SURROGATES.start < stop:
            continue
        weight = base._locate(first)[1]
        if stop == first + 1:
            weight += scale * counts.get(first, 0)
        if weight > 0:
            segments.append((first, stop, weight))
    return KeyDensity(tuple(segments))


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def _model_points(
    lo: str | None, hi: str | None, count: int, prefix: str, density: KeyDensity
) -> list[str]:
    """Up to ``count`` increasing valid keys strictly inside ``(lo, hi)``.

    All start with ``prefix``: only keys under the prefix are listed, so a
    boundary outside it would only make an empty shard.
    """
    prefix_b = key_bytes(prefix)
    lo_b = None if lo is None else key_bytes(lo)
    hi_b = None if hi is None else key_bytes(hi)

    # Bounds relative to the prefix: "" is its own start, None its end.
    lo_rel = ""
    if lo is not None and lo_b is not None:
        if lo_b.startswith(prefix_b):
            lo_rel = lo[len(prefix) :]
        elif lo_b > prefix_b:
            return []  # the range starts after every key under the prefix
    hi_rel: str | None = None
    if hi is not None and hi_b is not None:
        if hi_b.startswith(prefix_b):
            hi_rel = hi[len(prefix) :]
        elif hi_b < prefix_b:
            return []  # the range ends before every key under the prefix

    # Every string between lo and hi starts with their common prefix, so the
    # model only has to place the characters after it; that keeps points
    # short and the arithmetic shallow when lo and hi are long and close.
    base, lo_rest, hi_rest = prefix, lo_rel, hi_rel
    if hi_rel is not None:
        shared = _common_prefix(lo_rest, hi_rel)
        base += shared
        lo_rest, hi_rest = lo_rest[len(shared) :], hi_rel[len(shared) :]

    # A cut key sorts no later than the key, so u_hi stays a safe upper bound
    # and only a point just after lo may fail the exact check below.
    u_lo = density.position(lo_rest[:_MODEL_DEPTH])
    u_hi = Fraction(1) if hi_rest is None else density.position(hi_rest[:_MODEL_DEPTH])
    if u_hi <= u_lo:
        return []
    spacing = (u_hi - u_lo) / (count + 1)
    # A point lands in [target - spacing/4, target]: after lo, before hi and
    # after the previous point, so the checks below only guard the model.
    tolerance = spacing / 4
    budget = MAX_KEY_BYTES - len(key_bytes(base))

    points: list[str] = []
    previous = lo_b
    for i in range(1, count + 1):
        rest = density.key_at(u_lo + spacing * i, tolerance, budget)
        if rest is None:
            continue
        point = base + rest
        point_b = key_bytes(point)
        if (
            point_b
            and (previous is None or point_b > previous)
            and (hi_b is None or point_b < hi_b)
        ):
            points.append(point)
            previous = point_b
    return points


def _smallest_after(lo: str | None, prefix: str, chars: tuple[tuple[int, int], ...]) -> str | None:
    """The smallest valid key under ``prefix`` after ``lo``, adding only ``chars``.

    Characters copied from ``lo`` or ``prefix`` are kept as they are; the one
    character this adds or changes comes from ``chars``.
    """
    prefix_b = key_bytes(prefix)
    if lo is None or key_bytes(lo) < prefix_b:
        point = prefix or chr(chars[0][0])
        return point if is_valid_key(point) else None
    lo_b = key_bytes(lo)
    if not lo_b.startswith(prefix_b):
        return None  # lo is after every key under the prefix
    if len(lo_b) < MAX_KEY_BYTES:
        return lo + chr(chars[0][0])  # the lowest character is one byte long
    # lo is as long as a key can be: the next key changes one of lo's
    # characters after the prefix to the next code point; the rightmost one
    # that still fits in the limit gives the smallest key.
    for i in range(len(lo) - 1, len(prefix) - 1, -1):
        cp = _next_in(chars, ord(lo[i]))
        if cp is not None:
            candidate = lo[:i] + chr(cp)
            if len(key_bytes(candidate)) <= MAX_KEY_BYTES:
                return candidate
    return None


def _first_point(lo: str | None, hi: str | None, prefix: str) -> str | None:
    """A valid key under ``prefix`` strictly between lo and hi, if any.

    The fallback when the model finds no point (a range far narrower than its
    resolution, or a prefix near the length limit). It tries the smallest
    key after ``lo`` that adds no character XML cannot carry, then the
    smallest key after ``lo`` at all: when even that is not below ``hi``, no
    split exists.
    """
    for chars in (_XML_CHARS, _SCALARS):
        point = _smallest_after(lo, prefix, chars)
        if point is not None and (hi is None or key_bytes(point) < key_bytes(hi)):
            return point
    return None


def midpoint(
    lo: str | None,
    hi: str | None,
    *,
    prefix: str = "",
    density: KeyDensity = TYPICAL_KEYS,
) -> str | None:
    """A valid key under ``prefix`` strictly between ``lo`` and ``hi``.

    The point splits the model's weight of ``(lo, hi)`` in half when the
    model can place it. Otherwise it is the smallest key after ``lo`` that
    adds no character XML cannot carry, or failing that the smallest key
    after ``lo`` at all.
    ``None`` means no valid key under the prefix lies strictly between them,
    for example when ``hi == successor(lo)``.
    """
    if KeyRange(lo, hi).is_empty:
        return None
    points = _model_points(lo, hi, 1, prefix, density)
    return points[0] if points else _first_point(lo, hi, prefix)


def split(
    key_range: KeyRange,
    n: int,
    *,
    prefix: str = "",
    density: KeyDensity = TYPICAL_KEYS,
) -> list[KeyRange]:
    """Cut ``key_range`` into at most ``n`` contiguous ranges, in order.

    The first starts at ``key_range.lo``, the last ends at ``key_range.hi``,
    and each ends where the next starts, so together they list every key of
    the range exactly once. The boundaries in between are valid keys under
    ``prefix``, strictly increasing, with equal weight between them under
    ``density`` (so equal shares of the byte space with
    :data:`UNIFORM_BYTES`). Fewer than ``n`` ranges come back when the range
    is too narrow to cut further; an empty range comes back whole.

    ``prefix`` only steers where the points go: the ranges cover
    ``key_range`` exactly whatever it is. Pass the listing's ``Prefix`` at
    least; a planner that knows more may pass a longer one, such as the
    common prefix of a sample of keys, so that points fall where the keys
    are instead of in the empty space beside them.
    """
    if n < 1:
        raise ConfigurationError(f"cannot split a key range into {n} parts")
    if n == 1 or key_range.is_empty:
        return [key_range]
    points: Sequence[str] = _model_points(key_range.lo, key_range.hi, n - 1, prefix, density)
    if not points:
        point = _first_point(key_range.lo, key_range.hi, prefix)
        points = [] if point is None else [point]
    bounds = [key_range.lo, *points, key_range.hi]
    return [KeyRange(a, b) for a, b in pairwise(bounds)]


def split_after(
    key_range: KeyRange,
    last_key: str | None,
    *,
    prefix: str = "",
    density: KeyDensity = TYPICAL_KEYS,
) -> tuple[KeyRange, KeyRange] | None:
    """Split what a running shard has left, for work stealing.

    ``last_key`` is the last key the shard has listed (``None`` before its
    first page). The point ``m`` falls strictly between ``last_key`` and
    ``key_range.hi``; the result is ``(KeyRange(lo, m), KeyRange(m, hi))``.
    The running shard keeps the first (its ``StartAfter`` or continuation
    token stays valid, it only stops earlier, at ``m``); a new shard takes the
    second. Both are strictly narrower than ``key_range``, their union is
    exactly ``key_range``, and everything already listed is in the first.

    ``None`` when the rest cannot be split: no valid key under ``prefix`` lies
    strictly between ``last_key`` and ``hi``.
    """
    start = key_range.lo
    if last_key is not None:
        if not key_range.contains(last_key):
            raise ConfigurationError(f"last key {last_key!r} is not in {key_range!r}")
        start = last_key
    point = midpoint(start, key_range.hi, prefix=prefix, density=density)
    if point is None:
        return None
    return KeyRange(key_range.lo, point), KeyRange(point, key_range.hi)
