"""The results as Markdown, JSON and a PNG chart; and the README's copy."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["markdown", "memory_peaks", "update_readme", "write_chart", "write_results"]

START, END = "<!-- results:start -->", "<!-- results:end -->"
ASYNCPAGER = ("asyncpager", "asyncpager-botocore", "asyncpager-cli")


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}x"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


def _rows(results: Mapping[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [r for r in results["rows"] if r["scenario"] == scenario]


def _label(row: Mapping[str, Any]) -> str:
    label = str(row["label"])
    if row["peer"] in ASYNCPAGER:
        label = f"**{label}**"
    if row["peer"] in ("asyncpager-cli", "aws-cli", "rclone"):
        label += " †"
    return label


def _status(row: Mapping[str, Any]) -> str:
    if row["status"] == "ok":
        return ""
    note = str(row["note"])
    return f"**{row['status'].upper()}**: {note[:160] + '…' if len(note) > 160 else note}"


def _best_peer(case: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    peers = [r for r in case if r["peer"] not in ASYNCPAGER and r["status"] == "ok"]
    return max(peers, key=lambda r: r["items_per_second"], default=None)


def _ours(case: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((r for r in case if r["peer"] == "asyncpager" and r["status"] == "ok"), None)


def memory_peaks(rows: Iterable[Mapping[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """Per listing size, smallest first: the median, lowest and highest peak
    RSS (MiB) of its successful runs, and how many there were."""
    by_size: dict[int, list[float]] = {}
    for row in rows:
        if row["status"] == "ok" and row["peak_rss_mib"]:
            by_size.setdefault(int(row["expected"]), []).append(float(row["peak_rss_mib"]))
    return [
        (
            size,
            {
                "median": statistics.median(peaks),
                "low": min(peaks),
                "high": max(peaks),
                "runs": len(peaks),
            },
        )
        for size, peaks in sorted(by_size.items())
    ]


def markdown(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    out: list[str] = []
    pinned = (
        "server pinned to core 0, every client to core 1"
        if meta["client_pinned"]
        else f"not pinned ({meta['cpu_count']} cores shared)"
    )
    out.append(
        f"Measured {meta['date']} with `{meta['command']}` "
        f"(scale `{meta['scale']['name']}`, {meta['seconds']:.0f} s in all; {pinned}; "
        f"Python {meta['python']}; asyncpager concurrency {meta['asyncpager_concurrency']}, "
        f"DynamoDB segments {meta['dynamodb_segments'] or '—'})."
    )
    out.append("")
    if results["scenarios"]:
        out.append("### Summary: asyncpager against the fastest peer")
        out.append("")
        out.append(
            "| scenario | latency | asyncpager items/s | vs boto3 | % of ceiling | ceiling (limit) "
            "| its CPU ms / request | fastest peer | its items/s |"
        )
        out.append("|---|---:|---:|---:|---:|---|---:|---|---:|")
    for scenario in results["scenarios"]:
        for latency in meta["latencies_ms"]:
            case = [r for r in _rows(results, scenario["id"]) if r["latency_ms"] == latency]
            ours = _ours(case)
            best = _best_peer(case)
            if ours is None:
                line = f"| {scenario['id']} | {latency} ms | — | — | — | — | — "
            else:
                per_request = ours["cpu"] * 1000 / ours["requests"] if ours["requests"] else None
                line = (
                    f"| {scenario['id']} | {latency} ms | {_num(ours['items_per_second'])} "
                    f"| {_ratio(ours['ratio_to_baseline'])} "
                    f"| {_pct(ours['percent_of_ceiling'])} "
                    f"| {_num(ours['ceiling'])} ({ours['ceiling_limit']}) "
                    f"| {_num(per_request, 1)} "
                )
            if best is None:
                line += "| — | — |"
            else:
                line += f"| {best['label']} | {_num(best['items_per_second'])} |"
            out.append(line)
    if results["scenarios"]:
        out.append("")
    for scenario in results["scenarios"]:
        parse = results["parse"][scenario["id"]]
        fast = (
            f"{parse['fast_ms']:.2f} ms with the compiled parser"
            if parse["fast_ms"]
            else (parse["fast_note"] or "compiled parser: n/a")
        )
        out.append(f"### {scenario['title']}")
        out.append("")
        out.append(
            f"{scenario['expected']:,} items; {parse['items_per_page']:,} items per page "
            f"({parse['body_bytes'] / 1024:,.0f} KiB); parsing a page costs "
            f"{parse['botocore_ms']:.2f} ms of CPU with botocore, {fast}; "
            f"a whole boto3 request costs {parse.get('request_ms', 0):.2f} ms; "
            f"streams at once for the latency ceiling: {scenario['streams']}"
            + (
                f"; {scenario['throttle_probability']:.0%} of requests throttled."
                if scenario["throttle_probability"]
                else "."
            )
        )
        out.append("")
        out.append(
            "| latency | peer | items/s | vs boto3 | CPU s / M items | peak RSS MiB "
            "| ceiling items/s | limit | % of ceiling | requests | wall s | |"
        )
        out.append("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
        out.extend(
            f"| {row['latency_ms']} ms | {_label(row)} | {_num(row['items_per_second'])} "
            f"| {_ratio(row['ratio_to_baseline'])} | {_num(row['cpu_per_million'], 1)} "
            f"| {_num(row['peak_rss_mib'])} | {_num(row['ceiling'])} | {row['ceiling_limit']} "
            f"| {_pct(row['percent_of_ceiling'])} | {row['requests']:,} "
            f"| {_num(row['wall'], 2)} | {_status(row)} |"
            for row in _rows(results, scenario["id"])
        )
        out.append("")
    if results["memory"]:
        out.append("### Memory: peak RSS against listing size, same queue size")
        out.append("")
        out.append("| keys | round | peer | peak RSS MiB | items/s | wall s | |")
        out.append("|---:|---:|---|---:|---:|---:|---|")
        out.extend(
            f"| {row['expected']:,} | {row.get('details', {}).get('round', 1)} | {row['label']} "
            f"| {_num(row['peak_rss_mib'], 1)} | {_num(row['items_per_second'])} "
            f"| {_num(row['wall'], 2)} | {_status(row)} |"
            for row in sorted(results["memory"], key=lambda r: r["expected"])
        )
        peaks = memory_peaks(results["memory"])
        if len(peaks) >= 2:
            (small, low), (large, high) = peaks[0], peaks[-1]
            growth = high["median"] / low["median"] - 1
            rounds = f"medians of {low['runs']} and {high['runs']} runs"
            out.append("")
            out.append(
                f"Peak RSS at {large:,} keys is {growth:+.1%} against {small:,} keys "
                f"({rounds}: {_num(low['median'], 1)} MiB, of "
                f"{_num(low['low'], 1)}-{_num(low['high'], 1)}, against "
                f"{_num(high['median'], 1)} MiB, of {_num(high['low'], 1)}-"
                f"{_num(high['high'], 1)}; target: within +10%)."
            )
        out.append("")
    notes = [
        "† a command-line tool: its wall time and CPU include the process's start-up "
        "(interpreter and imports); library rows time the listing only.",
        "CPU is the client process's, user + system, every thread.",
        "Ratios are from this one run; absolute figures move with the machine's load.",
    ]
    for peer, why in meta["missing_peers"].items():
        notes.append(f"`{peer}` skipped: {why}.")
    out.append("Notes:")
    out.append("")
    out.extend(f"- {note}" for note in notes)
    out.append("")
    return "\n".join(out)


def write_chart(results: Mapping[str, Any], path: Path) -> bool:
    """Items per second of every peer, one panel per scenario, ceilings dashed.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    scenarios = results["scenarios"]
    latencies = results["meta"]["latencies_ms"]
    peers: list[str] = []
    labels: dict[str, str] = {}
    for row in results["rows"]:
        if row["peer"] not in peers:
            peers.append(row["peer"])
            labels[row["peer"]] = row["label"]
    colors = plt.get_cmap("tab10")
    panels = len(scenarios) + (1 if results["memory"] else 0)
    columns = min(3, max(1, panels))
    lines = math.ceil(panels / columns)
    figure, axes = plt.subplots(
        lines, columns, figsize=(6.2 * columns, 4.2 * lines + 0.8), squeeze=False
    )
    from matplotlib.patches import Patch

    color = {peer: colors(i % 10) for i, peer in enumerate(peers)}
    width = 0.8 / max(1, len(peers))
    for index, scenario in enumerate(scenarios):
        ax = axes[index // columns][index % columns]
        rows = _rows(results, scenario["id"])
        shown: list[float] = []
        for p, peer in enumerate(peers):
            xs, ys = [], []
            for li, latency in enumerate(latencies):
                row = next(
                    (r for r in rows if r["peer"] == peer and r["latency_ms"] == latency), None
                )
                if row is not None and row["status"] == "ok" and row["items_per_second"]:
                    xs.append(li - 0.4 + width * (p + 0.5))
                    ys.append(row["items_per_second"])
            ax.bar(xs, ys, width, color=color[peer])
            shown += ys
        for li, latency in enumerate(latencies):
            limits = [
                r["ceiling"]
                for r in rows
                if r["latency_ms"] == latency and r["peer"] == "asyncpager" and r["ceiling"]
            ]
            if limits:
                ax.hlines(limits[0], li - 0.45, li + 0.45, colors="black", linestyles="dashed")
                shown.append(limits[0])
        ax.set_yscale("log")
        if shown:
            # Bars on a log axis need a common floor well below the lowest one.
            ax.set_ylim(min(shown) / 4, max(shown) * 2)
        ax.set_xticks(range(len(latencies)), [f"{ms} ms" for ms in latencies])
        ax.set_title(scenario["title"], fontsize=9)
        ax.set_ylabel("items / s (log)")
        ax.grid(axis="y", alpha=0.3)
    spare = [axes[i // columns][i % columns] for i in range(len(scenarios), lines * columns)]
    if spare and results["memory"]:
        ax = spare.pop(0)
        peaks = memory_peaks(results["memory"])
        medians = [p["median"] for _, p in peaks]
        ax.bar(
            [f"{size:,} keys" for size, _ in peaks],
            medians,
            yerr=[
                [m - p["low"] for m, (_, p) in zip(medians, peaks, strict=True)],
                [p["high"] - m for m, (_, p) in zip(medians, peaks, strict=True)],
            ],
            capsize=4,
            color=color.get("asyncpager", "tab:purple"),
        )
        ax.set_title("asyncpager peak RSS (median, range), same queue size", fontsize=9)
        ax.set_ylabel("MiB")
        ax.grid(axis="y", alpha=0.3)
    for ax in spare:
        ax.axis("off")
    handles = [Patch(color=color[peer], label=labels[peer]) for peer in peers]
    if handles:  # none in a run of the memory sizes alone
        figure.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8)
        figure.suptitle(
            "items per second by latency per request (dashed: ceiling of asyncpager's default "
            "configuration)",
            fontsize=10,
        )
    figure.tight_layout(rect=(0, 0.1, 1, 0.96))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_results(results: Mapping[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    md = directory / "latest.md"
    md.write_text("# Benchmark results\n\n" + markdown(results), encoding="utf-8")
    written.append(md)
    js = directory / "latest.json"
    js.write_text(json.dumps(_finite(results), indent=1) + "\n", encoding="utf-8")
    written.append(js)
    png = directory / "latest.png"
    if write_chart(results, png):
        written.append(png)
    return written


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float as None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def update_readme(results: Mapping[str, Any], readme: Path) -> None:
    """Replace what stands between the result markers of ``readme``."""
    text = readme.read_text(encoding="utf-8")
    body = f"{START}\n{markdown(results)}\n{END}"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {START} ... {END} block")
    readme.write_text(pattern.sub(lambda _: body, text), encoding="utf-8")
