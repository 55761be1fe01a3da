"""Payload logging: requests and responses as JSON lines, the data a later drift check reads.

The server calls :meth:`PayloadLogger.log` on the event loop for every request. That call only
puts the record on a bounded queue (a few microseconds); when the queue is full the record is
dropped and counted, so a slow disk or bucket never slows the server down. A daemon thread
batches the records and writes one file per batch:

    <destination>/<model_name>/<UTC yyyymmdd-HHMMSS>-<pid>-<seq>.jsonl

A batch is written when ``flush_rows`` records are pending, when ``flush_seconds`` have passed
since the first pending record, and at :meth:`PayloadLogger.close`. Each file is written complete
under a temporary name and then made visible at once: ``os.replace`` in the same directory for a
local destination; for ``gs://`` it is written to a local staging directory and then uploaded
(a GCS object appears only when its upload has finished). Readers therefore see only whole files.

One JSON object per line, for example::

    {"ts": 1718000000.5, "model": "bc", "protocol": "v2", "id": "3f2a...", "features": ["a", "b"],
     "inputs": [[1.0, null]], "outputs": {"predictions": [1], "probabilities": [[0.2, 0.8]]}}

``inputs`` are the rows as the model received them: the float32 rows of an all-numeric model, or
the raw values (strings, numbers, ``null``) of a model with preprocessing — what a drift check
compares with the training data, before any encoding. For example::

    {"ts": 1718000000.5, "model": "churn", "protocol": "v1", "id": null, "features": ["tenure", "plan"],
     "inputs": [[12.5, "pro"], [null, null]], "outputs": {"predictions": ["no", "yes"], ...}}

numpy arrays and scalars are converted to lists and numbers; NaN and ±Inf are written as
``null`` so every line is valid JSON. :func:`read_payloads` turns the files back into a DataFrame
with one row per input row and one column per feature, as ``components.drift_check`` expects.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shipyard import storage
from shipyard.errors import ArtifactError, ConfigError, StorageError

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"
EXPECTED = "expected a local directory or gs://BUCKET/PREFIX"
#: Names of finished files (temporary files start with a dot and end in ``.tmp``).
FILE_NAME = re.compile(r"^\d{8}-\d{6}-\d+-\d+\.jsonl$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_STOP = object()  # queued by close(): the writer flushes what it has and exits
_SEQUENCE = itertools.count()  # process-wide, so two loggers for one model never pick the same name


class PayloadLogger:
    """Writes request/response records as JSON-lines files from a background thread.

    Args:
        destination: A local directory (created if missing) or ``gs://BUCKET/PREFIX``.
        model_name: The served model's name; files go under ``<destination>/<model_name>/``.
        flush_rows: Write a file once this many records are pending.
        flush_seconds: Write a file at most this long after the first pending record arrived.
        max_queue: Records waiting for the writer beyond this many are dropped (and counted).

    Attributes:
        written: Records written to finished, visible files.
        dropped: Records not queued because the queue was full or the logger was closed.
        failed: Records lost to an error in the writer (not serializable, disk or upload error).

    Raises:
        ConfigError: The destination is not a writable local directory or a ``gs://`` URI, the
            model name is not a plain file name, or a limit is not positive. A ``gs://``
            destination is checked only for its form: the first upload shows whether it is
            writable (failures are logged and counted in ``failed``).
    """

    def __init__(
        self,
        destination: str,
        model_name: str,
        *,
        flush_rows: int = 1000,
        flush_seconds: float = 5.0,
        max_queue: int = 10000,
    ) -> None:
        _check_limits(flush_rows=flush_rows, flush_seconds=flush_seconds, max_queue=max_queue)
        _check_model_name(model_name)
        self.destination = destination
        self.model_name = model_name
        self.flush_rows = int(flush_rows)
        self.flush_seconds = float(flush_seconds)
        self.max_queue = int(max_queue)
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._gcs_prefix: str | None = None
        if storage.is_gcs(destination):
            self._gcs_prefix = _gcs_model_prefix(destination, model_name)
            # Files are written complete here, then uploaded; removed at close().
            self._dir = Path(tempfile.mkdtemp(prefix="shipyard-payloads-"))
        else:
            self._dir = _local_model_dir(destination, model_name)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=self.max_queue)
        self._drop_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"payload-log-{model_name}", daemon=True)
        self._thread.start()
        # A server that exits without calling close() still writes what it has queued.
        atexit.register(self.close)

    # --- the event loop side ----------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Queues one record for writing; never blocks.

        The record is serialized later on the writer thread, so the caller must not change it
        (or the arrays inside it) after this call.

        Args:
            record: A JSON-serializable dict; numpy arrays and scalars may appear anywhere in it.
        """
        if self._closed:
            self._drop()
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop()

    def _drop(self) -> None:
        with self._drop_lock:
            self.dropped += 1
            first = self.dropped == 1
        if first:
            reason = "the logger is closed" if self._closed else f"the queue is full (max_queue={self.max_queue})"
            logger.warning("payload log %s: dropping records because %s", self._where(), reason)

    def close(self, timeout: float = 10.0) -> None:
        """Writes every queued record and stops the writer thread. Calling it again does nothing.

        Args:
            timeout: Seconds to wait for the writer; if it has not finished by then the records
                it still holds are reported in the log and the call returns.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        deadline = time.monotonic() + timeout
        try:
            # Blocks only while the queue is full, i.e. while the writer is busy emptying it.
            self._queue.put(_STOP, timeout=max(timeout, 0.0))
        except queue.Full:
            pass
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        if self._thread.is_alive():
            logger.error(
                "payload log %s: the writer did not finish within %.1f s; %d queued records may be lost",
                self._where(),
                timeout,
                self._queue.qsize(),
            )
            return
        if self._gcs_prefix is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self.dropped or self.failed:
            logger.warning(
                "payload log %s: %d records written, %d dropped (queue full or closed), %d failed",
                self._where(),
                self.written,
                self.dropped,
                self.failed,
            )

    def __enter__(self) -> PayloadLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> str:
        return f"{self.destination.rstrip('/')}/{self.model_name}"

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[Any] = []
        deadline: float | None = None  # flush_seconds after the first pending record
        stopping = False
        while not stopping:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:  # the deadline passed
                item = None
            if item is _STOP:
                stopping = True
                batch.extend(_drain(self._queue))  # a record that raced with close()
            elif item is not None:
                batch.append(item)
                if deadline is None:
                    deadline = time.monotonic() + self.flush_seconds
            due = deadline is not None and time.monotonic() >= deadline
            if batch and (stopping or due or len(batch) >= self.flush_rows):
                for start in range(0, len(batch), self.flush_rows):  # several files only when stopping
                    self._flush(batch[start : start + self.flush_rows])
                batch, deadline = [], None

    def _flush(self, records: list[Any]) -> None:
        """Writes one file; any error is logged and counted, never raised (the thread must live)."""
        lines: list[str] = []
        first_error: Exception | None = None
        for record in records:
            try:
                lines.append(json.dumps(_plain(record), allow_nan=False, separators=(",", ":")))
            except (TypeError, ValueError) as exc:
                self.failed += 1
                first_error = first_error or exc
        if first_error is not None:
            logger.error(
                "payload log %s: %d of %d records are not JSON-serializable, e.g. %s",
                self._where(),
                len(records) - len(lines),
                len(records),
                first_error,
            )
        if not lines:
            return
        name = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}-{next(_SEQUENCE):06d}{SUFFIX}"
        tmp = self._dir / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._publish(tmp, name)
        except Exception as exc:  # OSError, StorageError, or whatever the GCS client raises
            self.failed += len(lines)
            logger.error("payload log %s: cannot write %d records to %s: %s", self._where(), len(lines), name, exc)
            tmp.unlink(missing_ok=True)
            return
        self.written += len(lines)

    def _publish(self, tmp: Path, name: str) -> None:
        """Makes the finished file ``tmp`` visible as ``name`` in one step."""
        if self._gcs_prefix is None:
            os.replace(tmp, self._dir / name)
            return
        try:
            storage.upload(tmp, f"{self._gcs_prefix}/{name}")
        finally:
            tmp.unlink(missing_ok=True)


def read_payloads(destination: str, model_name: str) -> Any:
    """Reads every finished payload file of a model into one DataFrame.

    Args:
        destination: The directory or ``gs://BUCKET/PREFIX`` given to :class:`PayloadLogger`.
        model_name: The model whose files to read.

    Returns:
        A ``pandas.DataFrame`` with one row per input row and one column per feature (named as
        in the records' ``features``; nulls read as NaN), in file order. Records whose ``inputs``
        is absent or null add no rows. Empty (no columns) when there are no files yet.

    Raises:
        ConfigError: The destination is not a local path or a ``gs://`` URI.
        StorageError: The local directory does not exist, or a ``gs://`` file cannot be read.
        ArtifactError: A line is not a JSON object with ``features`` and ``inputs`` that match;
            the message names the file and the line.
    """
    import pandas as pd

    _check_model_name(model_name)
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for shown, path in _finished_files(destination, model_name):
        for features, rows in _parse_file(path, shown):
            if len(rows):
                groups.setdefault(features, []).extend(rows)
    frames = [pd.DataFrame(rows, columns=list(features)) for features, rows in groups.items()]
    if not frames:
        return pd.DataFrame()
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].isna().all():
            frame[column] = frame[column].astype(np.float64)  # an all-null column is numeric NaN
    return frame


# --- helpers ----------------------------------------------------------------------------------------


def _check_limits(**limits: float) -> None:
    for name, value in limits.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"payload logging: {name} must be a positive number, got {value!r}")


def _check_model_name(model_name: str) -> None:
    if not isinstance(model_name, str) or not model_name or model_name in (".", "..") or "/" in model_name:
        raise ConfigError(
            f"payload logging: model name {model_name!r} cannot be a directory name; "
            "expected a non-empty name without '/'"
        )


def _gcs_model_prefix(destination: str, model_name: str) -> str:
    try:
        bucket, prefix = storage.split_gcs(destination)
    except StorageError as exc:
        raise ConfigError(f"payload logging destination {destination!r}: no bucket; {EXPECTED}") from exc
    prefix = prefix.strip("/")
    return f"gs://{bucket}/{prefix}/{model_name}" if prefix else f"gs://{bucket}/{model_name}"


def _local_model_dir(destination: str, model_name: str) -> Path:
    """Creates ``<destination>/<model_name>`` and proves it writable, or raises ConfigError."""
    if not isinstance(destination, str) or not destination.strip():
        raise ConfigError(f"payload logging destination {destination!r} is empty; {EXPECTED}")
    if _SCHEME.match(destination):
        raise ConfigError(f"payload logging destination {destination!r}: unsupported scheme; {EXPECTED}")
    root = Path(destination).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"payload logging destination {destination!r} exists and is not a directory; {EXPECTED}")
    directory = root / model_name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-", suffix=".tmp"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"payload logging destination {destination!r}: cannot write to {directory} "
            f"({exc.strerror or exc}); {EXPECTED}"
        ) from exc
    return directory


def _drain(q: queue.Queue[Any]) -> Iterator[Any]:
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if item is not _STOP:
            yield item


def _plain(value: Any) -> Any:
    """``value`` with numpy converted to Python and NaN/±Inf replaced by None (JSON null).

    Raises:
        TypeError: Something in ``value`` has no JSON form.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):  # np.float64 included
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biu" or (value.dtype.kind == "f" and bool(np.isfinite(value).all())):
            return value.tolist()  # the common case: no per-element work in Python
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _finished_files(destination: str, model_name: str) -> Iterator[tuple[str, Path]]:
    """Yields ``(name to show in errors, local path)`` for each finished file, oldest first."""
    if storage.is_gcs(destination):
        prefix = _gcs_model_prefix(destination, model_name)
        with tempfile.TemporaryDirectory(prefix="shipyard-payloads-read-") as workdir:
            for uri in _list_gcs(prefix):
                path = storage.fetch(uri, workdir)
                try:
                    yield uri, path
                finally:
                    path.unlink(missing_ok=True)
        return
    if _SCHEME.match(destination):
        raise ConfigError(f"payload logging destination {destination!r}: unsupported scheme; {EXPECTED}")
    directory = Path(destination).expanduser() / model_name
    if not directory.is_dir():
        raise StorageError(f"{directory}: no payload directory (nothing logged for model {model_name!r} here)")
    for path in sorted(directory.iterdir()):
        if FILE_NAME.match(path.name) and path.is_file():
            yield str(path), path


