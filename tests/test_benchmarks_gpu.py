"""benchmarks/gpu.py: its CPU smoke run writes the promised table, and it refuses what it cannot run.

The timings themselves are never checked beyond being positive and finite (the machines are noisy).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import gpu

ROOT = Path(__file__).resolve().parents[1]


def _positive(value: Any) -> bool:
    return isinstance(value, float | int) and math.isfinite(value) and value > 0


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_flops_are_six_times_rows_times_the_matrix_sizes() -> None:
    layers = gpu.wide_layers(width=4, depth=2)
    assert layers == [(4, 4), (4, 4), (4, 1)]
    assert gpu.matmul_flops(8, layers) == 6 * 8 * (16 + 16 + 4)


def test_modes_without_the_fp32_denominator_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu.main(["--device", "cpu", "--modes", "bf16,fp16"])
    assert exit_info.value.code == 2
    assert "fp32 (the denominator)" in capsys.readouterr().err


def test_cuda_without_a_gpu_exits_2_and_says_what_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    assert gpu.main(["--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda, but no CUDA device is available" in err
    assert "--device cpu --quick" in err


def _counting_case(name: str, calls: list[str]) -> gpu.Case:
    import torch

    def step() -> Any:
        calls.append(name)
        return torch.tensor(0.5)

    return gpu.Case(name, name.partition("+")[0], "+" in name, step)


def test_cases_run_interleaved_and_a_failed_compilation_is_reported_not_raised() -> None:
    import torch

    calls: list[str] = []

    def broken() -> gpu.Case:
        raise RuntimeError("inductor: no C++ compiler\nmore detail")

    builders = {
        "fp32": lambda: _counting_case("fp32", calls),
        "bf16": lambda: _counting_case("bf16", calls),
        "bf16+compile": broken,
    }
    cases, failed = gpu.run_cases(torch, torch.device("cpu"), "t", builders, steps=2, rounds=2, warmup=1)
    assert list(cases) == ["fp32", "bf16"]
    assert failed == {"bf16+compile": "RuntimeError: inductor: no C++ compiler"}
    # one warm-up step each, then per round 2 steps of every case, the order rotated in the second round
    assert calls == ["fp32", "bf16"] + ["fp32"] * 2 + ["bf16"] * 2 + ["bf16"] * 2 + ["fp32"] * 2
    rows = gpu.table_rows(cases, ["fp32", "bf16", "bf16+compile"], failed, flops=10**9)
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped"]
    assert rows[2]["reason"] == failed["bf16+compile"] and rows[2]["label"] == "bf16 autocast (compiled)"
    assert rows[0]["ratio_to_fp32"] == 1.0 and len(rows[1]["ratio_to_fp32_rounds"]) == 2


def test_an_eager_mode_that_fails_is_a_bug_and_raises() -> None:
    import torch

    def broken() -> gpu.Case:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        gpu.run_cases(torch, torch.device("cpu"), "t", {"bf16": broken}, steps=1, rounds=1, warmup=1)


@pytest.mark.slow
def test_quick_cpu_run_writes_every_mode_with_ratios_or_a_reason(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _strict_json(out.read_text())
    env = result["environment"]
    assert env["device"] == "cpu" and env["torch"] and "cuda" in env and "cudnn" in env and env["name"]
    assert result["options"]["quick"] is True
    rounds = result["options"]["rounds"]

    wide = result["wide_mlp"]
    rows = {r["mode"]: r for r in wide["rows"]}
    assert list(rows) == ["fp32", "tf32", "bf16", "fp16"]
    assert wide["flop_per_step"] == gpu.matmul_flops(wide["batch"], [tuple(x) for x in wide["layers"]])
    for mode in ("tf32", "fp16"):
        assert rows[mode]["status"] == "skipped" and "CUDA" in rows[mode]["reason"]
        assert f"skipped: {rows[mode]['reason']}" in proc.stdout  # the reason is printed too
    assert "step_ms" not in rows["fp16"]

    tabular = result["tabular_mlp"]
    tab_rows = {r["mode"]: r for r in tabular["rows"]}
    assert list(tab_rows) == ["fp32", "bf16"]
    from components.train_model.core import TrainConfig

    defaults = TrainConfig()
    arch = tabular["architecture"]
    assert (arch["width"], arch["depth"], arch["ensemble"]) == (defaults.width, defaults.depth, defaults.ensemble)
    assert _positive(tabular["flop_per_step"]) and _positive(tabular["parameters"])

    for row in (rows["fp32"], rows["bf16"], tab_rows["fp32"], tab_rows["bf16"]):
        assert row["status"] == "ok", row
        assert len(row["step_ms_rounds"]) == rounds and all(map(_positive, row["step_ms_rounds"]))
        assert len(row["ratio_to_fp32_rounds"]) == rounds and all(map(_positive, row["ratio_to_fp32_rounds"]))
        assert _positive(row["step_ms"]) and _positive(row["ratio_to_fp32"]) and _positive(row["tflops"])
        assert row["peak_mib"] is None  # CUDA memory only
        assert row["loss_finite"] is True and math.isfinite(row["final_loss"])
    assert rows["fp32"]["ratio_to_fp32"] == 1.0 and tab_rows["fp32"]["ratio_to_fp32"] == 1.0
    summary = result["summary"]
    assert _positive(summary["wide_bf16_over_fp32"]) and _positive(summary["tabular_bf16_over_fp32"])
    assert summary["wide_bf16_over_tf32"] is None
    assert "torch " in proc.stdout and "TabularMLP" in proc.stdout
