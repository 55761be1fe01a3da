"""Paths and URIs: local files and ``gs://`` objects behind one small interface.

Inside a KFP pod artifacts are local paths (KFP mounts or copies them); user-given inputs such as
the raw data may be ``gs://`` URIs. google-cloud-storage is imported only when one is used. Any
other ``SCHEME://`` (``s3://``, ``https://``, ``file://``, ...) is refused by name with
:class:`UnsupportedSchemeError` rather than looked up as a local path.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import StorageError, UnsupportedSchemeError

GCS_SCHEME = "gs://"
#: What :func:`fetch` and :func:`upload` accept, for messages.
SUPPORTED = "a local path or a gs://BUCKET/OBJECT URI"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
T = TypeVar("T")


def scheme_of(uri: str) -> str | None:
    """The scheme of a ``SCHEME://...`` URI as written (``"gs"``, ``"s3"``), or None for a path."""
    match = _SCHEME.match(uri)
    return match.group(1) if match else None


def check_supported(uri: str, supported: str = SUPPORTED) -> None:
    """Refuses a URI whose scheme is not ``gs://`` (a plain path passes).

    Args:
        uri: A path or URI given by the user.
        supported: What the caller accepts, for the message (e.g. ingest adds ``sklearn:NAME``).

    Raises:
        UnsupportedSchemeError: ``uri`` is ``SCHEME://...`` with a scheme other than ``gs``
            (``GS://`` included: the scheme is matched as written).
    """
    scheme = scheme_of(uri)
    if scheme is not None and not is_gcs(uri):
        raise UnsupportedSchemeError(f"{uri}: the {scheme}:// scheme is not supported; expected {supported}")


def is_gcs(uri: str) -> bool:
    """True for ``gs://bucket/object`` URIs."""
    return uri.startswith(GCS_SCHEME)


def split_gcs(uri: str) -> tuple[str, str]:
    """Splits ``gs://bucket/a/b`` into ``("bucket", "a/b")``.

    Raises:
        StorageError: The URI has no bucket.
    """
    if not is_gcs(uri):
        raise StorageError(f"{uri!r}: not a gs:// URI")
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, blob = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri!r}: expected gs://BUCKET/OBJECT")
    return bucket, blob


def _gcs_client():
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="shipyard", credentials=AnonymousCredentials())
    return storage.Client()


def _on_gcs(uri: str, verb: str, op: Callable[[Any, str], T]) -> T:
    """``op(bucket, object name)`` for the ``gs://`` ``uri``; whatever the client raises becomes a
    StorageError that names ``uri`` and what could not be done (``verb``)."""
    bucket, blob = split_gcs(uri)
    try:
        return op(_gcs_client().bucket(bucket), blob)
    except Exception as exc:  # the client raises many unrelated types
        raise StorageError(f"{uri}: cannot {verb} ({exc.__class__.__name__}: {exc})") from exc


def fetch(uri: str, workdir: str | None = None) -> Path:
    """Returns a local path holding the file at ``uri``, downloading ``gs://`` objects.

    Args:
        uri: A local path or a ``gs://`` URI.
        workdir: Where downloads go (created when missing; a new temp dir when omitted).

    Returns:
        The local path.

    Raises:
        UnsupportedSchemeError: ``uri`` has a scheme other than ``gs://``.
        StorageError: The file does not exist or cannot be downloaded.
    """
    check_supported(uri)
    if is_gcs(uri):
        target = Path(workdir or tempfile.mkdtemp(prefix="shipyard-fetch-")) / Path(split_gcs(uri)[1]).name

        def download(bucket: Any, name: str) -> Path:
            target.parent.mkdir(parents=True, exist_ok=True)
            bucket.blob(name).download_to_filename(str(target))
            return target

        return _on_gcs(uri, "download", download)
    path = Path(uri).expanduser()
    if not path.exists():
        raise StorageError(f"{uri}: no such file")
    return path


def upload(local: str | os.PathLike[str], uri: str) -> str:
    """Copies a local file to ``uri`` (``gs://`` or a local path) and returns ``uri``.

    Raises:
        UnsupportedSchemeError: ``uri`` has a scheme other than ``gs://``.
        StorageError: The upload fails.
    """
    check_supported(uri)
    if is_gcs(uri):
        _on_gcs(uri, "upload", lambda bucket, name: bucket.blob(name).upload_from_filename(str(local)))
        return uri
    target = Path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(Path(local).read_bytes())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{uri}: cannot copy from {local} ({exc.strerror or exc})") from exc
    return uri


def delete(uri: str) -> None:
    """Removes the file or ``gs://`` object at ``uri``; one that is gone already is not an error.

    Raises:
        UnsupportedSchemeError: ``uri`` has a scheme other than ``gs://``.
        StorageError: The deletion fails.
    """
    check_supported(uri)
    if is_gcs(uri):

        def remove(bucket: Any, name: str) -> None:
            from google.api_core.exceptions import NotFound

            with contextlib.suppress(NotFound):
                bucket.blob(name).delete()

        _on_gcs(uri, "delete", remove)
        return
    try:
        Path(uri).unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(f"{uri}: cannot delete ({exc.strerror or exc})") from exc


def list_gcs(prefix: str) -> list[str]:
    """The sorted ``gs://BUCKET/NAME`` of every object whose name starts with ``prefix``'s path.

    Raises:
        StorageError: ``prefix`` is not a ``gs://`` URI, or the listing fails.
    """
    bucket = split_gcs(prefix)[0]
    names = _on_gcs(prefix, "list", lambda b, name_prefix: [o.name for o in b.list_blobs(prefix=name_prefix)])
    return sorted(f"gs://{bucket}/{n}" for n in names)
