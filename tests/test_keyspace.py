"""asyncpager.plan.keyspace: key-range shards list every key exactly once.

The reference is a small model of S3's own listing (UTF-8 byte order,
``Prefix``, ``StartAfter``) run over generated key sets: the shards of a
range, listed the way a stream lists them and put end to end, must give
exactly the keys of the range. One test checks the same against moto,
including that moto orders keys the way the model does.
"""

from __future__ import annotations

import bisect
import random
import uuid
from fractions import Fraction
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncpager.errors import ConfigurationError
from asyncpager.plan.keyspace import (
    MAX_KEY_BYTES,
    TYPICAL_KEYS,
    UNIFORM_BYTES,
    KeyDensity,
    KeyRange,
    is_valid_key,
    key_bytes,
    key_lt,
    learned_density,
    midpoint,
    split,
    split_after,
    successor,
)
from tests.conftest import put_s3_keys

# ---------------------------------------------------------------------------
# A model of S3's listing


def s3_list(keys: list[str], prefix: str, start_after: str | None) -> list[str]:
    """Every key ListObjectsV2 returns, over all its pages, for these params."""
    p = prefix.encode()
    after = None if start_after is None else start_after.encode()
    chosen = [k for k in keys if k.encode().startswith(p) and (after is None or k.encode() > after)]
    return sorted(chosen, key=str.encode)


def list_shard(keys: list[str], prefix: str, shard: KeyRange) -> list[str]:
    """List a shard as a stream does: ``StartAfter=lo``, stop past ``hi``."""
    listed = []
    for key in s3_list(keys, prefix, shard.lo):
        if shard.is_past(key):
            break
        listed.append(key)
    return listed


def keys_between(keys: list[str], prefix: str, lo: str | None, hi: str | None) -> list[str]:
    """The reference: keys under ``prefix`` with ``lo < k <= hi`` in byte order."""
    return [
        k
        for k in s3_list(keys, prefix, None)
        if (lo is None or k.encode() > lo.encode()) and (hi is None or k.encode() <= hi.encode())
    ]


def split_possible(start: str | None, hi: str | None, prefix: str) -> bool | None:
    """Whether a valid key under ``prefix`` lies strictly between the bounds.

    Decided by the smallest candidate after ``start``; ``None`` (cannot tell
    this simply) when ``start`` is already as long as a key can be.
    """
    p = prefix.encode()
    if start is None or start.encode() < p:
        first = prefix or "\x00"  # the smallest key under the prefix
    elif not start.encode().startswith(p):
        return False  # start sorts after every key under the prefix
    elif len(start.encode()) < MAX_KEY_BYTES:
        first = start + "\x00"  # the smallest string after start
    else:
        return None
    return is_valid_key(first) and (hi is None or first.encode() < hi.encode())


def fit(key: str) -> str:
    """Cut ``key`` to the S3 length limit, on a character boundary."""
    return key.encode()[:MAX_KEY_BYTES].decode("utf-8", "ignore")


# ---------------------------------------------------------------------------
# Generated keys

AWKWARD = (
    " %+\n\t\r\x00\x01\x1f/-_.~!*'()&$@=;:,?\\\"<>#{}^[]`|\x7f\x80\xa0é"
    "\u07ff\u0800\ud7ff\ue000\ufffd\ufffe\uffff\U00010000\U0001f642\U0010ffff"
    "aAzZ09"
)
ALPHABETS = st.sampled_from(
    [
        st.characters(codec="utf-8"),  # any Unicode scalar value
        st.sampled_from(AWKWARD),  # the characters that break naive code
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),  # typical keys
        st.sampled_from("0123456789abcdef"),  # hashes: densely packed keys
    ]
)
LEARNED = learned_density(["a1b2", "ff00", "\u00e9\u20acx", "logs/2024", "\x01ctl"])
DENSITIES = st.sampled_from([TYPICAL_KEYS, UNIFORM_BYTES, LEARNED])


