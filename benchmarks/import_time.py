"""Cold start: ``import components, pipelines`` (and the flagship's module) vs ``import kfp``.

Each case is a fresh interpreter; cases alternate within every cycle; the figure is the median of
the per-cycle ratios.
"""

from __future__ import annotations

import statistics

from benchmarks.common import interleaved, per_cycle_ratios, python_wall, save

CASES = {
    "python": "pass",
    "kfp": "import kfp",
    "components_pipelines": "import components, pipelines",
    "flagship_module": "import pipelines.train_and_deploy",
}


def main(cycles: int = 15) -> dict:
    """Runs the benchmark and returns its result dict."""
    times = interleaved(cycles, **{name: (lambda code=code: python_wall(code)) for name, code in CASES.items()})
    result = {
        "cycles": cycles,
        "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "ratio_components_pipelines_over_kfp": round(
            statistics.median(per_cycle_ratios(times, "components_pipelines", "kfp")), 3
        ),
        "ratio_flagship_module_over_kfp": round(
            statistics.median(per_cycle_ratios(times, "flagship_module", "kfp")), 3
        ),
    }
    save("import_time", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
