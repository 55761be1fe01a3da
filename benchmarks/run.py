"""Runs every benchmark and prints one table of ratios (each measured side by side in one run)."""

from __future__ import annotations

import argparse
import shutil

from benchmarks import drift, import_time, pipeline_overhead, serving, serving_mixed, tabular, training, validation


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
    val = validation.main(cycles=1 if args.quick else 3)
    rows.append(("validate_data rows/s ÷ read_parquet rows/s (target ≥ 0.5)", val["throughput_ratio"]))
    rows.append(("validate_data peak RSS ÷ frame size (target < 3)", val["memory_ratio"]))
    dft = drift.main(cycles=1 if args.quick else 3)
    rows.append(("drift check ÷ Evidently DataDriftPreset (target ≤ 0.05)", dft["ratio_ours_over_evidently"]))
    tab = tabular.main(seeds=1 if args.quick else 3)
    n = len(tab["datasets"])
    rows.append(
        (
            "tabular: share of datasets with candidate ≥ best family − 1 SE (target 1)",
            sum(d["candidate_ok"] for d in tab["datasets"]) / n,
        )
    )
    rows.append(
        (f"tabular: share of datasets with MLP ≈ GBDT (target ≥ {tabular.MLP_PASSES_NEEDED}/6)", tab["mlp_passes"] / n)
    )
    ckpt = training.main(cycles=1 if args.quick else 3, rows=8000 if args.quick else training.ROWS)
    rows.append(("training: epoch with a checkpoint each epoch ÷ without (target ≤ 1.05)", ckpt["ratio_every_epoch"]))
    rows.append(("training: epoch with a checkpoint every 100 steps ÷ without", ckpt["ratio_every_100_steps"]))
    loader = training.stream_main(cycles=1 if args.quick else 3, rows=400_000 if args.quick else training.STREAM_ROWS)
    rows.append(
        ("training: streamed rows/s (2 workers) ÷ in-memory indexing (target ≥ 0.5)", loader["ratio_2_workers"])
    )
    ddp = training.ddp_main(cycles=1 if args.quick else 3, rows=8000 if args.quick else training.DDP_ROWS)
    rows.append(("training: step time, 2 gloo processes ÷ 1", ddp["ratio_two_over_one"]))
    if shutil.which("wrk"):
        srv = serving.main(cycles=1 if args.quick else 3, duration_s=5 if args.quick else 10)["ratios"]
        rows.append(("serving req/s: ours ÷ MLServer (target ≥ 1.2)", srv["ours_over_mlserver"]["rps_ratio"]))
        rows.append(
            ("serving req/s: ours ÷ bare Starlette ceiling (target ≥ 0.5)", srv["ours_over_ceiling"]["rps_ratio"])
        )
        rows.append(
            (
                "serving req/s: batching on ÷ off, TorchScript, c=32 (target ≥ 2)",
                srv["batching_on_over_off"].get("rps_ratio", float("nan")),
            )
        )
        mix = serving_mixed.main(cycles=1 if args.quick else 3, duration_s=5 if args.quick else 10)["ratios"]
        rows.append(
            (
                "serving raw mixed rows: ours V1 ÷ MLServer Pipeline (target ≥ 2)",
                mix["ours_v1_over_mlserver"]["rps_ratio"],
            )
        )
        rows.append(("serving raw mixed rows: ours V1 ÷ ceiling", mix["ours_v1_over_ceiling"]["rps_ratio"]))
        rows.append(
            ("serving one row: TorchScript MLP V2 ÷ ceiling", mix["mlp_torchscript_v2_over_ceiling"]["rps_ratio"])
        )
        rows.append(("serving one row: ONNX MLP V2 ÷ ceiling", mix["mlp_onnx_v2_over_ceiling"]["rps_ratio"]))
    else:
        print("serving benchmarks skipped: wrk is not installed (apt-get install -y wrk)")
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark'.ljust(width)}  ratio")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:.3f}")
    print("details: benchmarks/output/*.json")


if __name__ == "__main__":
    main()