@st.composite
def key_sets(draw: st.DrawFn) -> list[str]:
    alphabet = draw(ALPHABETS)
    kind = draw(st.sampled_from(["flat", "one huge prefix", "near the length limit"]))
    if kind == "flat":
        keys = draw(st.lists(st.text(alphabet, min_size=1, max_size=10), max_size=40))
    elif kind == "one huge prefix":
        shared = draw(st.text(alphabet, min_size=1, max_size=300))
        tails = draw(st.lists(st.text(alphabet, max_size=6), max_size=40))
        keys = [shared + tail for tail in tails]
    else:
        body = fit(draw(st.text(alphabet, min_size=1, max_size=3)) * 400)
        keys = [
            body[: len(body) - cut] + tail
            for cut, tail in draw(
                st.lists(st.tuples(st.integers(0, 8), st.text(alphabet, max_size=4)), max_size=30)
            )
        ]
    return sorted({fit(k) for k in keys if fit(k)})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], str, KeyRange]:
    """Keys, the listing's prefix, and a range (lo and hi in any relation)."""
    keys = draw(key_sets())
    some_key = st.sampled_from(keys) if keys else st.just("k")
    cut_key = some_key.flatmap(lambda k: st.integers(0, len(k)).map(lambda i: k[:i]))
    prefix = draw(st.one_of(st.just(""), cut_key, st.text(st.sampled_from(AWKWARD), max_size=3)))
    bound = st.one_of(
        st.none(),
        some_key,
        cut_key,
        st.tuples(some_key, st.sampled_from(AWKWARD)).map("".join),
        st.text(st.characters(codec="utf-8"), max_size=5),
    )
    lo, hi = draw(bound), draw(bound)
    if lo is not None and hi is not None and hi.encode() < lo.encode():
        lo, hi = hi, lo
    return keys, prefix, KeyRange(lo, hi)


def assert_boundary(point: str | None, lo: str | None, hi: str | None, prefix: str) -> None:
    assert point is not None
    assert is_valid_key(point), point
    assert point.startswith(prefix)
    assert lo is None or point.encode() > lo.encode()
    assert hi is None or point.encode() < hi.encode()


# ---------------------------------------------------------------------------
# Properties


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(1, 40), DENSITIES)
def test_shards_list_every_key_exactly_once(
    scenario: tuple[list[str], str, KeyRange], n: int, density: KeyDensity
) -> None:
    keys, prefix, whole = scenario
    shards = split(whole, n, prefix=prefix, density=density)

    assert 1 <= len(shards) <= n
    assert shards[0].lo == whole.lo
    assert shards[-1].hi == whole.hi
    for left, right in pairwise(shards):
        assert left.hi == right.lo
        assert_boundary(left.hi, whole.lo, whole.hi, prefix)
        assert left.hi is not None
        assert left.lo is None or key_lt(left.lo, left.hi)

    listed = [key for shard in shards for key in list_shard(keys, prefix, shard)]
    assert listed == keys_between(keys, prefix, whole.lo, whole.hi)

    if n > 1 and len(shards) == 1:
        # Only a range that cannot be cut comes back whole.
        assert split_possible(whole.lo, whole.hi, prefix) in (False, None)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data(), DENSITIES)
def test_split_after_halves_are_exact(
    scenario: tuple[list[str], str, KeyRange], data: st.DataObject, density: KeyDensity
) -> None:
    keys, prefix, whole = scenario
    listed = keys_between(keys, prefix, whole.lo, whole.hi)
    last = data.draw(st.sampled_from([None, *listed]))
    start = whole.lo if last is None else last

    halves = split_after(whole, last, prefix=prefix, density=density)

    possible = split_possible(start, whole.hi, prefix)
    if possible is not None:
        assert (halves is not None) == possible
    if halves is None:
        return
    left, right = halves
    assert (left.lo, right.hi) == (whole.lo, whole.hi)
    assert left.hi == right.lo
    assert_boundary(left.hi, start, whole.hi, prefix)
    assert left != whole
    assert right != whole
    assert list_shard(keys, prefix, left) + list_shard(keys, prefix, right) == listed
    done = [] if last is None else listed[: listed.index(last) + 1]
    assert list_shard(keys, prefix, left)[: len(done)] == done


