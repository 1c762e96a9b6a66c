"""S3 planner: one ``s3://bucket/prefix`` listing as many key-range shards.

A single ``ListObjectsV2`` walk is one chain of continuation tokens: as slow
as the round trip times the number of pages. Key ranges are independent, so
the planner cuts the prefix's key space into ``shards`` ranges
(:func:`asyncpager.plan.keyspace.split`, in UTF-8 byte order) and the engine
runs them at once. The plan needs no knowledge of the key distribution: a
shard that turns out large gives away the upper part of what it has not yet
listed whenever the engine has idle workers (:meth:`S3RangeCursor.split`; the
cut falls among the characters its recent keys use, and comes after every
page while most workers are idle), and a shard that turns out empty costs one
short request (a shard's first page asks for ``PROBE_KEYS`` keys). Knowledge
saves round trips, though: cut blind, a tree of folders leaves most shards
empty and the streams double once per round trip until every worker has
one. :func:`sample_urls` asks for the top-level folders and a first page of
keys (one round trip), and ``plan_s3(samples=)`` cuts there, or leaves a URL
that one page holds as one stream.

Exactness. Shard ``(lo, hi]`` lists with ``StartAfter=lo`` and drops
everything past ``hi``; the next shard starts after ``hi``. A split narrows the
running shard to ``(lo, m]`` and hands ``(m, hi]`` to a new stream, with ``m``
after the last key already delivered, so no key is listed twice or missed,
including after a resume from a checkpoint (the committed stream carries the
narrowed bounds and the position).

Position. A shard's position is ``{"after": last key delivered, "token":
S3's continuation token}``: it resumes with the token when there is one, and
with ``StartAfter`` otherwise.

Delimiter listings (common prefixes) are not split: a split point inside a
rolled-up prefix would list that prefix twice. They are small by nature.

Directory buckets (S3 Express One Zone: ``name--zone--x-s3``, or
``--xa-s3``) list keys in no particular order and refuse ``StartAfter``, so
key ranges cannot be cut from them. Their folders are real, though: each is
listed on its own (:class:`S3WalkCursor`), with ``Delimiter="/"``, its
subfolders found on the way and handed to new streams while workers are
idle. Every object is listed once, by the folder it sits in directly. They
also refuse a prefix that does not end in ``/``; such a prefix is listed
from its last ``/`` and what does not start with it is dropped. A listing
with a delimiter (common prefixes, one level) is one stream, on its
continuation tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import anyio

from asyncpager.engine import register_cursor
from asyncpager.errors import ConfigurationError
from asyncpager.item_lines import ObjectLines
from asyncpager.pages import PageStream, RequestHooks
from asyncpager.plan.keyspace import (
    TYPICAL_KEYS,
    KeyDensity,
    KeyRange,
    key_bytes,
    learned_density,
    split,
    split_after,
)
from asyncpager.retry import RetryPolicy
from asyncpager.streams import Stream
from asyncpager.tokens import encode_token

__all__ = [
    "KeySample",
    "S3RangeCursor",
    "S3WalkCursor",
    "check_list_params",
    "is_directory_bucket",
    "parse_s3_url",
    "plan_s3",
    "sample_cut",
    "sample_density",
    "sample_folders",
    "sample_keys",
    "sample_urls",
]

KIND = "s3-range"
#: Directory buckets: folder by folder (S3WalkCursor).
WALK_KIND = "s3-walk"
#: Keys a shard keeps from its recent pages (one in SAMPLE_STEP of each) to
#: learn where names are when it splits.
SAMPLE_KEYS = 256
SAMPLE_STEP = 50
#: MaxKeys of a shard's first request (see S3RangeCursor.__init__).
PROBE_KEYS = 100
#: Keys in a full ListObjectsV2 page when MaxKeys is not set.
S3_PAGE_KEYS = 1000
# S3's rules, plus the upper case and underscores that old us-east-1 buckets may have.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")
_MAX_SHARDS = 100_000
#: ListObjectsV2 parameters the planner sets, never passed through from ``params``.
_LIST_OWNED = {
    "Bucket": "give it in the s3:// URL",
    "Prefix": "give it in the s3:// URL",
    "Delimiter": "use delimiter= (--delimiter)",
    "StartAfter": "each key range starts itself; resume from the checkpointed streams",
    "ContinuationToken": "resume from the checkpointed streams",
    "MaxKeys": "use page_size= (--page-size)",
    "EncodingType": "botocore asks for URL-encoded keys and decodes them",
}


def _modified(value: Any) -> dt.datetime:
    # Raw pages (Fetcher(raw_services=...)) carry the timestamp's text: as
    # sent (...Z) or as the JSON writers write it (...+00:00).
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(value)


def _content_key(entry: Mapping[str, Any]) -> bytes:
    return key_bytes(entry["Key"])


def _prefix_key(entry: Mapping[str, Any]) -> bytes:
    return key_bytes(entry["Prefix"])


def is_directory_bucket(bucket: str) -> bool:
    """Whether ``bucket`` names a directory bucket (S3 Express One Zone), as
    botocore's endpoint rules tell them apart: by the name's suffix."""
    return bucket.endswith(("--x-s3", "--xa-s3"))


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``.

    Raises :class:`ConfigurationError` naming what is wrong.
    """
    if not isinstance(url, str) or not url.startswith("s3://"):
        raise ConfigurationError(f"not an s3:// URL: {url!r}")
    # Not urlsplit: everything after the bucket is the prefix, verbatim, since
    # S3 keys may hold '#', '?', '%' and spaces.
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigurationError(f"no bucket in {url!r} (expected s3://BUCKET[/PREFIX])")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigurationError(f"invalid bucket name {bucket!r} in {url!r}")
    return bucket, prefix


