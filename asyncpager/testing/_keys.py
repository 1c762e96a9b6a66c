"""Key spaces: sorted S3 keys with random access, generated from an index.

A generated bucket holds ``count`` keys without storing any. Each shape is a
bijection ``i -> key(i)`` that is strictly increasing in UTF-8 byte order
(which for Python ``str`` is plain ``<``, since UTF-8 preserves code point
order). So the key of rank ``i`` costs O(1), and "the first key after X" is a
binary search over ``i`` costing O(log n) key constructions: a listing can
start anywhere in a 100-million-key bucket at once.

The trick behind every shape: fixed-width fields (zero-padded numbers, names
of equal length) or pieces drawn from a *prefix-free* table sorted by first
character. Concatenations of such pieces compare piece by piece, so byte order
of the key follows the order of the digits of ``i``.

Each space also renders a batch of keys straight to the bytes that go into the
XML answer (escaped, or url-encoded for ``encoding-type=url``), because that is
the hot loop of the server.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import random
from collections.abc import Callable, Sequence
from urllib.parse import quote

from asyncpager.testing._specs import Bucket

__all__ = ["KeySpace", "key_space", "url_encode", "xml_escape"]

_XML_TABLE = {
    ord("&"): "&amp;",
    ord("<"): "&lt;",
    ord(">"): "&gt;",
    ord("\r"): "&#13;",
    **{c: f"&#{c};" for c in range(32) if c not in (9, 10, 13)},
}


def xml_escape(text: str) -> str:
    """Escape text for an XML element body; ``\\r`` is kept as a reference so
    parsers do not fold it into ``\\n``."""
    return text.translate(_XML_TABLE)


def url_encode(text: str) -> str:
    """S3's ``encoding-type=url``: RFC 3986 percent-encoding of the UTF-8 bytes,
    ``/`` left as is (``a b+c`` -> ``a%20b%2Bc``), as ceph's s3-tests pin it."""
    return quote(text, safe="/")


def _render(text: str, url: bool) -> bytes:
    return (url_encode(text) if url else xml_escape(text)).encode("utf-8")


Groups = list[tuple[bytes, list[bytes]]]
"""Keys as runs sharing a head: each key of a run is ``head + tail``.

Handing out shared heads and slices of precomputed tails lets a page be
assembled by one ``bytes.join`` with no per-key allocation at all.
"""


class KeySpace:
    """``count`` keys in byte order; subclasses define :meth:`key` and :meth:`render`."""

    count: int
    alphabet: frozenset[str] | None = None
    """Every character a key may hold, when known: a delimiter made of other
    characters cannot occur, so a listing can skip the delimiter scan."""

    def key(self, i: int) -> str:
        raise NotImplementedError

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        """Keys ``lo..hi-1`` as XML-ready bytes (url-encoded when ``url``)."""
        return [(b"", [_render(self.key(i), url) for i in range(lo, hi)])]

    def render(self, lo: int, hi: int, url: bool) -> list[bytes]:
        """Keys ``lo..hi-1`` as XML-ready bytes, one by one."""
        return [head + tail for head, tails in self.groups(lo, hi, url) for tail in tails]

    def may_contain(self, text: str) -> bool:
        return self.alphabet is None or all(c in self.alphabet for c in text)

    def first_above(self, text: str, lo: int = 0, hi: int | None = None) -> int:
        """The smallest ``i`` in ``[lo, hi)`` with ``key(i) > text`` (or ``hi``)."""
        hi = self.count if hi is None else hi
        key = self.key
        while lo < hi:
            mid = (lo + hi) // 2
            if key(mid) > text:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def first_at_least(self, text: str, lo: int = 0, hi: int | None = None) -> int:
        """The smallest ``i`` in ``[lo, hi)`` with ``key(i) >= text`` (or ``hi``)."""
        hi = self.count if hi is None else hi
        key = self.key
        while lo < hi:
            mid = (lo + hi) // 2
            if key(mid) >= text:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        """The index range of the keys that start with ``prefix``."""
        if not prefix:
            return 0, self.count
        lo = self.first_at_least(prefix)
        return lo, self.skip_prefix(prefix, lo, self.count)

    def skip_prefix(self, prefix: str, lo: int, hi: int) -> int:
        """The first ``i >= lo`` whose key does not start with ``prefix``.

        Keys starting with ``prefix`` are contiguous, and the next one is often
        close, so this gallops out from ``lo`` before bisecting: O(log d) key
        constructions for a run of ``d`` keys.
        """
        key = self.key
        if lo >= hi or not key(lo).startswith(prefix):
            return lo
        good, step = lo, 1
        while good + step < hi and key(good + step).startswith(prefix):
            good += step
            step *= 2
        bad = min(good + step, hi)
        while bad - good > 1:
            mid = (good + bad) // 2
            if key(mid).startswith(prefix):
                good = mid
            else:
                bad = mid
        return bad


