"""Mixed precision on a GPU: AMP bf16 ÷ fp32 training-step time and achieved TFLOP/s for a wide MLP
and for Shipyard's TabularMLP, every mode measured side by side (interleaved) in one run.

Wide MLP: ``--depth`` Linear(width → width) layers with ReLU between and a Linear(width → 1) head,
trained on one fixed synthetic batch (MSE against random targets). A step is what train_model's
loop does per batch: ``zero_grad(set_to_none=True)``, forward and loss under the mode's autocast,
backward, AdamW step. The modes:

- ``fp32``: float32 with TF32 off (``torch.set_float32_matmul_precision("highest")``); the denominator.
- ``tf32``: float32 with TF32 matrix products allowed (``"high"``); CUDA only.
- ``bf16``: ``torch.autocast(dtype=torch.bfloat16)`` over float32 weights and optimizer state
  (what ``TrainConfig(precision="bf16")`` trains with).
- ``fp16``: ``torch.autocast(dtype=torch.float16)`` with a ``GradScaler``; CUDA only, as in train_model.

``--compile`` adds every mode again through ``torch.compile`` (rows ``<mode>+compile``; compiling
happens in the warm-up, which is not timed). Every mode has its own model and optimizer, all built
and warmed up before the timing; then each round runs ``--steps`` steps of every mode in turn (the
order rotated each round) between two ``synchronize()`` calls, so the machine's noise hits all modes
alike. Per mode: the median step time over the rounds, the median of the per-round ratios to fp32,
the achieved TFLOP/s, and the peak CUDA memory of the mode's own model, gradients, optimizer state
and step. FLOPs are those of the matrix products, counted analytically: ``6 · rows · Σ in·out``
per step (forward 2, backward 4; the first layer's input gradient, which autograd skips, counted
too, as usual).

TabularMLP: the family train_model fits (:class:`~components.train_model.mlp.TabularMLP`, built with
``architecture()`` and ``build_module`` from ``TrainConfig``'s defaults: its width, depth, packed
ensemble and periodic embeddings; ``--tab-width`` overrides the width) on a binary table of 32
numeric and 8 categorical columns, batches of 1,024 rows taken as the loop takes them (a shuffled
index moved to the device, the loss read back every step), fp32 and bf16.

Run on a lent GPU machine, from the repository root (it needs torch and numpy, nothing installed):
``PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu --json $OUT/gpu.json``; the default sizes (width
8192, depth 4, batch 8192: 13.2 TFLOP a step; 5 rounds of 10 steps) are sized to take about a minute
on an H200 by that count (fp32 at ~50 TFLOP/s is most of it; not yet timed there). ``--compile``
adds a compilation of every mode (tens of seconds each): with little device time left, ``--compile
--modes fp32,bf16``. The table goes to stdout, progress to stderr, the JSON to ``--json`` (default
``benchmarks/output/gpu.json``). Without a GPU: ``python -m benchmarks.gpu --device cpu --quick``
(fp32 and bf16 only, tiny sizes: a smoke run); ``--device cuda`` (the default) without one exits
with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import OUTPUT

MODES = ("fp32", "tf32", "bf16", "fp16")
LABELS = {
    "fp32": "fp32",
    "tf32": "fp32, TF32 matmul",
    "bf16": "bf16 autocast",
    "fp16": "fp16 autocast + GradScaler",
}
#: The TabularMLP's modes (train_model's precisions that run on every device).
TABULAR_MODES = ("fp32", "bf16")
#: Sizes of the default run (an H200 does it in well under 3 minutes) and of ``--quick`` (a CPU smoke run).
DEFAULTS = {
    "width": 8192,
    "depth": 4,
    "batch": 8192,
    "steps": 10,
    "rounds": 5,
    "warmup": 3,
    "tab_batch": 1024,
    "tab_steps": 50,
}
QUICK = {"width": 256, "depth": 2, "batch": 256, "steps": 3, "rounds": 2, "warmup": 1, "tab_batch": 128, "tab_steps": 3}
TAB_NUMERIC = 32
TAB_CARDINALITIES = (3, 5, 8, 12, 20, 50, 200, 1000)
TAB_ROWS = {"default": 65_536, "quick": 4096}
LEARNING_RATE = 1e-4


def log(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"gpu: {message}", file=sys.stderr, flush=True)


def matmul_flops(rows: int, layers: list[tuple[int, int]]) -> int:
    """FLOPs of one training step's matrix products: ``6 · rows · Σ in·out``.

    Args:
        rows: Rows each ``(in, out)`` product is applied to.
        layers: ``(in_features, out_features)`` of every matrix product.

    Returns:
        Forward (2) plus backward (4) multiply-adds counted as two FLOPs each.
    """
    return 6 * rows * sum(i * o for i, o in layers)


def wide_layers(width: int, depth: int) -> list[tuple[int, int]]:
    """``(in, out)`` of the wide MLP's linear layers: ``depth`` × width → width, then the head."""
    return [(width, width)] * depth + [(width, 1)]


