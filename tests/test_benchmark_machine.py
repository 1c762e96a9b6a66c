"""The machine probe that the export's 1 -> N workers ratio is read against."""

from __future__ import annotations

import pytest

from benchmarks import machine


def _probe(alone: float, *together: float) -> dict[str, object]:
    return {
        "alone": {"wall": alone, "cpu": alone},
        "together": [{"wall": t, "cpu": t} for t in together],
        "ratio": len(together) * alone / max(together),
    }


def test_scaling_is_n_times_the_median_alone_over_the_median_slowest() -> None:
    probes = [_probe(1.0, 1.1, 1.25), _probe(1.4, 1.2, 1.3), _probe(1.2, 2.0, 1.0)]
    result = machine.summarize(2, 100, probes)
    # Medians: alone 1.2 s; the slowest of each pair 1.25, 1.3 and 2.0 s.
    assert result["median"] == pytest.approx(2 * 1.2 / 1.3)
    assert result["low"] == pytest.approx(2 * 1.2 / 2.0)
    assert result["high"] == pytest.approx(2 * 1.4 / 1.3)
    assert "1.85x the work of one alone" in machine.describe(result)


def test_a_real_probe_times_every_process_at_work() -> None:
    result = machine.scaling(2, repeats=1, seconds=0.05)
    (probe,) = result["probes"]
    assert len(probe["together"]) == 2
    for timed in (probe["alone"], *probe["together"]):
        assert timed["wall"] > 0
        assert timed["cpu"] > 0
    slowest = max(t["wall"] for t in probe["together"])
    assert result["median"] == pytest.approx(2 * probe["alone"]["wall"] / slowest)
