"""Attempts of a pipeline step: a failure marker beside the task's outputs.

KFP retries a failed task whatever the error (``set_retry`` cannot filter by type), so a
retried step would redo minutes of work to meet the same bad option or bad column again. A
component core decorated with :func:`step` therefore leaves a marker when an attempt raises,
in the task's output directory (the parent of its output artifacts)::

    <pipeline root>/<run>/<task>/.shipyard-failure.json

and the next attempt of the same task reads it first: when the recorded error is
deterministic (:data:`DETERMINISTIC`: a bad configuration, bad data, a bad artifact, which
fail the same way however often they are tried), it raises the same error as soon as it starts
(after KFP's backoff), without doing the work again. An error caused by an I/O error or a lost
database connection is not deterministic (:func:`is_deterministic`), and a marker older than
:data:`MAX_MARKER_AGE_S` is from an earlier run and not trusted. Any other error (an unreachable
server, a bug) and a killed process
(preemption: SIGKILL leaves no marker at all) do not stop the retry, which redoes the work; a
successful attempt removes the marker. The exit handler reads the markers of the whole run
(:func:`run_failures`) to record which step failed and with which one-line error.

Where a marker survives from one attempt to the next:

- ``kfp.local``: the task directory is on the local disk and kept between attempts.
- A pipeline root on a mounted file system (a volume, Vertex AI's ``/gcs/`` Cloud Storage
  FUSE mount): the marker is written through the mount as the attempt fails.
- Not with KFP's default object store (MinIO/S3 on Kubernetes): the launcher uploads a task's
  outputs only after it succeeded, and a retry is a new pod, so the marker is lost and the
  retry redoes the work (and fails the same way).

The decorator acts only inside a KFP task (a process started with KFP's ``--executor_input``
argument); called anywhere else, a decorated core is the plain function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from shipyard import errors
from shipyard.artifacts import write_json
from shipyard.errors import ArtifactError, ConfigError, DataValidationError

MARKER = ".shipyard-failure.json"
#: Errors that fail every attempt the same way: a retry finding one of these fails at once.
DETERMINISTIC: tuple[type[Exception], ...] = (ConfigError, DataValidationError, ArtifactError)
#: A marker older than this is not trusted by a retry (KFP's longest backoff is an hour).
MAX_MARKER_AGE_S = 3600.0
#: Longest one-line error kept in a marker.
MAX_ERROR = 2000

F = TypeVar("F", bound=Callable[..., Any])
_active = 0  # decorated calls in progress in this process: only the outermost one acts


@dataclasses.dataclass(frozen=True)
class Failure:
    """What a failed attempt left beside its outputs.

    Attributes:
        task: The task (its output directory's name, e.g. ``tune-hyperparams``).
        component: The component function KFP ran (e.g. ``tune_hyperparams``).
        type: The exception class name.
        message: The exception message (its first line).
        deterministic: Whether a retry would fail the same way (see :data:`DETERMINISTIC`).
        time: When the attempt failed (seconds since the epoch).
    """

    task: str
    component: str
    type: str
    message: str
    deterministic: bool
    time: float

    @property
    def error(self) -> str:
        """The one-line error, ``Type: message``."""
        return f"{self.type}: {self.message}"

    def exception(self) -> Exception:
        """The recorded error as an exception of the same ShipyardError class (RuntimeError otherwise)."""
        cls = getattr(errors, self.type, None)
        if isinstance(cls, type) and issubclass(cls, errors.ShipyardError):
            return cls(self.message)
        return RuntimeError(self.error)


def one_line(exc: BaseException) -> tuple[str, str]:
    """``(class name, first line of the message)`` of an exception, the message cut to :data:`MAX_ERROR`."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__, (lines[0] if lines else "")[:MAX_ERROR]


def _argument(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def task_dir(argv: Sequence[str] | None = None) -> Path | None:
    """The output directory of the KFP task this process runs, or None outside a KFP task.

    Read from KFP's ``--executor_input`` argument: the parent of the task's first output
    artifact (as a local path: ``gs://`` is ``/gcs/``, ``minio://`` ``/minio/``), else of its
    output-parameter file.
    """
    raw = _argument(sys.argv if argv is None else argv, "--executor_input")
    if raw is None:
        return None
    try:
        outputs = json.loads(raw).get("outputs", {})
    except (ValueError, AttributeError):
        return None
    for name in sorted(outputs.get("artifacts", {})):
        found = outputs["artifacts"][name].get("artifacts") or []
        if found and found[0].get("uri"):
            from kfp import dsl

            return Path(str(dsl.Artifact(uri=found[0]["uri"]).path)).parent
    output_file = outputs.get("outputFile")
    return Path(output_file).parent if output_file else None


def read_failure(directory: str | os.PathLike[str]) -> Failure | None:
    """The failure marker in a task directory, or None (no marker, or one that cannot be read)."""
    try:
        data = json.loads((Path(directory) / MARKER).read_text())
        return Failure(**{f.name: data[f.name] for f in dataclasses.fields(Failure)})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_failure(directory: str | os.PathLike[str], exc: BaseException, component: str = "") -> Failure:
    """Writes the marker for ``exc`` into a task directory and returns it.

    A marker that cannot be written (a read-only mount) is reported on stderr and skipped: it
    must never hide the step's own error.
    """
    kind, message = one_line(exc)
    failure = Failure(
        task=Path(directory).name,
        component=component,
        type=kind,
        message=message,
        deterministic=is_deterministic(exc),
        time=time.time(),
    )
    try:
        write_json(Path(directory) / MARKER, dataclasses.asdict(failure))
    except OSError as err:
        print(f"shipyard: could not write the failure marker in {directory}: {err}", file=sys.stderr)
    return failure


#: Exception class names (in a cause chain) of a failure that may pass: a lost connection, a
#: flaky mount. Matched by name so that no database driver has to be imported here.
TRANSIENT_CAUSES = frozenset({"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"})


def is_deterministic(exc: BaseException) -> bool:
    """Whether a retry would fail the same way: a :data:`DETERMINISTIC` error that was not caused by
    an I/O error or a lost database connection (a ``DataValidationError`` wrapping an ``EIO`` of a
    FUSE mount may pass; one naming a missing column will not)."""
    if not isinstance(exc, DETERMINISTIC):
        return False
    cause = exc.__cause__ or exc.__context__
    seen = 0
    while cause is not None and seen < 20:
        if (isinstance(cause, OSError) and not isinstance(cause, errors.ShipyardError)) or any(
            cls.__name__ in TRANSIENT_CAUSES for cls in type(cause).__mro__
        ):
            return False
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return True


def run_failures(run_dir: str | os.PathLike[str]) -> list[Failure]:
    """The failure markers of every task of a run (its task directories), oldest first."""
    root = Path(run_dir)
    found = [read_failure(marker.parent) for marker in sorted(root.glob(f"*/{MARKER}"))] if root.is_dir() else []
    return sorted((f for f in found if f is not None), key=lambda f: f.time)


def step(func: F) -> F:
    """Decorates a component core's entry point with the failure marker (see the module docstring).

    Inside a KFP task: an attempt that finds a deterministic failure marker raises that error
    again before calling ``func``; an attempt that raises writes a marker; one that returns
    removes it. Outside a KFP task (tests, the CLI, notebooks) it only calls ``func``.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _active
        directory = task_dir() if _active == 0 else None
        if directory is None:
            return func(*args, **kwargs)
        previous = read_failure(directory)
        # Only a retry of the same failure: a marker older than the longest retry backoff is from an
        # earlier run (a rerun after the user fixed something outside it) and is not trusted.
        if previous is not None and previous.deterministic and time.time() - previous.time < MAX_MARKER_AGE_S:
            print(
                f"shipyard: an earlier attempt of task {previous.task!r} failed with a deterministic error; "
                "failing again at once instead of redoing the work",
                file=sys.stderr,
                flush=True,
            )
            raise previous.exception() from None
        component = _argument(sys.argv, "--function_to_execute") or func.__name__
        _active += 1
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            write_failure(directory, exc, component)
            raise
        finally:
            _active -= 1
        with contextlib.suppress(OSError):  # a read-only mount: nothing was written there either
            (directory / MARKER).unlink(missing_ok=True)
        return result

    return cast(F, wrapper)