def skip_reason(mode: str, torch: Any, device: Any) -> str | None:
    """Why ``mode`` cannot run on ``device`` (None: it can)."""
    if device.type == "cpu":
        if mode == "tf32":
            return "TF32 is a CUDA tensor-core format; on CPU fp32 is the only float32 mode"
        if mode == "fp16":
            return "fp16 autocast with a GradScaler needs CUDA (train_model refuses precision 'fp16' on CPU)"
        return None
    name = torch.cuda.get_device_name(device)
    major, _ = torch.cuda.get_device_capability(device)
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{name} does not support bf16"
    if mode == "tf32" and major < 8:
        return f"{name} has no TF32 (compute capability 8.0 or higher needed)"
    return None


def environment(torch: Any, device: Any) -> dict[str, Any]:
    """The device and the library versions the figures were taken with."""
    facts: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
    else:
        facts.update(name=_cpu_name(), bf16_supported=True)
    return facts


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclasses.dataclass
class Case:
    """One row of a table: a mode's model, optimizer and step, and its timings."""

    name: str
    mode: str
    compiled: bool
    step: Callable[[], Any]
    warmup_s: float = 0.0
    peak_mib: float | None = None
    times: list[float] = dataclasses.field(default_factory=list)
    loss: Any = None


def make_step(
    torch: Any,
    model: Any,
    mode: str,
    compiled: bool,
    device: Any,
    batch: Callable[[], tuple[Any, Any]],
    loss_fn: Callable[[Any, Any], Any],
    read_loss: bool,
) -> Callable[[], Any]:
    """One training step of ``model`` in ``mode``: a closure over its own AdamW and GradScaler."""
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)

    def step() -> Any:
        x, y = batch()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(forward(x), y)
        if read_loss:
            loss.item()  # train_model's loop checks every step's loss (a device sync)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    return step


def _precision(mode: str) -> str:
    return "high" if mode == "tf32" else "highest"