def _list_gcs(prefix: str) -> list[str]:
    """URIs of the finished files directly under ``prefix`` (``gs://BUCKET/.../MODEL``), sorted."""
    folder = prefix + "/"
    return [uri for uri in storage.list_gcs(folder) if FILE_NAME.match(uri[len(folder) :])]


def _parse_file(path: Path, shown: str) -> Iterator[tuple[tuple[str, ...], list[list[Any]]]]:
    """Yields ``(features, rows)`` per record of one file."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{shown}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{where}: not valid JSON ({exc.msg}); expected one JSON object per line") from exc
            if not isinstance(record, dict):
                raise ArtifactError(f"{where}: expected a JSON object, got {type(record).__name__}")
            inputs = record.get("inputs")
            if inputs is None:
                continue
            features = record.get("features")
            if (
                not isinstance(features, list)
                or not all(isinstance(n, str) for n in features)
                or len(set(features)) != len(features)
            ):
                raise ArtifactError(f"{where}: 'features' must be a list of distinct names, got {features!r}")
            if not isinstance(inputs, list) or not all(
                isinstance(row, list) and len(row) == len(features) for row in inputs
            ):
                raise ArtifactError(
                    f"{where}: 'inputs' must be a list of rows of {len(features)} values (one per feature)"
                )
            yield tuple(features), inputs