@settings(deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8"), max_size=8), min_size=2), DENSITIES)
def test_position_follows_byte_order(keys: list[str], density: KeyDensity) -> None:
    ordered = sorted(keys, key=key_bytes)
    positions = [density.position(k) for k in ordered]
    assert positions == sorted(positions)
    assert all(0 <= u < 1 for u in positions)


@settings(deadline=None)
@given(
    st.fractions(min_value=0, max_value=1, max_denominator=10**12).filter(lambda u: u < 1),
    st.integers(1, 40),
    DENSITIES,
)
def test_key_at_lands_just_below_its_target(u: Fraction, digits: int, density: KeyDensity) -> None:
    tolerance = Fraction(1, 10**digits)
    key = density.key_at(u, tolerance, MAX_KEY_BYTES)
    assert key is not None
    assert u - tolerance <= density.position(key) <= u


@given(st.lists(st.text(st.characters(codec="utf-8"))))
def test_byte_order_is_code_point_order_for_valid_keys(keys: list[str]) -> None:
    assert sorted(keys, key=key_bytes) == sorted(keys)


# ---------------------------------------------------------------------------
# Examples


def test_range_bounds_are_exclusive_below_and_inclusive_above() -> None:
    shard = KeyRange("b", "d")
    assert not shard.contains("b")
    assert shard.contains(successor("b"))
    assert shard.contains("d")
    assert not shard.is_past("d")
    assert not shard.contains("d\x00")
    assert shard.is_past("d\x00")
    assert not shard.is_past("a")
    assert KeyRange().contains("anything")
    assert not KeyRange().is_past("\U0010ffff")


def test_empty_ranges() -> None:
    assert KeyRange("b", "b").is_empty
    assert KeyRange("b", "a").is_empty
    assert not KeyRange("b", successor("b")).is_empty  # holds one key: "b\x00"
    assert not KeyRange(None, "a").is_empty
    assert split(KeyRange("b", "a"), 8) == [KeyRange("b", "a")]


def test_order_is_utf8_not_utf16() -> None:
    # UTF-16 (Java, JavaScript) puts U+10000 before U+E000; S3 does not.
    assert key_lt("\ue000", "\U00010000")
    assert key_lt("\uffff", "\U00010000")
    assert key_lt("a\x7f", "a\x80")
    assert key_lt("a", "a\x00")


def test_surrogates_are_rejected() -> None:
    assert not is_valid_key("\ud800")
    with pytest.raises(ConfigurationError):
        key_bytes("a\udc00")
    with pytest.raises(ConfigurationError):
        KeyRange("a\ud800", None)


def test_valid_key_length() -> None:
    assert is_valid_key("é" * 512)
    assert not is_valid_key("é" * 512 + "a")
    assert not is_valid_key("")


@pytest.mark.parametrize("density", [TYPICAL_KEYS, UNIFORM_BYTES])
@pytest.mark.parametrize("prefix", ["", "logs/2024/", "p" * 1000])
@pytest.mark.parametrize("n", [2, 3, 16, 256, 1000])
def test_a_whole_prefix_splits_into_n(density: KeyDensity, prefix: str, n: int) -> None:
    shards = split(KeyRange(), n, prefix=prefix, density=density)
    assert len(shards) == n
    for left, _ in pairwise(shards):
        assert_boundary(left.hi, None, None, prefix)


def test_typical_points_are_printable_ascii() -> None:
    points = [shard.hi for shard in split(KeyRange(), 32, prefix="data/")[:-1]]
    printable = [p for p in points if p is not None and " " <= p[len("data/")] <= "~"]
    assert len(printable) >= 0.9 * len(points)
    # Near the top, the points still reach into non-ASCII keys.
    assert points[-1] is not None
    assert points[-1][len("data/")] > "\x7f"


def test_split_narrows_to_the_part_lo_and_hi_share() -> None:
    lo, hi = "logs/2024-01-05/x", "logs/2024-01-29/y"
    points = [s.hi for s in split(KeyRange(lo, hi), 4, prefix="logs/")[:-1]]
    assert len(points) == 3
    for p in points:
        assert_boundary(p, lo, hi, "logs/2024-01-")


def test_a_longer_prefix_steers_points_to_the_keys() -> None:
    shared = "x" * 900
    keys = [f"{shared}{i:04x}" for i in range(0, 65536, 97)]
    blind = split(KeyRange(), 8)
    steered = split(KeyRange(), 8, prefix=shared)
    for shards in (blind, steered):
        listed = [k for shard in shards for k in list_shard(keys, "", shard)]
        assert listed == sorted(keys)
    # Blind points fall beside the keys; points under the shared part cut them.
    assert sum(1 for shard in blind if list_shard(keys, "", shard)) == 1
    assert sum(1 for shard in steered if list_shard(keys, "", shard)) >= 4


def test_split_rejects_fewer_than_one_part() -> None:
    with pytest.raises(ConfigurationError):
        split(KeyRange(), 0)


def test_nothing_between_a_key_and_its_successor() -> None:
    assert midpoint("k", successor("k")) is None
    assert split_after(KeyRange("a", successor("k")), "k") is None
    assert split(KeyRange("k", successor("k")), 4) == [KeyRange("k", successor("k"))]


def test_fallback_prefers_xml_safe_points() -> None:
    # Only "k\x00" lies between these two: it is used, control character or not.
    assert midpoint("k", "k\x00\x00") == "k\x00"
    # Here "k\t" is a choice as well, and one XML can carry.
    assert midpoint("k", "k\x0b") == "k\t"


def test_built_in_points_avoid_characters_xml_cannot_carry() -> None:
    unsafe = {chr(c) for c in range(0x20) if c not in (0x9, 0xA, 0xD)} | {"\ufffe", "\uffff"}
    for density in (TYPICAL_KEYS, UNIFORM_BYTES):
        for shard in split(KeyRange(), 2000, density=density)[:-1]:
            assert shard.hi is not None
            assert not set(shard.hi) & unsafe, repr(shard.hi)


def test_split_after_at_the_length_limit() -> None:
    prefix = "a" * (MAX_KEY_BYTES - 1)  # one byte left for the rest of a key
    # "~" is the only one-byte character after "}" that a key may end with.
    halves = split_after(KeyRange(), prefix + "}", prefix=prefix)
    assert halves == (KeyRange(None, prefix + "~"), KeyRange(prefix + "~", None))
    # After DEL every character needs two bytes: no key fits after it.
    assert split_after(KeyRange(), prefix + "\x7f", prefix=prefix) is None
    # The largest key of all has no successor within the limit.
    assert midpoint("\U0010ffff" * (MAX_KEY_BYTES // 4), None) is None


def test_no_split_when_only_too_long_keys_lie_between() -> None:
    lo = "b" * (MAX_KEY_BYTES - 1) + "\x7f"
    hi = "b" * (MAX_KEY_BYTES - 2) + "c"
    assert successor(lo) != hi
    assert midpoint(lo, hi) is None


def test_split_after_far_below_the_model_resolution() -> None:
    last = "\U0010ffff" * 200 + "a" * 50  # past any depth the model reads
    halves = split_after(KeyRange(), last)
    assert halves is not None
    assert_boundary(halves[0].hi, last, None, "")


def test_split_after_rejects_a_key_outside_the_range() -> None:
    with pytest.raises(ConfigurationError):
        split_after(KeyRange("b", "d"), "e")


def test_density_validation() -> None:
    with pytest.raises(ConfigurationError):
        KeyDensity(())
    with pytest.raises(ConfigurationError):
        KeyDensity(((0x20, 0x30, 1), (0x2F, 0x40, 1)))  # overlapping
    with pytest.raises(ConfigurationError):
        KeyDensity(((0xD000, 0xE000, 1),))  # surrogates
    with pytest.raises(ConfigurationError):
        KeyDensity(((0x20, 0x30, 0),))  # no weight


# ---------------------------------------------------------------------------
# Against moto

MOTO_KEYS = [
    "plain.txt",
    "with space",
    " leading space",
    "trailing space ",
    "plus+sign",
    "percent%20literal",
    "100%",
    "%",
    "+",
    "new\nline",
    "tab\tkey",
    "a" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),
    "unicodé/ключ/鍵.bin",
    "日本語/ファイル",
    "emoji/🙂.png",
    "emoji/🙂🙂",
    "A",
    "Z",
    "a",
    "z",
    "0",
    "9",
    "~",
    "!",
    "zebra",
    "Zebra",
    # Around the places where UTF-8 changes length.
    "a\x7f",
    "a\x80",
    "a\xff",
    "a\u07ff",
    "a\u0800",
    "a\ud7ff",
    "a\ue000",
    "a\ufffd",
    "a\U00010000",
    "a\U0010ffff",
    "a~",
    "a{",
    "a/",
    "a/b",
    "a/b/c",
    "a-b",
    "a_b",
    "a.b",
    "dir/",
    "dir/file",
    "dir/sub/file.txt",
    "dir/ space",
    "dir/%2F",
    "dir/+",
    "dir/é",
    "dir/🙂",
    "dir/~",
    *[f"many/{i:03d}" for i in range(8)],
]


def s3_list_shard(s3: Any, bucket: str, prefix: str, shard: KeyRange) -> list[str]:
    """List one shard for real: ``StartAfter=lo``, pages, stop past ``hi``."""
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 25}
    if shard.lo is not None:
        params["StartAfter"] = shard.lo
    listed: list[str] = []
    while True:
        page = s3.list_objects_v2(**params)
        for item in page.get("Contents", []):
            if shard.is_past(item["Key"]):
                return listed
            listed.append(item["Key"])
        if not page["IsTruncated"]:
            return listed
        params["ContinuationToken"] = page["NextContinuationToken"]


def test_shards_against_moto(boto3_client: Any) -> None:
    s3 = boto3_client("s3")
    bucket = f"keyspace-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    put_s3_keys(s3, bucket, MOTO_KEYS)

    everything = s3_list_shard(s3, bucket, "", KeyRange())
    # moto orders keys as the model does: by UTF-8 bytes.
    assert everything == sorted(MOTO_KEYS, key=key_bytes)

    for prefix, n, density in [
        ("", 8, TYPICAL_KEYS),
        ("", 5, UNIFORM_BYTES),
        ("dir/", 3, TYPICAL_KEYS),
    ]:
        shards = split(KeyRange(), n, prefix=prefix, density=density)
        pieces = [s3_list_shard(s3, bucket, prefix, shard) for shard in shards]
        assert [k for piece in pieces for k in piece] == [
            k for k in everything if k.startswith(prefix)
        ]
        assert sum(1 for piece in pieces if piece) > 1  # the split did cut

    # Work stealing: a shard that has listed a few keys gives away the rest.
    last = everything[10]
    halves = split_after(KeyRange(), last)
    assert halves is not None
    left, right = halves
    rest = s3_list_shard(s3, bucket, "", KeyRange(last, left.hi))
    stolen = s3_list_shard(s3, bucket, "", right)
    assert everything[:11] + rest + stolen == everything
    assert rest
    assert stolen


def test_a_learned_density_cuts_hex_names_evenly() -> None:
    rng = random.Random(7)

    def name() -> str:
        return f"{rng.getrandbits(48):012x}.json"

    sample = sorted(name() for _ in range(1000))
    density = learned_density(k[:4] for k in sample)
    learned = split(KeyRange(), 16, density=density)
    typical = split(KeyRange(), 16)
    names = sorted(name() for _ in range(20_000))

    def counts(ranges: list[KeyRange]) -> list[int]:
        bounds = [r.hi for r in ranges[:-1]]
        out = [0] * len(ranges)
        for key in names:
            out[bisect.bisect_left(bounds, key)] += 1
        return out

    assert sum(1 for c in counts(typical) if c) <= 4  # the default: most shards empty
    spread = counts(learned)
    assert len(spread) == 16
    assert min(spread) > 0
    assert max(spread) < 3 * len(names) / 16
    # Control characters in a sample never reach a cut point.
    assert all("\x01" not in (r.hi or "") for r in split(KeyRange(), 64, density=LEARNED))


def test_learned_density_of_nothing_is_the_base() -> None:
    assert learned_density([]) is TYPICAL_KEYS
    with pytest.raises(ConfigurationError):
        learned_density(["a"], seen_share=1.0)