def run_cases(
    torch: Any,
    device: Any,
    title: str,
    builders: dict[str, Callable[[], Case]],
    steps: int,
    rounds: int,
    warmup: int,
) -> tuple[dict[str, Case], dict[str, str]]:
    """Builds and warms up every case, then times them interleaved; returns the cases and the failed ones.

    A case that runs out of memory, or a compiled one whose compilation fails, is dropped with its
    reason instead of ending the run (the device time is scarce); any other error propagates.
    """
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cases: dict[str, Case] = {}
    failed: dict[str, str] = {}
    for name, build in builders.items():
        sync()
        base = torch.cuda.memory_allocated(device) if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        case = None
        try:
            case = build()
            torch.set_float32_matmul_precision(_precision(case.mode))
            for _ in range(warmup):
                case.loss = case.step()
            sync()
        except Exception as exc:
            if not (isinstance(exc, torch.cuda.OutOfMemoryError) or "+compile" in name):
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            failed[name] = f"{type(exc).__name__}: {first_line}"
        if name in failed:  # out of the except block, so the traceback no longer holds the case's tensors
            case = None
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
            log(f"{title}: {name} dropped ({failed[name]})")
            continue
        assert case is not None
        case.warmup_s = time.perf_counter() - start
        if cuda:
            case.peak_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        cases[name] = case
        log(
            f"{title}: {name} built and warmed up in {case.warmup_s:.1f} s ({warmup} warm-up step{'s' * (warmup != 1)})"
        )
    names = list(cases)
    for r in range(rounds):
        shift = r % max(len(names), 1)
        for name in names[shift:] + names[:shift]:
            case = cases[name]
            torch.set_float32_matmul_precision(_precision(case.mode))
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                case.loss = case.step()
            sync()
            case.times.append((time.perf_counter() - start) / steps)
        line = ", ".join(f"{n} {cases[n].times[-1] * 1e3:.2f} ms" for n in names)
        log(f"{title}: round {r + 1}/{rounds}: {line}")
    return cases, failed


def table_rows(
    cases: dict[str, Case],
    names: list[str],
    skipped: dict[str, str],
    flops: int,
) -> list[dict[str, Any]]:
    """The JSON rows: a measured mode's medians and per-round ratios, or a skipped one with its reason."""
    base = cases["fp32"].times if "fp32" in cases else None
    rows: list[dict[str, Any]] = []
    for name in names:
        mode, _, suffix = name.partition("+")
        row: dict[str, Any] = {"mode": name, "label": LABELS[mode] + (" (compiled)" if suffix else "")}
        row["compiled"] = bool(suffix)
        if name not in cases:
            row.update(status="skipped", reason=skipped[name])
            rows.append(row)
            continue
        case = cases[name]
        step_s = statistics.median(case.times)
        ratios = [a / b for a, b in zip(case.times, base, strict=True)] if base else []
        loss = float(case.loss.detach().float())
        row.update(
            status="ok",
            step_ms=_sig(step_s * 1e3),
            step_ms_rounds=[_sig(t * 1e3) for t in case.times],
            ratio_to_fp32=_sig(statistics.median(ratios)) if ratios else None,
            ratio_to_fp32_rounds=[_sig(x) for x in ratios],
            tflops=_sig(flops / step_s / 1e12),
            peak_mib=None if case.peak_mib is None else round(case.peak_mib, 1),
            warmup_s=round(case.warmup_s, 2),
            final_loss=loss if math.isfinite(loss) else None,
            loss_finite=math.isfinite(loss),
        )
        rows.append(row)
    return rows


