"""What this machine gives N CPU-bound Python processes at once, against one alone.

    python -m benchmarks.machine [--processes 2] [--rounds 3] [--seconds 2]

The 1 -> N workers ratio of the export is read against this: the same
pure-Python work (decoding a page of DynamoDB JSON and walking its items, as
a worker's parse does, with no I/O) is timed in one process pinned to the
client's core, then in N processes started together and left to the
scheduler, as ``--workers N`` is. The machine's scaling is N times the time
alone over the slowest of the N (the medians of each over interleaved
probes). A machine whose cores are shared with other tenants (or are
siblings of one physical core) gives less than N, and no
export can beat that: on the 2-core virtual machine these figures come from,
one probe's ratio read anywhere from 1.2x to 2.3x within a minute (its two
sides run a second apart, and the same work alone took 1.0 to 2.0 s), and
the medians of eight read 1.63x.

Each process times only its own work (not its interpreter's start), so the
figure does not include what forking or starting costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

CLIENT_CPU = 1

#: One process's work: ``rounds`` decodes of a page of typed items, each
#: walked into plain values. Prints its own wall and CPU seconds.
_WORK = """
import json, sys, time
rounds = int(sys.argv[1])
item = {"pk": {"S": "user#000123"}, "n": {"N": "12345.5"}, "flag": {"BOOL": True},
        "tags": {"SS": ["a", "b", "c"]}, "m": {"M": {"x": {"N": "1"}, "y": {"S": "z"}}},
        "l": {"L": [{"N": "1"}, {"S": "two"}]}, "s": {"S": "lorem ipsum dolor sit amet"}}
page = json.dumps({"Items": [dict(item, pk={"S": f"user#{i:06d}"}) for i in range(1000)]})
def plain(v):
    (tag, x), = v.items()
    if tag == "M":
        return {k: plain(y) for k, y in x.items()}
    if tag == "L":
        return [plain(y) for y in x]
    return x
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(rounds):
    items = [{k: plain(v) for k, v in it.items()} for it in json.loads(page)["Items"]]
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def pin_client() -> None:
    """This process on the client's core (the benchmarks' endpoint has the
    other), where the machine has more than one."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})


def _unpin() -> None:
    # Every core, whatever the caller was given (a child inherits its
    # parent's affinity).
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _start(rounds: int, *, pin: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WORK, str(rounds)],
        stdout=subprocess.PIPE,
        preexec_fn=pin_client if pin else _unpin,
        text=True,
    )


def _timed(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate(timeout=600)
    if process.returncode != 0:
        raise SystemExit(f"the machine probe failed ({process.returncode})")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def calibrate(seconds: float) -> int:
    """Rounds of the work that take about ``seconds`` alone."""
    sample = 20
    took = _timed(_start(sample, pin=True))["wall"]
    return max(sample, round(sample * seconds / max(took, 1e-6)))


def probe(processes: int, rounds: int) -> dict[str, Any]:
    """One alone, then ``processes`` at once: their times and the ratio."""
    alone = _timed(_start(rounds, pin=True))
    together = [_timed(p) for p in [_start(rounds, pin=False) for _ in range(processes)]]
    slowest = max(t["wall"] for t in together)
    return {
        "processes": processes,
        "alone": alone,
        "together": together,
        "ratio": processes * alone["wall"] / slowest,
    }


def scaling(processes: int, *, repeats: int = 5, seconds: float = 1.0) -> dict[str, Any]:
    """``repeats`` probes of about ``seconds`` each, interleaved (alone,
    together, alone, ...) so that both sides see the same stretch of the
    machine: the ratio of the two sides' medians, and the probes' range."""
    rounds = calibrate(seconds)
    probes = [probe(processes, rounds) for _ in range(repeats)]
    return summarize(processes, rounds, probes)


def summarize(processes: int, rounds: int, probes: list[dict[str, Any]]) -> dict[str, Any]:
    """The machine's scaling from interleaved probes."""
    ratios = [p["ratio"] for p in probes]
    alone = statistics.median(p["alone"]["wall"] for p in probes)
    slowest = statistics.median(max(t["wall"] for t in p["together"]) for p in probes)
    return {
        "processes": processes,
        "rounds": rounds,
        "probes": probes,
        "ratios": ratios,
        # One probe's ratio is as noisy as the machine (its two sides run
        # seconds apart); the medians of each side over the probes less so.
        "median": processes * alone / slowest,
        "low": min(ratios),
        "high": max(ratios),
    }


def describe(result: dict[str, Any]) -> str:
    n = result["processes"]
    return (
        f"the machine: {n} CPU-bound processes at once did {result['median']:.2f}x the work "
        f"of one alone (medians of {len(result['ratios'])} interleaved probes; one probe "
        f"{result['low']:.2f}x-{result['high']:.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=5, help="probes, interleaved")
    parser.add_argument("--seconds", type=float, default=1.0, help="work per process alone")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--processes and --rounds must be at least 1, --seconds above 0")
    result = scaling(args.processes, repeats=args.rounds, seconds=args.seconds)
    for p in result["probes"]:
        together = ", ".join(f"{t['wall']:.2f}" for t in p["together"])
        print(f"alone {p['alone']['wall']:.2f} s; together {together} s: {p['ratio']:.2f}x")
    print(describe(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
