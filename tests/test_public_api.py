"""The public surface is explicit: every name in __all__ exists, is
documented, and belongs to the package; nothing public is left out."""

from __future__ import annotations

import importlib
import inspect
import pathlib

import asyncpager


def test_all_names_exist_and_are_documented() -> None:
    assert len(asyncpager.__all__) == len(set(asyncpager.__all__))
    for name in asyncpager.__all__:
        value = getattr(asyncpager, name)
        if name.startswith("__"):
            continue
        assert (inspect.getdoc(value) or "").strip(), f"{name} has no docstring"
        module = getattr(value, "__module__", "")
        assert module.startswith("asyncpager"), f"{name} comes from {module}"


def test_public_classes_and_functions_are_exported() -> None:
    wanted = {
        "asyncpager.errors": set(importlib.import_module("asyncpager.errors").__all__),
        "asyncpager.engine": {"Fetcher", "PageFlow", "RunReport", "Stats", "StreamStats"},
        "asyncpager.pacing": {"Aimd", "BucketStats", "Cubic", "Pacer", "RateLimit"},
        "asyncpager.pages": {"PageStream", "paginate"},
        "asyncpager.streams": {"Stream"},
        "asyncpager.plan.s3": {"KeySample", "parse_s3_url", "plan_s3", "sample_urls"},
        "asyncpager._http": {"LeanHTTPSession"},
    }
    for module_name, names in wanted.items():
        module = importlib.import_module(module_name)
        for name in names:
            assert name in module.__all__, f"{module_name} does not list {name}"
            assert getattr(asyncpager, name) is getattr(module, name)
            assert name in asyncpager.__all__


def test_package_is_typed() -> None:
    root = pathlib.Path(asyncpager.__file__).parent
    assert (root / "py.typed").is_file()