def _sig(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant digits (a CPU's TFLOP/s must not round to 0)."""
    return float(f"{x:.{digits}g}")


def _names(modes: tuple[str, ...], compile_too: bool) -> list[str]:
    return list(modes) + ([f"{m}+compile" for m in modes] if compile_too else [])


def _skipped(names: list[str], torch: Any, device: Any) -> dict[str, str]:
    return {n: r for n in names if (r := skip_reason(n.partition("+")[0], torch, device)) is not None}


def wide_mlp(torch: Any, device: Any, opts: Options) -> dict[str, Any]:
    """The wide MLP's table: every mode's step time, ratio to fp32, TFLOP/s and peak memory."""
    from torch import nn

    layers = wide_layers(opts.width, opts.depth)
    flops = matmul_flops(opts.batch, layers)
    gen = torch.Generator(device=device.type).manual_seed(0)
    x = torch.randn(opts.batch, opts.width, device=device, generator=gen)
    y = torch.randn(opts.batch, 1, device=device, generator=gen)
    names = _names(opts.modes, opts.compile)
    skipped = _skipped(names, torch, device)
    log(
        f"wide MLP: {opts.depth} × Linear({opts.width}→{opts.width}) + head, batch {opts.batch}, "
        f"{_flop(flops)} per step; modes {', '.join(n for n in names if n not in skipped)}"
    )

    def mse(out: Any, target: Any) -> Any:
        return nn.functional.mse_loss(out.float(), target)

    def builder(name: str) -> Callable[[], Case]:
        mode, _, suffix = name.partition("+")

        def build() -> Case:
            torch.manual_seed(0)
            blocks: list[nn.Module] = []
            for i, o in layers[:-1]:
                blocks += [nn.Linear(i, o, device=device), nn.ReLU()]
            model = nn.Sequential(*blocks, nn.Linear(*layers[-1], device=device))
            step = make_step(torch, model, mode, bool(suffix), device, lambda: (x, y), mse, read_loss=False)
            return Case(name, mode, bool(suffix), step)

        return build

    builders = {n: builder(n) for n in names if n not in skipped}
    cases, failed = run_cases(torch, device, "wide MLP", builders, opts.steps, opts.rounds, opts.warmup)
    params = sum(i * o + o for i, o in layers)
    return {
        "layers": [list(layer) for layer in layers],
        "batch": opts.batch,
        "parameters": params,
        "flop_per_step": flops,
        "rows": table_rows(cases, names, {**skipped, **failed}, flops),
    }


def tabular_mlp(torch: Any, device: Any, opts: Options) -> dict[str, Any]:
    """Shipyard's TabularMLP at TrainConfig's defaults: fp32 and bf16 step time on a realistic table."""
    from torch import nn

    from components.train_model.core import TrainConfig
    from components.train_model.mlp import architecture, build_module

    config = TrainConfig.from_dict({"width": opts.tab_width} if opts.tab_width else {})
    n_cat = len(TAB_CARDINALITIES)
    categorical = [(TAB_NUMERIC + i, k) for i, k in enumerate(TAB_CARDINALITIES)]
    arch = architecture(TAB_NUMERIC + n_cat, "binary", 2, config, categorical)
    rows = TAB_ROWS["quick" if opts.quick else "default"]
    gen = torch.Generator().manual_seed(0)
    numeric = torch.randn(rows, TAB_NUMERIC, generator=gen)
    codes = torch.stack([torch.randint(0, k, (rows,), generator=gen) for k in TAB_CARDINALITIES], dim=1)
    xt = torch.cat([numeric, codes.float()], dim=1).to(device)
    yt = torch.randint(0, 2, (rows,), generator=gen).to(device)
    order = torch.randperm(rows, generator=gen).split(opts.tab_batch)
    order = [idx for idx in order if len(idx) == opts.tab_batch]
    members = arch["ensemble"]

    probe = build_module(arch)
    per_row = [(i.in_features * members, i.out_features) for i in probe.body if isinstance(i, nn.Linear)]
    per_row.append((probe.head_weight.numel(), 1))
    if probe.periodic:
        per_row.append((probe.periodic_weight.numel(), 1))
    flops = matmul_flops(opts.tab_batch, per_row)  # Σ over members and columns, per table row
    params = sum(p.numel() for p in probe.parameters())

    def loss_fn(out: Any, target: Any) -> Any:
        flat = out.float().reshape(-1, out.shape[-1])
        return nn.functional.cross_entropy(flat, target.repeat_interleave(members))

    names = _names(TABULAR_MODES, opts.compile)
    skipped = _skipped(names, torch, device)
    log(
        f"TabularMLP: width {arch['width']}, depth {arch['depth']}, ensemble {members}, "
        f"{TAB_NUMERIC + n_cat} columns, batch {opts.tab_batch}, {params:,} parameters"
    )

    def builder(name: str) -> Callable[[], Case]:
        mode, _, suffix = name.partition("+")

        def build() -> Case:
            torch.manual_seed(0)
            model = build_module(arch).to(device).train()
            batches = itertools.cycle(order)

            def batch() -> tuple[Any, Any]:
                idx = next(batches).to(device)
                return xt[idx], yt[idx]

            step = make_step(torch, model, mode, bool(suffix), device, batch, loss_fn, read_loss=True)
            return Case(name, mode, bool(suffix), step)

        return build

    builders = {n: builder(n) for n in names if n not in skipped}
    cases, failed = run_cases(torch, device, "TabularMLP", builders, opts.tab_steps, opts.rounds, opts.warmup)
    return {
        "architecture": arch,
        "rows_in_table": rows,
        "batch": opts.tab_batch,
        "steps_per_round": opts.tab_steps,
        "parameters": params,
        "flop_per_step": flops,
        "rows": table_rows(cases, names, {**skipped, **failed}, flops),
    }


@dataclasses.dataclass(frozen=True)
class Options:
    """The run's sizes and switches (see ``--help``)."""

    device: str
    width: int
    depth: int
    batch: int
    steps: int
    rounds: int
    warmup: int
    tab_batch: int
    tab_steps: int
    tab_width: int
    modes: tuple[str, ...]
    compile: bool
    quick: bool


def _ratio(table: dict[str, Any], num: str, den: str) -> float | None:
    rows = {r["mode"]: r for r in table["rows"] if r["status"] == "ok"}
    if num not in rows or den not in rows:
        return None
    pairs = zip(rows[num]["step_ms_rounds"], rows[den]["step_ms_rounds"], strict=True)
    return _sig(statistics.median(a / b for a, b in pairs))


def measure(opts: Options) -> dict[str, Any]:
    """Runs both tables on ``opts.device`` and returns the result (also what ``--json`` writes)."""
    import torch

    device = torch.device(opts.device)
    start = time.perf_counter()
    before = torch.get_float32_matmul_precision()
    env = environment(torch, device)
    log(f"{env['name']} · torch {env['torch']} · CUDA {env['cuda']} · cuDNN {env['cudnn']}")
    try:
        wide = wide_mlp(torch, device, opts)
        tabular = tabular_mlp(torch, device, opts)
    finally:
        torch.set_float32_matmul_precision(before)
    return {
        "benchmark": "gpu",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": env,
        "options": dataclasses.asdict(opts),
        "wide_mlp": wide,
        "tabular_mlp": tabular,
        "summary": {
            "wide_bf16_over_fp32": _ratio(wide, "bf16", "fp32"),
            "wide_bf16_over_tf32": _ratio(wide, "bf16", "tf32"),
            "wide_fp16_over_bf16": _ratio(wide, "fp16", "bf16"),
            "tabular_bf16_over_fp32": _ratio(tabular, "bf16", "fp32"),
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }


def _flop(n: float) -> str:
    return f"{n / 1e12:.2f} TFLOP" if n >= 1e12 else f"{n / 1e9:.3f} GFLOP"


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(title: str, table: dict[str, Any]) -> None:
    """One section of the printed report: a line per mode, skipped ones with their reason."""
    print(title)
    width = max(len(r["label"]) for r in table["rows"])
    print(f"  {'mode'.ljust(width)}  {'step ms':>10}  {'÷ fp32':>7}  {'TFLOP/s':>9}  {'peak MiB':>9}")
    for r in table["rows"]:
        if r["status"] != "ok":
            print(f"  {r['label'].ljust(width)}  skipped: {r['reason']}")
            continue
        note = "" if r["loss_finite"] else "  (loss not finite)"
        print(
            f"  {r['label'].ljust(width)}  {r['step_ms']:>10.3f}  {_fmt(r['ratio_to_fp32'], '.3f'):>7}"
            f"  {format(r['tflops'], '.2f' if r['tflops'] >= 1 else '.2g'):>9}  {_fmt(r['peak_mib'], ',.0f'):>9}{note}"
        )


def report(result: dict[str, Any], path: Path) -> None:
    """Prints the environment, both tables and where the JSON went."""
    env, wide, tab = result["environment"], result["wide_mlp"], result["tabular_mlp"]
    extra = f", compute {env['capability']}, {env['memory_gib']} GiB" if env["device"] == "cuda" else ""
    print(f"device: {env['name']} ({env['device']}{extra})")
    print(f"torch {env['torch']} · CUDA {env['cuda']} · cuDNN {env['cudnn']} · Python {result['python']}")
    opts = result["options"]
    warmup = f"{opts['warmup']} warm-up step{'s' * (opts['warmup'] != 1)}"
    steps = f"median of {opts['rounds']} interleaved rounds of {opts['steps']} steps, after {warmup}"
    (i, o), depth = wide["layers"][0], len(wide["layers"]) - 1
    print_table(
        f"wide MLP: {depth} × Linear({i}→{o}) + head, batch {wide['batch']}, "
        f"{wide['parameters'] / 1e6:.1f} M parameters, {_flop(wide['flop_per_step'])} per step ({steps})",
        wide,
    )
    arch = tab["architecture"]
    print_table(
        f"TabularMLP ({'' if opts['tab_width'] else 'TrainConfig defaults: '}width {arch['width']}, "
        f"depth {arch['depth']}, ensemble {arch['ensemble']}), {arch['n_features']} columns, batch {tab['batch']}, "
        f"{tab['parameters']:,} parameters, {_flop(tab['flop_per_step'])} per step "
        f"({tab['steps_per_round']} steps a round)",
        tab,
    )
    summary = ", ".join(f"{k} {_fmt(v, '.3f')}" for k, v in result["summary"].items())
    print(f"ratios (median of per-round ratios): {summary}")
    print(f"details: {path}  ({result['wall_s']} s)")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2: bad arguments, or ``--device cuda`` without a GPU)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Defaults: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEFAULTS.items()),
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="where to run (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke run, e.g. on CPU)")
    parser.add_argument("--compile", action="store_true", help="also time every mode through torch.compile")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of fp32,tf32,bf16,fp16")
    parser.add_argument("--width", type=int, help="wide MLP: units per layer")
    parser.add_argument("--depth", type=int, help="wide MLP: width → width layers")
    parser.add_argument("--batch", type=int, help="wide MLP: rows per step")
    parser.add_argument("--steps", type=int, help="wide MLP: timed steps per mode and round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of timed steps")
    parser.add_argument("--warmup", type=int, help="untimed steps per mode first (compilation happens there)")
    parser.add_argument("--tab-batch", type=int, help="TabularMLP: rows per step")
    parser.add_argument("--tab-steps", type=int, help="TabularMLP: timed steps per mode and round")
    parser.add_argument("--tab-width", type=int, default=0, help="TabularMLP: width (default: TrainConfig's)")
    parser.add_argument("--json", type=Path, metavar="PATH", help=f"write the result here (default: {OUTPUT}/gpu.json)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else DEFAULTS
    values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in sizes.items()}
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if any(m not in MODES for m in modes) or "fp32" not in modes:
        parser.error(f"--modes {args.modes!r}: expected some of {','.join(MODES)}, fp32 (the denominator) included")
    small = [k for k in (*DEFAULTS,) if values[k] < 1]
    if small or not 0 <= args.tab_width <= 4096:
        parser.error(f"--{(small or ['tab-width'])[0].replace('_', '-')}: expected ≥ 1 (--tab-width: 0 … 4096)")
    if values["tab_batch"] > TAB_ROWS["quick" if args.quick else "default"]:
        parser.error(f"--tab-batch: at most {TAB_ROWS['quick' if args.quick else 'default']} rows")

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"benchmarks.gpu: --device cuda, but no CUDA device is available (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); on a machine without a GPU run "
            "`python -m benchmarks.gpu --device cpu --quick`",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu" and not args.quick and args.width is None:
        log("note: the default sizes are a GPU's (minutes per step on a CPU); use --quick or smaller sizes")
    opts = Options(
        device=args.device, modes=modes, compile=args.compile, quick=args.quick, tab_width=args.tab_width, **values
    )
    result = measure(opts)
    path = args.json or OUTPUT / "gpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    report(result, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
