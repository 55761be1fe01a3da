"""The MLP trained by several processes: ``torchrun`` launched by the step itself, DDP inside.

:func:`fit` writes the job (the splits, their encoded inputs, the configuration) into a
temporary directory, starts ``python -m torch.distributed.run`` with one process per GPU (NCCL)
or the processes asked for on CPU (gloo), rendezvous on 127.0.0.1, and waits. Every process runs
:func:`~components.train_model.loop.fit_module` on its share of each batch; process 0 writes the
trained weights and the summary, which :func:`fit` loads into the same
:class:`~components.train_model.mlp.TabularMLP` a single-process run gives, so the artifact,
its format and its serving are the same. A typed error in any process (a diverged loss) comes
back as that error; a process that dies is a :class:`~shipyard.errors.TrainingError`.

Checkpoints: process 0 saves them; every process resumes from the newest intact one (weights,
optimizer, schedule and data position exactly; dropout draws after a resume are each process's
own, so a resumed DDP run is close to, not bit-identical with, an uninterrupted one).
"""

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from shipyard import errors

if TYPE_CHECKING:
    from components.train_model.checkpoint import CheckpointStore
    from components.train_model.core import TabularData, TrainConfig
    from components.train_model.loop import MLPInputs
    from components.train_model.mlp import TabularMLP

_JOB, _RESULT, _EPOCHS = "job.pkl", "result.pt", "epochs.jsonl"
#: Seconds between two looks at the epochs process 0 has finished.
POLL_S = 1.0


def _error_file(work: Path, rank: int) -> Path:
    return work / f"error-{rank}.json"


ROOT = Path(__file__).resolve().parents[2]


def processes(requested: int, device: torch.device) -> int:
    """How many training processes: ``requested``, or (0) one per visible GPU when there are
    several, else one."""
    if requested:
        if device.type == "cuda" and requested > torch.cuda.device_count():
            raise errors.ConfigError(
                f"train: processes {requested} > the {torch.cuda.device_count()} visible GPU(s); "
                "use at most one process per GPU"
            )
        return requested
    return torch.cuda.device_count() if device.type == "cuda" and torch.cuda.device_count() > 1 else 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(work: Path, world: int, port: int) -> list[str]:
    """The ``torchrun`` command line of a job in ``work``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc-per-node={world}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--max-restarts=0",
        "-m",
        "components.train_model.distributed",
        str(work),
    ]


def fit(
    train: "TabularData",
    val: "TabularData",
    inputs: "MLPInputs",
    config: "TrainConfig",
    device: torch.device,
    world: int,
    checkpoints: "CheckpointStore | None",
    epoch_log: Callable[[dict[str, float]], None] | None,
) -> tuple["TabularMLP", dict[str, Any]]:
    """Trains the MLP in ``world`` processes (see the module docstring); ``epoch_log`` gets each
    epoch's figures as process 0 finishes it (it appends them to a file this process follows)."""
    from components.train_model.mlp import build_module

    work = Path(tempfile.mkdtemp(prefix="shipyard-ddp-"))
    try:
        job = {
            "train": train,
            "val": val,
            "inputs": inputs,
            "config": config.to_dict(),
            "device": device.type,
            "checkpoints": (checkpoints.uri, checkpoints.keep) if checkpoints is not None else None,
        }
        with open(work / _JOB, "wb") as f:
            pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        if device.type == "cpu":
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the processes talk over loopback only
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
        backend = "nccl" if device.type == "cuda" else "gloo"
        print(f"train: mlp in {world} processes (torchrun, DDP over {backend})", file=sys.stderr, flush=True)
        proc = subprocess.Popen(command(work, world, _free_port()), env=env, cwd=ROOT)
        follow = _EpochFollower(work / _EPOCHS, epoch_log)
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    follow()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        failure = _first_failure(work, world)
        try:
            follow()  # the epochs that ended after the last poll
        except Exception as exc:
            if failure is None:
                raise
            print(f"train: could not log the last epochs ({exc}); a DDP process failed", file=sys.stderr, flush=True)
        if failure is not None:
            kind = getattr(errors, str(failure.get("type")), None)
            if isinstance(kind, type) and issubclass(kind, errors.ShipyardError):
                raise kind(failure["message"])
            raise errors.TrainingError(f"train: a DDP process failed: {failure.get('type')}: {failure.get('message')}")
        if proc.returncode != 0 or not (work / _RESULT).is_file():
            raise errors.TrainingError(
                f"train: the DDP job ({world} processes) exited with code {proc.returncode}; see the log above"
            )
        result = torch.load(work / _RESULT, weights_only=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mlp = build_module(result["summary"]["architecture"])
    mlp.load_state_dict(result["state"])
    mlp.eval()
    return mlp, result["summary"]


class _EpochFollower:
    """Calls ``epoch_log`` once for each complete line process 0 has appended to ``path``."""

    def __init__(self, path: Path, epoch_log: Callable[[dict[str, float]], None] | None):
        self.path, self.epoch_log, self.seen = path, epoch_log, 0

    def __call__(self) -> None:
        if self.epoch_log is None or not self.path.is_file():
            return
        lines = self.path.read_text().split("\n")[:-1]  # the last piece is not finished yet
        for line in lines[self.seen :]:
            self.epoch_log(json.loads(line))
        self.seen = len(lines)


def _append_epoch(path: Path) -> Callable[[dict[str, float]], None]:
    """Process 0's ``epoch_log``: appends the epoch's figures, one JSON line, for :func:`fit`."""

    def log(stats: dict[str, float]) -> None:
        with open(path, "a") as f:
            f.write(json.dumps(stats) + "\n")

    return log


def _first_failure(work: Path, world: int) -> dict[str, Any] | None:
    """The typed error a process recorded, process 0's first; an unreadable record is a TrainingError."""
    for rank in range(world):
        path = _error_file(work, rank)
        if path.is_file():
            try:
                found = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise errors.TrainingError(
                    f"train: DDP process {rank} failed and its error is unreadable ({exc})"
                ) from exc
            return found if isinstance(found, dict) else {"type": "unknown", "message": str(found)}
    return None


def _worker(work: Path) -> int:
    """One DDP process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` from torchrun)."""
    import torch.distributed as tdist

    from components.train_model.checkpoint import CheckpointStore
    from components.train_model.core import TrainConfig
    from components.train_model.loop import Distributed, fit_module

    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    with open(work / _JOB, "rb") as f:
        job = pickle.load(f)
    config = TrainConfig.from_dict(job["config"])
    if job["device"] == "cuda":
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(config.num_threads or max(1, (os.cpu_count() or 1) // world))
    store = CheckpointStore(*job["checkpoints"]) if job["checkpoints"] else None
    tdist.init_process_group(backend, rank=rank, world_size=world)
    try:
        mlp, summary = fit_module(
            job["train"],
            job["val"],
            job["inputs"],
            config,
            device,
            None,
            store,
            _append_epoch(work / _EPOCHS) if rank == 0 else None,
            Distributed(rank, world),
        )
        if rank == 0:
            torch.save({"state": mlp.state_dict(), "summary": summary}, work / _RESULT)
    except errors.ShipyardError as exc:
        tmp = _error_file(work, rank).with_suffix(".tmp")
        tmp.write_text(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        os.replace(tmp, _error_file(work, rank))  # whole or absent, one file per process
        return 1
    finally:
        tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1])))
