"""Runs every benchmark and prints one table of ratios (each measured side by side in one run)."""

from __future__ import annotations

import argparse

from benchmarks import import_time, pipeline_overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer cycles (a smoke run, noisier)")
    args = parser.parse_args()
    rows = []
    imp = import_time.main(cycles=5 if args.quick else 15)
    rows.append(("cold start: import components, pipelines ÷ import kfp", imp["ratio_components_pipelines_over_kfp"]))
    rows.append(("cold start: import pipelines.train_and_deploy ÷ import kfp", imp["ratio_flagship_module_over_kfp"]))
    ovh = pipeline_overhead.main(cycles=1 if args.quick else 3)
    rows.append(("train_and_deploy under kfp.local ÷ sum of stage compute", ovh["overhead_ratio"]))
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark'.ljust(width)}  ratio")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:.3f}")
    print("details: benchmarks/output/*.json")


if __name__ == "__main__":
    main()