def plan_s3(
    urls: Iterable[str],
    *,
    shards: int | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    page_size: int | None = None,
    delimiter: str | None = None,
    snapshot: dt.datetime | None = None,
    params: Mapping[str, Any] | None = None,
    densities: Mapping[str, KeyDensity] | None = None,
    folders: Mapping[str, Sequence[str]] | None = None,
    samples: Mapping[str, KeySample] | None = None,
) -> list[Stream]:
    """The streams that together list every object under each URL once.

    ``shards`` is the number of key ranges each URL starts with (more appear
    by splitting as the listing runs; default: 16 shared among the URLs, at
    least one each, since every shard costs a request and small buckets are
    many), cut where ``densities[url]`` says the
    keys are (see :func:`sample_density`; printable ASCII by default), and
    first at folder starts when ``folders[url]`` holds at least two of the
    top-level common prefixes (see :func:`sample_folders`); the streams then
    come folder after folder rather than in key order, so that dealing them
    round-robin hands out whole folders in turn. ``samples[url]`` (see
    :func:`sample_urls`) gives both, and says when one page holds every
    key: such a URL is one stream.
    ``snapshot`` leaves out objects
    modified after that instant, so that a listing of a bucket under writes is
    a consistent snapshot of the objects that existed then. ``params`` go
    into every request (``RequestPayer``, ``ExpectedBucketOwner``,
    ``FetchOwner``, ``OptionalObjectAttributes``); those the planner sets
    (the bucket, prefix, delimiter, page size, start and token) are refused.
    """
    urls = list(urls)
    if shards is None:
        shards = max(1, 16 // max(1, len(urls)))
    if shards < 1 or shards > _MAX_SHARDS:
        raise ConfigurationError(f"shards must be between 1 and {_MAX_SHARDS}, not {shards}")
    if snapshot is not None and snapshot.tzinfo is None:
        raise ConfigurationError("snapshot needs a timezone-aware datetime")
    check_list_params(params or {})
    streams: list[Stream] = []
    for url in urls:
        bucket, prefix = parse_s3_url(url)
        base: dict[str, Any] = dict(params or {})
        base["Bucket"] = bucket
        if prefix:
            base["Prefix"] = prefix
        if delimiter:
            base["Delimiter"] = delimiter
        density = (densities or {}).get(url, TYPICAL_KEYS)
        top = (folders or {}).get(url) or ()
        sample = (samples or {}).get(url)
        if sample is not None:
            density, top = sample.density, sample.folders
        directory = is_directory_bucket(bucket)
        if directory and delimiter and delimiter != "/":
            raise ConfigurationError(
                f"directory bucket {bucket} takes only '/' as delimiter, not {delimiter!r}"
            )
        if delimiter or directory or (sample is not None and sample.whole):
            ranges = [KeyRange()]
        else:
            ranges = _cut(shards, prefix, density, top)
        walk = directory and not delimiter
        for key_range in ranges:
            shape: dict[str, Any] = (
                {"given": []} if walk else {"lo": key_range.lo, "hi": key_range.hi}
            )
            if snapshot is not None:
                shape["snapshot"] = snapshot.isoformat()
            streams.append(
                Stream(
                    "s3",
                    "ListObjectsV2",
                    base,
                    region=region,
                    profile=profile,
                    endpoint_url=endpoint_url,
                    page_size=page_size,
                    kind=WALK_KIND if walk else KIND,
                    shape=shape,
                    labels={"bucket": bucket},
                )
            )
    return streams


def check_list_params(params: Mapping[str, Any]) -> None:
    """Refuse what the planner sets, and names ListObjectsV2 does not take
    (a typo is said before any request, not once per stream)."""
    for name in params:
        if name in _LIST_OWNED:
            raise ConfigurationError(f"{name} is set by the planner: {_LIST_OWNED[name]}")
    if not params:
        return
    takes = _list_takes()
    unknown = sorted(set(params) - takes)
    if unknown:
        raise ConfigurationError(
            f"ListObjectsV2 takes no {', '.join(unknown)} here (only {', '.join(sorted(takes))})"
        )


@functools.cache
def _list_takes() -> frozenset[str]:
    """The ListObjectsV2 parameters a caller may pass (botocore's model, read once)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("s3")
    members = model.operation_model("ListObjectsV2").input_shape.members
    return frozenset(members) - frozenset(_LIST_OWNED)


def _cut(shards: int, prefix: str, density: KeyDensity, folders: Sequence[str]) -> list[KeyRange]:
    """``shards`` ranges: by the density, or first at folder starts when the
    top-level folders are known."""
    starts = sorted(
        {f for f in folders if f.startswith(prefix) and len(f) > len(prefix)}, key=key_bytes
    )
    if len(starts) < 2 or shards < 3:
        return split(KeyRange(), shards, prefix=prefix, density=density)
    # (lo, start] ends right before a folder, whose keys all sort after its
    # prefix: each piece is one folder (and any plain keys sorting between
    # it and the next), or a run of folders when there are more than
    # shards. The first holds the plain keys before the first folder.
    pieces = shards - 1
    # Names one level down are likely made of what the folders' names are
    # made of (lowercase words, digits of a date, hex): cut there, not over
    # all of printable ASCII, which put 42 of 64 shards of a tree of
    # two-letter names where no name was.
    inner = learned_density(f[len(prefix) :].rstrip("/")[:4] for f in starts)
    if len(starts) > pieces:
        starts = [starts[(i * len(starts)) // pieces] for i in range(pieces)]
    bounds: list[str | None] = [None, *starts, None]
    folder_pieces = [KeyRange(a, b) for a, b in pairwise(bounds[1:])]
    share, extra = divmod(pieces, len(folder_pieces))
    cuts: list[list[KeyRange]] = []
    for index, piece in enumerate(folder_pieces):
        count = share + (1 if index < extra else 0)
        folder = piece.lo
        assert folder is not None
        # Inside a folder, at its next level of names, which a sample from
        # the first folder does not show (its keys share the whole path):
        # a guess from the folders' own names, which may well leave most
        # of the folder in one range...
        cuts.append(split(piece, count, prefix=folder, density=inner) if count > 1 else [piece])
    # ...so the ranges go out folder after folder, the first range of every
    # folder before the second of any: processes and tasks are dealt ranges
    # round-robin in this order, and get whole folders in turn.
    ranges = [KeyRange(bounds[0], bounds[1])]
    for depth in range(max(map(len, cuts))):
        ranges += [c[depth] for c in cuts if depth < len(c)]
    return ranges


async def _first_page(url: str, client: Any, **extra: Any) -> tuple[Any, str]:
    """The first page (up to 1,000 entries) under ``url``, or ``None`` when
    it cannot be read (the listing itself will say why), and the prefix."""
    bucket, prefix = parse_s3_url(url)
    if is_directory_bucket(bucket):
        return None, prefix  # listed as one stream: nothing to cut
    params: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000, **extra}
    if prefix:
        params["Prefix"] = prefix
    try:
        return await client.list_objects_v2(**params), prefix
    except Exception:
        return None, prefix


def _folders_of(page: Any) -> list[str]:
    found = [p["Prefix"] for p in (page or {}).get("CommonPrefixes") or [] if p.get("Prefix")]
    return found if len(found) >= 2 else []


def _density_of(page: Any, prefix: str) -> KeyDensity:
    keys = [c["Key"][len(prefix) :] for c in (page or {}).get("Contents") or []]
    if page is None or not page.get("IsTruncated") or len(keys) < 2:
        return TYPICAL_KEYS
    # Sorted keys: what the first and the last share, all share.
    shared = len(os.path.commonprefix([keys[0], keys[-1]]))  # noqa: RUF071 - characters wanted
    # The characters right after the shared start are the ones that place
    # a cut; the rest of each name would only blur them.
    return learned_density(k[shared : shared + 4] for k in keys)


async def sample_folders(url: str, client: Any, delimiter: str = "/") -> list[str]:
    """The top-level folders under ``url`` (up to a thousand): one listing
    with ``Delimiter``.

    A first page of keys shows which characters names use, not where the
    names are: in a tree of folders it lies inside the first folder, and a
    cut learned from it put all of a million-key bucket in one of 16
    shards (then dealt to one of two ``--workers`` processes). The folder
    names are where the keys are. Empty when there are fewer than two or
    the listing cannot be read (the listing itself will say why).
    """
    page, _ = await _first_page(url, client, Delimiter=delimiter)
    return _folders_of(page)


async def sample_density(
    url: str, client: Any, params: Mapping[str, Any] | None = None
) -> KeyDensity:
    """Where the keys under ``url`` are, learned from one page of them.

    Shards dealt once and for all (to ``--workers`` processes, to cluster
    tasks) cannot even out by splitting across them, so their first cut
    matters: a bucket of hex names cut by the printable-ASCII model leaves
    most shards empty and one process with all the work. The first page's
    keys, after what they share, show the characters names are made of. A
    bucket that fits in one page, or a page that cannot be read (the
    listing itself will say why), gives the default model. ``params`` go
    into the request.
    """
    page, prefix = await _first_page(url, client, **(params or {}))
    return _density_of(page, prefix)


@dataclasses.dataclass(frozen=True)
class KeySample:
    """What one or two listings showed of the keys under a URL, for
    :func:`plan_s3` (``samples=``) to cut its shards where they are."""

    #: The characters its names are made of (see :func:`sample_density`).
    density: KeyDensity = TYPICAL_KEYS
    #: Its top-level folders (see :func:`sample_folders`); empty below two.
    folders: tuple[str, ...] = ()
    #: The first page of keys was the last: one stream lists them all.
    whole: bool = False


async def sample_keys(
    url: str, client: Any, delimiter: str = "/", params: Mapping[str, Any] | None = None
) -> KeySample:
    """Where the keys under ``url`` are: the first page of a ``Delimiter``
    listing (its folders), and the first page of keys (their density, and
    whether one page holds them all), asked at once: one round trip, for a
    request that a listing without folders did not need (it holds exactly
    the first page of keys: a key with the delimiter would have been rolled
    up). ``params`` go into both (a requester-pays bucket answers only
    requests that carry ``RequestPayer``). A URL that cannot be read (the
    listing itself will say why) or a directory bucket (walked, never cut)
    gives the default sample."""
    extra = dict(params or {})
    pages: dict[str, Any] = {}

    async def first(name: str, **more: Any) -> None:
        pages[name] = await _first_page(url, client, **extra, **more)

    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(first, "folders", Delimiter=delimiter))
        tg.start_soon(first, "keys")
    (page, prefix), (keys, _) = pages["folders"], pages["keys"]
    if page is None or keys is None:
        return KeySample()
    return KeySample(
        _density_of(keys, prefix), tuple(_folders_of(page)), whole=not keys.get("IsTruncated")
    )


async def sample_cut(
    url: str, client: Any, delimiter: str = "/", params: Mapping[str, Any] | None = None
) -> tuple[KeyDensity, list[str]]:
    """``(sample_density(url), sample_folders(url))``, from :func:`sample_keys`."""
    sample = await sample_keys(url, client, delimiter, params)
    return sample.density, list(sample.folders)


async def sample_urls(
    urls: Iterable[str], client: Any, params: Mapping[str, Any] | None = None
) -> dict[str, KeySample]:
    """:func:`sample_keys` of every URL, all at once, for ``plan_s3(samples=)``:
    a round trip before the listing, which then starts with every request
    slot on keys rather than finding them by splitting, a slot more per
    shard that has keys and a round trip."""
    samples: dict[str, KeySample] = {}

    async def one(url: str) -> None:
        samples[url] = await sample_keys(url, client, params=params)

    async with anyio.create_task_group() as tg:
        for url in dict.fromkeys(urls):
            tg.start_soon(one, url)
    return samples


class _Listing:
    """What both S3 cursors hold: the stream, how to ask (client, hooks,
    retries, clock), the snapshot, and a directory bucket's prefix that is
    not a folder."""

    def __init__(
        self,
        stream: Stream,
        client: Any,
        *,
        hooks: RequestHooks | None,
        retry: RetryPolicy | None,
        clock: Any,
    ) -> None:
        self.stream = stream
        self._client, self._hooks, self._retry, self._clock = client, hooks, retry, clock
        snapshot = stream.shape.get("snapshot")
        self._snapshot = dt.datetime.fromisoformat(snapshot) if snapshot else None
        self._prefix = str(stream.params.get("Prefix", ""))
        self._directory = is_directory_bucket(str(stream.params.get("Bucket", "")))
        #: A directory bucket's prefix that it would refuse (not ending in
        #: "/"): listed from its last "/", what does not start with it dropped
        #: (deeper entries all start with it).
        self._keep: str | None = None
        if self._directory and self._prefix and not self._prefix.endswith("/"):
            self._keep = self._prefix

    def _pages_from(
        self, params: dict[str, Any], token: str | None, page_size: int | None
    ) -> PageStream:
        """``ListObjectsV2`` pages: from ``token`` if there is one."""
        config: dict[str, Any] = {}
        if token:
            config["StartingToken"] = encode_token({"ContinuationToken": token})
        if page_size is not None:
            config["PageSize"] = page_size
        return PageStream(
            self._client,
            "list_objects_v2",
            params,
            pagination_config=config,
            retry=self._retry,
            clock=self._clock,
            hooks=self._hooks,
        )

    def _filtered(
        self, contents: Sequence[Mapping[str, Any]], prefixes: list[dict[str, Any]]
    ) -> tuple[Sequence[Mapping[str, Any]], list[dict[str, Any]]]:
        """What the kept prefix and the snapshot leave of a page's objects and
        common prefixes (both as they came when neither is set)."""
        if self._keep is not None:
            keep = self._keep
            contents = [c for c in contents if c["Key"].startswith(keep)]
            prefixes = [p for p in prefixes if p["Prefix"].startswith(keep)]
        if self._snapshot is not None:
            snapshot = self._snapshot
            contents = [c for c in contents if _modified(c["LastModified"]) <= snapshot]
        return contents, prefixes


_DIGITS = frozenset("0123456789")


def _alphabet(keys: Iterable[str], at: int) -> KeyDensity:
    """A density over the characters ``keys`` hold from ``at`` on, each
    once, and every digit once one is seen: a few keys of numbered names
    show some digits, and the names to come hold the others (from two keys,
    ``0000`` and ``0050``, the model put ``1499`` a quarter of the way from
    ``0099`` to the end). Letters are not filled in so: hexadecimal names
    hold six of them."""
    seen = {c for key in keys for c in key[at:]}
    if seen & _DIGITS:
        seen |= _DIGITS
    return learned_density(["".join(sorted(seen))])


def _folder_of(prefix: str) -> str:
    """The folder ``prefix`` lies in (up to its last "/"; "" at the top)."""
    return prefix[: prefix.rfind("/") + 1]


class S3RangeCursor(_Listing):
    """Walks one key range of one listing; see the module docstring."""

    def __init__(self, stream: Stream, client: Any, **how: Any) -> None:
        super().__init__(stream, client, **how)  # hooks=, retry=, clock=
        self._range = KeyRange(stream.shape.get("lo"), stream.shape.get("hi"))
        if self._directory and (self._range.lo is not None or self._range.hi is not None):
            raise ConfigurationError(
                f"directory bucket {stream.params['Bucket']} lists keys in no order:"
                " it cannot be listed by key range"
            )
        position: Mapping[str, Any] = stream.position or {}
        self._after: str | None = position.get("after")
        self._token: str | None = position.get("token")
        self._splittable = "Delimiter" not in stream.params and not self._directory
        # A shard starting from scratch reads a short page first: a range
        # that turns out empty or small (most ranges given away by a split
        # in a sparse key space) then costs a tenth of a page's parse
        # instead of a whole page of the next shard's keys, thrown away. A
        # last shard has no next one: whatever its first page holds is its
        # own, and a bucket that one page holds takes one request.
        self._probing = (
            self._splittable
            and self._range.hi is not None
            and self._after is None
            and not self._token
            and (stream.page_size is None or stream.page_size > PROBE_KEYS)
        )
        # A directory bucket's stream resumes on its token alone: a position
        # without one is after its last page.
        self._finished = self._directory and self._after is not None and not self._token
        self._count = 0
        self._pages_at_split = 0
        self._page_first: str | None = None
        self._page_keys = 0
        self._sample: list[str] = []
        self._pages = self._open(PROBE_KEYS if self._probing else stream.page_size)

    def _open(self, page_size: int | None) -> PageStream:
        """Pages from where the shard stands: on its continuation token, or
        after its last key (its lower bound when it has none)."""
        params = dict(self.stream.params)
        if self._keep is not None:
            params["Prefix"] = _folder_of(self._keep)
            if not params["Prefix"]:
                del params["Prefix"]
        if not self._token and not self._directory:
            start_after = self._after if self._after is not None else self._range.lo
            if start_after is not None:
                params["StartAfter"] = start_after
        return self._pages_from(params, self._token, page_size)

    async def next_page(self) -> dict[str, Any] | None:
        if self._finished:
            return None
        try:
            page = await self._pages.__anext__()
        except StopAsyncIteration:
            self._finished = True
            return None
        hi = key_bytes(self._range.hi) if self._range.hi is not None else None
        contents: Sequence[Mapping[str, Any]] = page.get("Contents") or []
        prefixes: list[dict[str, Any]] = page.get("CommonPrefixes") or []
        last: str | None = None
        if contents:
            last = contents[-1]["Key"]
        if prefixes and (last is None or key_bytes(prefixes[-1]["Prefix"]) > key_bytes(last)):
            last = prefixes[-1]["Prefix"]
        if hi is not None and last is not None and key_bytes(last) > hi:
            # Past the upper bound: the rest belongs to the next shard. S3
            # answers in key order, so a page that stays below the bound (all
            # but a shard's last) costs one comparison, not one per key.
            contents = contents[: bisect_right(contents, hi, key=_content_key)]
            prefixes = prefixes[: bisect_right(prefixes, hi, key=_prefix_key)]
            self._finished = True
        contents, prefixes = self._filtered(contents, prefixes)
        if "Contents" in page or contents:
            page["Contents"] = contents
        if "CommonPrefixes" in page:
            page["CommonPrefixes"] = prefixes
        page["KeyCount"] = len(contents) + len(prefixes)
        if last is not None:
            self._after = last
            # Where this page began: its span, beside the rest, says whether
            # the rest is worth a split (see _rest_fits_a_page).
            self._page_first = contents[0]["Key"] if contents else None
            self._page_keys = len(contents)
        if self._splittable and contents:
            sample = self._sample
            if isinstance(contents, ObjectLines):
                sample.extend(contents.keys(SAMPLE_STEP))  # without reading every object
            else:
                sample.extend(c["Key"] for c in contents[::SAMPLE_STEP])
            if len(sample) > SAMPLE_KEYS:
                del sample[:-SAMPLE_KEYS]
        self._token = page.get("NextContinuationToken")
        self._count += 1
        if not page.get("IsTruncated") or self._pages.done or not self._token:
            self._finished = True
        elif self._probing:
            # Go on from the short first page with full pages.
            self._probing = False
            await self._pages.aclose()
            self._pages = self._open(self.stream.page_size)
        return page

    def count_items(self, page: Mapping[str, Any]) -> int:
        return len(page.get("Contents") or ()) + len(page.get("CommonPrefixes") or ())

    @property
    def position(self) -> Any:
        return {"after": self._after, "token": self._token}

    @property
    def finished(self) -> bool:
        return self._finished

    def split(self, *, again: bool = False) -> tuple[Stream, Stream] | None:
        # A split costs up to a page: the narrowed shard's last page runs
        # past its new bound and that part is parsed for nothing. A shard
        # splits at most once per page it got; the engine asks only while
        # a slot is idle and the loop has CPU to spare (Fetcher._maybe_split),
        # where a stream more is worth that page: the stream count must grow
        # fastest while it is lowest (measured on a simulated 300-page
        # listing of nested folders at 64 workers: 108 rounds of requests
        # splitting every 4 pages, 25 splitting on every page).
        if self._finished or not self._splittable:
            return None
        # Asked again for another process (Fetcher.give_away): the page a
        # split may cost is worth an idle core, but a shard that has listed
        # nothing knows nothing of where its keys are.
        if self._count == self._pages_at_split and not (again and self._count):
            return None
        self._pages_at_split = self._count
        if self._rest_fits_a_page():
            return None
        halves = split_after(
            self._range, self._after, prefix=self._prefix, density=self._split_density()
        )
        if halves is None:
            return None
        mine, theirs = halves
        self._range = mine
        self.stream = self.stream.reshaped(lo=mine.lo, hi=mine.hi)
        child = self.stream.reshaped(lo=theirs.lo, hi=theirs.hi).at(None)
        return self.stream, child

    def _rest_fits_a_page(self) -> bool:
        """Whether what is left of the range, by the key model, is narrower
        than what the next page will span (the last page's span, scaled
        from its keys to a full page's): that page likely ends the shard,
        and a split would only make a stream of a few keys or none (and a
        request for each). Measured at the end of a million-key listing,
        half of the streams split off then held no key."""
        first, after, end = self._page_first, self._after, self._range.hi
        if first is None or after is None or end is None or not self._page_keys:
            return False
        base = len(os.path.commonprefix([first, end]))  # noqa: RUF071 - characters wanted
        density = _alphabet([*self._sample, first, after], base)
        # The model reads as many characters as it places cuts by.
        u_first, u_after, u_end = (
            density.position(k[base : base + 64]) for k in (first, after, end)
        )
        full = self.stream.page_size or S3_PAGE_KEYS
        return (u_end - u_after) * self._page_keys < (u_after - u_first) * full

    def _split_density(self) -> KeyDensity:
        """Where the names are, learned from this shard's recent keys.

        The default model spreads a range's weight over all of printable
        ASCII; in a tree of folders most of that holds nothing (after
        ``am/`` comes ``/``, never ``0``-``~``), so halving it by the model
        gives away empty ranges again and again while one shard keeps the
        work. Keys seen so far show which characters names use at the place
        the cut is made (right after what the last key and the bound share),
        as ``sample_density`` does for the first cut; where they are digits,
        every digit counts too.
        """
        sample = self._sample
        if len(sample) < 2 or self._after is None:
            return TYPICAL_KEYS
        skip = len(self._prefix)
        hi = self._range.hi
        at = skip
        if hi is not None and hi.startswith(self._prefix):
            at += len(os.path.commonprefix([self._after[skip:], hi[skip:]]))  # noqa: RUF071
        slices = [k[at : at + 4] for k in sample]
        if any(c in _DIGITS for piece in slices for c in piece):
            # Every digit once more: the first few digits of numbered names
            # are shared by most recent keys (``hot/12`` of
            # ``hot/123456.log``), and counted alone they drew the cut to
            # just past the shard's last key, its next page then read
            # mostly past the new bound (a million keys in one folder of
            # numbers read half a million keys twice).
            slices.append("".join(sorted(_DIGITS)))
        return learned_density(slices)

    async def aclose(self) -> None:
        await self._pages.aclose()


register_cursor(KIND, S3RangeCursor)


class S3WalkCursor(_Listing):
    """Walks a directory bucket folder by folder; see the module docstring.

    Directory buckets list keys in no order, so no key range can be cut
    from them; but their folders are real, and each is a listing of its
    own. The walk lists a folder with ``Delimiter="/"``: its objects are the
    page's items, and its subfolders go on a stack, above the folder's own
    continuation, to be listed next (depth first: the stack holds at most a
    page of subfolders per level). A split gives the shallowest folder not
    yet started to a new stream, and lists it as given: a resume from an
    earlier position, whose stack or whose re-listed pages still name it,
    leaves it out.

    Position: ``{"stack": [[folder, continuation token or None], ...]}``,
    the top last.
    """

    def __init__(self, stream: Stream, client: Any, **how: Any) -> None:
        super().__init__(stream, client, **how)  # hooks=, retry=, clock=
        self._given = frozenset(stream.shape.get("given") or ())
        position: Mapping[str, Any] = stream.position or {}
        stack = position.get("stack")
        if stack is None:
            stack = [[_folder_of(self._prefix), None]]
        # Entries are replaced, never changed in place: a page's position is
        # then a copy of the list alone.
        self._stack: list[tuple[str, str | None]] = [
            (folder, token) for folder, token in stack if folder not in self._given
        ]
        self._finished = not self._stack
        self._pages: PageStream | None = None

    def _open(self, folder: str, token: str | None) -> PageStream:
        params = dict(self.stream.params)
        params["Delimiter"] = "/"
        if folder:
            params["Prefix"] = folder
        else:
            params.pop("Prefix", None)
        return self._pages_from(params, token, self.stream.page_size)

    async def _close_pages(self) -> None:
        if self._pages is not None:
            pages, self._pages = self._pages, None
            await pages.aclose()

    async def next_page(self) -> dict[str, Any] | None:
        while self._stack:
            folder, token = self._stack[-1]
            if self._pages is None:
                self._pages = self._open(folder, token)
            try:
                page = await self._pages.__anext__()
            except StopAsyncIteration:
                self._stack.pop()
                await self._close_pages()
                continue
            return await self._take(folder, page)
        self._finished = True
        return None

    async def _take(self, folder: str, page: dict[str, Any]) -> dict[str, Any]:
        contents, prefixes = self._filtered(
            page.get("Contents") or [], page.pop("CommonPrefixes", None) or []
        )
        given = self._given
        folders = [p["Prefix"] for p in prefixes if p.get("Prefix") and p["Prefix"] not in given]
        if "Contents" in page or contents:
            page["Contents"] = contents
        page["KeyCount"] = len(contents)
        page.pop("Delimiter", None)  # the walk's own, not asked for
        token = page.get("NextContinuationToken")
        assert self._pages is not None
        if page.get("IsTruncated") and token and not self._pages.done:
            self._stack[-1] = (folder, token)  # the folder goes on after its subfolders
        else:
            self._stack.pop()
            await self._close_pages()
        if folders:
            # Listed next: the open listing resumes later on its token.
            await self._close_pages()
            self._stack.extend((f, None) for f in folders)
        self._finished = not self._stack
        return page

    def count_items(self, page: Mapping[str, Any]) -> int:
        return len(page.get("Contents") or ())

    @property
    def position(self) -> Any:
        return {"stack": list(self._stack)}

    @property
    def finished(self) -> bool:
        return self._finished

    def split(self, *, again: bool = False) -> tuple[Stream, Stream] | None:
        # The shallowest folder not started (the top of the stack is next,
        # or being listed): likely the largest subtree left. It costs no
        # request, so unlike a key range's split it may come again at once,
        # one folder for every idle slot.
        if self._finished:
            return None
        index = next((i for i, e in enumerate(self._stack[:-1]) if e[1] is None), None)
        if index is None:
            return None
        folder = self._stack.pop(index)[0]
        self._given = self._given | {folder}
        self.stream = self.stream.reshaped(given=sorted(self._given))
        child = self.stream.reshaped(given=[]).at({"stack": [[folder, None]]})
        return self.stream, child

    async def aclose(self) -> None:
        await self._close_pages()


register_cursor(WALK_KIND, S3WalkCursor)
