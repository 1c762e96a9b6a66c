"""The benchmark report's memory section: each size compared by the median
of its runs, the runs shown one by one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report import markdown, memory_peaks

RESULTS = Path(__file__).parent.parent / "benchmarks" / "results" / "full-50ms.json"


def _row(keys: int, peak: float, round_: int, status: str = "ok") -> dict[str, Any]:
    return {
        "scenario": "memory",
        "latency_ms": 0,
        "peer": "asyncpager",
        "label": "asyncpager Fetcher",
        "status": status,
        "expected": keys,
        "items": keys if status == "ok" else 0,
        "peak_rss_mib": peak,
        "items_per_second": 1000.0,
        "wall": 1.0,
        "note": "",
        "details": {"round": round_},
    }


def _results(memory: list[dict[str, Any]]) -> dict[str, Any]:
    # A results file the suite wrote, its memory runs replaced.
    results: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8"))
    results["memory"] = memory
    return results


def test_each_size_is_its_runs_median_and_range() -> None:
    rows = [
        _row(10, 100.0, 1),
        _row(100, 91.0, 1),
        _row(10, 95.0, 2),
        _row(100, 83.0, 2),
        _row(10, 101.0, 3),
        _row(100, 120.0, 3, status="failed"),
        _row(100, 86.0, 4),
    ]
    peaks = memory_peaks(rows)
    assert peaks == [
        (10, {"median": 100.0, "low": 95.0, "high": 101.0, "runs": 3}),
        # The failed run is left out.
        (100, {"median": 86.0, "low": 83.0, "high": 91.0, "runs": 3}),
    ]


def test_the_report_compares_the_medians_and_lists_every_run() -> None:
    rows = [_row(10, 100.0, 1), _row(100, 112.0, 1), _row(10, 90.0, 2), _row(100, 96.0, 2)]
    text = markdown(_results(rows))
    # Medians 95 and 104: +9.5%, where the first runs alone read +12.0%.
    assert "is +9.5% against 10 keys (medians of 2 and 2 runs: 95.0 MiB, of 90.0-100.0" in text
    section = text[text.index("### Memory") :]
    assert section.count("| asyncpager Fetcher |") == 4
    assert section.index("| 10 | 2 |") < section.index("| 100 | 1 |")


def test_a_results_file_of_one_run_per_size_still_renders() -> None:
    rows = [_row(10, 80.0, 1), _row(100, 84.0, 1)]
    for row in rows:
        del row["details"]
    text = markdown(_results(rows))
    assert "is +5.0% against 10 keys (medians of 1 and 1 runs" in text


def test_a_run_of_the_memory_sizes_alone_has_no_summary_of_scenarios() -> None:
    results = _results([_row(10, 80.0, 1), _row(100, 84.0, 1)])
    results.update(scenarios=[], rows=[], parse={})
    text = markdown(results)
    assert "### Summary" not in text
    assert "\n\n\n" not in text
    assert text.index("Measured") < text.index("### Memory")