class ExplicitKeys(KeySpace):
    """A given list of keys, sorted by UTF-8 bytes and deduplicated."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = sorted(set(keys))
        self.count = len(self._keys)
        self.alphabet = frozenset("".join(self._keys))
        self._xml = [_render(k, False) for k in self._keys]
        self._url = [_render(k, True) for k in self._keys]

    def key(self, i: int) -> str:
        return self._keys[i]

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        return [(b"", (self._url if url else self._xml)[lo:hi])]


_HEX = "0123456789abcdef"
_FLAT_EXTS = (".json", ".parquet", ".csv.gz", ".bin")
_LOW = 4096


class FlatKeys(KeySpace):
    """``0a3f9c2b71de.json``: twelve hex digits that look random, in index order.

    Key ``i`` is ``high(i // 4096) + low[i % 4096]``: ``low`` is a sorted
    table of 4096 distinct random six-digit names (with an extension), and
    ``high(h) = h*G + r(h)`` in six hex digits with ``0 <= r(h) < G``. Both
    halves are fixed width and increasing, so the whole key is; and a page is
    a few string concatenations in C, no per-key formatting.
    """

    def __init__(self, count: int, seed: int) -> None:
        groups = max(1, -(-count // _LOW))
        if groups > 16**6:
            raise ValueError("a flat bucket holds at most 16**6 * 4096 keys")
        self.count = count
        rng = random.Random(f"flat:{seed}")
        self._gap = 16**6 // groups
        self._salt = rng.getrandbits(64)
        low = sorted(rng.sample(range(16**6), _LOW))
        self._low = [f"{v:06x}{rng.choice(_FLAT_EXTS)}" for v in low]
        self._low_bytes = [name.encode() for name in self._low]
        self.alphabet = frozenset(_HEX + "".join(_FLAT_EXTS))

    def _high(self, h: int) -> str:
        jitter = ((h ^ self._salt) * 0xD6E8FEB86659FD93 >> 17) % self._gap
        return f"{h * self._gap + jitter:06x}"

    def key(self, i: int) -> str:
        return self._high(i >> 12) + self._low[i & (_LOW - 1)]

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        out: Groups = []
        i = lo
        while i < hi:
            h = i >> 12
            stop = min(hi, (h + 1) << 12)
            low = i & (_LOW - 1)
            out.append((self._high(h).encode(), self._low_bytes[low : low + stop - i]))
            i = stop
        return out


class _FolderKeys(KeySpace):
    """Keys that are a folder's name and then one of ``leaf`` files' names,
    the same files in every folder: key ``i`` is file ``i % leaf`` of folder
    ``i // leaf``, and a page is a few folders' shared heads and slices of
    the files' names."""

    leaf: int
    _files: list[str]
    _file_bytes: list[bytes]

    def _folder(self, f: int) -> str:
        raise NotImplementedError

    def _head(self, f: int, url: bool) -> bytes:
        """Folder ``f``'s name as XML-ready bytes (URL-encoded when ``url``)."""
        raise NotImplementedError

    def key(self, i: int) -> str:
        f, j = divmod(i, self.leaf)
        return self._folder(f) + self._files[j]

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        out: Groups = []
        i = lo
        while i < hi:
            f, j = divmod(i, self.leaf)
            stop = min(hi, (f + 1) * self.leaf)
            out.append((self._head(f, url), self._file_bytes[j : j + stop - i]))
            i = stop
        return out


class DeepKeys(_FolderKeys):
    """``kq/bd/ra/obj-042.json``: a tree of 16 names per level.

    Leaf folders hold ``count // 256`` objects, between 10 and 1000, so a small
    bucket is a tree too (three levels at 3000 keys).
    """

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.leaf = min(1000, max(10, count // 256))
        folders = max(1, -(-count // self.leaf))
        self._depth = 1
        while 16**self._depth < folders:
            self._depth += 1
        letters = "abcdefghijklmnopqrstuvwxyz"
        pairs = [a + b for a in letters for b in letters]
        self._names = sorted(random.Random(f"deep:{seed}").sample(pairs, 16))
        self._files = [f"obj-{j:03d}.json" for j in range(self.leaf)]
        self._file_bytes = [f.encode() for f in self._files]
        self.alphabet = frozenset(letters + "0123456789/.-")
        self._folders: dict[int, str] = {}

    def _folder(self, f: int) -> str:
        text = self._folders.get(f)
        if text is None:
            if len(self._folders) > 4096:
                self._folders.clear()
            names = self._names
            digits = f"{f:0{self._depth}x}"
            text = self._folders[f] = "".join(names[int(d, 16)] + "/" for d in digits)
        return text

    def _head(self, f: int, url: bool) -> bytes:
        # Letters, digits and "/": the same URL-encoded.
        return self._folder(f).encode()


class HotKeys(KeySpace):
    """90% of keys under ``hot/``; ``cold0/..cold3/`` before, ``warm0/..warm3/`` after."""

    def __init__(self, count: int, seed: int) -> None:
        del seed  # the shape is the point; metadata still varies with the seed
        self.count = count
        hot = round(count * 0.9)
        cold = count - hot
        sizes = [cold // 8 + (1 if k < cold % 8 else 0) for k in range(8)]
        prefixes = [f"cold{k}/" for k in range(4)] + ["hot/"] + [f"warm{k}/" for k in range(4)]
        sizes = [*sizes[:4], hot, *sizes[4:]]
        self._prefixes = prefixes
        self._starts: list[int] = []
        total = 0
        for size in sizes:
            self._starts.append(total)
            total += size
        self._width = max(4, len(str(max(max(sizes) - 1, 0))))
        self._tails = [f"{j:03d}.log".encode() for j in range(1000)]
        self.alphabet = frozenset("coldhotwarm/0123456789.")

    def key(self, i: int) -> str:
        seg = bisect.bisect_right(self._starts, i) - 1
        return f"{self._prefixes[seg]}{i - self._starts[seg]:0{self._width}d}.log"

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        out: Groups = []
        starts = self._starts
        i = lo
        while i < hi:
            seg = bisect.bisect_right(starts, i) - 1
            j = i - starts[seg]
            seg_end = starts[seg + 1] if seg + 1 < len(starts) else self.count
            stop = min(hi, seg_end, i + 1000 - j % 1000)
            head = f"{self._prefixes[seg]}{j // 1000:0{self._width - 3}d}".encode()
            out.append((head, self._tails[j % 1000 : j % 1000 + stop - i]))
            i = stop
        return out


# Sorted by first code point, and no two share a first character, so the table
# is prefix-free: concatenations compare piece by piece.
_UNICODE_PIECES = (
    " ",
    "\"'",
    "%41",
    "&<>",
    "+",
    "-",
    "0",
    "A",
    "a b",
    "~",
    "\u00e9",  # é
    "\u03a9",  # Ω
    "\u0436",  # ж
    "\u4e2d\u6587",  # 中文
    "\uff71",  # halfwidth katakana: after the emoji in UTF-16, before it in UTF-8
    "\U0001f600",  # 😀
)
assert [p[0] for p in _UNICODE_PIECES] == sorted({p[0] for p in _UNICODE_PIECES})

_ENCODERS: dict[str, Callable[[str], str]] = {
    "str": lambda text: text,
    "xml": xml_escape,
    "url": url_encode,
}


class UnicodeKeys(KeySpace):
    """Keys built from :data:`_UNICODE_PIECES`, one piece per hex digit of ``i``.

    The first two digits become folders (``é/+/...``), the rest the file name,
    so the same awkward characters appear in prefixes, delimiters and names.
    As for ``flat``, the last three digits come from a precomputed table.
    """

    def __init__(self, count: int, seed: int) -> None:
        del seed
        self.count = count
        self._digits = 1
        while 16**self._digits < count:
            self._digits += 1
        self._dirs = min(2, self._digits - 1)
        self._low_digits = min(3, self._digits)
        self.alphabet = frozenset("".join(_UNICODE_PIECES) + "/.txt")
        self._low: dict[str, list[str]] = {}
        self._low_bytes: dict[str, list[bytes]] = {}
        self._high: dict[tuple[str, int], str] = {}

    def _pieces(self, value: int, first: int, width: int, mode: str) -> str:
        digits = f"{value:0{width}x}" if width else ""
        enc = _ENCODERS[mode]
        out = []
        for position, d in enumerate(digits, start=first):
            out.append(enc(_UNICODE_PIECES[int(d, 16)]))
            if position < self._dirs:
                out.append("/")
        return "".join(out)

    def _low_table(self, mode: str) -> list[str]:
        table = self._low.get(mode)
        if table is None:
            first = self._digits - self._low_digits
            table = self._low[mode] = [
                self._pieces(v, first, self._low_digits, mode) + ".txt"
                for v in range(16**self._low_digits)
            ]
            self._low_bytes[mode] = [t.encode() for t in table]
        return table

    def _high_part(self, h: int, mode: str) -> str:
        text = self._high.get((mode, h))
        if text is None:
            if len(self._high) > 4096:
                self._high.clear()
            text = self._pieces(h, 0, self._digits - self._low_digits, mode)
            self._high[(mode, h)] = text
        return text

    def key(self, i: int) -> str:
        shift = 4 * self._low_digits
        low = self._low_table("str")
        return self._high_part(i >> shift, "str") + low[i & ((1 << shift) - 1)]

    def groups(self, lo: int, hi: int, url: bool) -> Groups:
        mode = "url" if url else "xml"
        self._low_table(mode)
        table = self._low_bytes[mode]
        shift = 4 * self._low_digits
        mask = (1 << shift) - 1
        out: Groups = []
        i = lo
        while i < hi:
            h = i >> shift
            stop = min(hi, (h + 1) << shift)
            out.append((self._high_part(h, mode).encode(), table[i & mask : (i & mask) + stop - i]))
            i = stop
        return out


class HiveKeys(_FolderKeys):
    """``events/dt=2023-01-01/hour=07/part-00042-5f3a9c1e.c000.snappy.parquet``:
    a data lake's table, partitioned by day and hour in Hive's ``name=value``
    folders (S3 writes each ``=`` of a key it URL-encodes as ``%3D``, as
    botocore asks it to). An hour holds ``count // 1000`` files, 10 to 100;
    the days run on from 2023-01-01.
    """

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.leaf = min(100, max(10, count // 1000))
        rng = random.Random(f"hive:{seed}")
        self._table = rng.choice(("events", "clicks", "orders", "sessions"))
        job = f"{rng.getrandbits(32):08x}"  # the run that wrote the files
        self._files = [f"part-{j:05d}-{job}.c000.snappy.parquet" for j in range(self.leaf)]
        self._file_bytes = [f.encode() for f in self._files]
        self._first_day = _dt.date(2023, 1, 1).toordinal()
        self.alphabet = frozenset("abcdefghijklmnopqrstuvwxyz0123456789/=-._")

    def _folder(self, f: int) -> str:
        day, hour = divmod(f, 24)
        when = _dt.date.fromordinal(self._first_day + day).isoformat()
        return f"{self._table}/dt={when}/hour={hour:02d}/"

    def _head(self, f: int, url: bool) -> bytes:
        # The files' names are the same either way; the folders' "=" not.
        return _render(self._folder(f), url)


_SHAPES: dict[str, Callable[[int, int], KeySpace]] = {
    "flat": FlatKeys,
    "deep": DeepKeys,
    "hot": HotKeys,
    "unicode": UnicodeKeys,
    "hive": HiveKeys,
}


def key_space(bucket: Bucket) -> KeySpace:
    """The key space a bucket spec describes."""
    if bucket.keys is not None:
        return ExplicitKeys(bucket.keys)
    return _SHAPES[bucket.shape](bucket.count, bucket.seed)
