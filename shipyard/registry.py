"""The MLflow Model Registry as Shipyard uses it: versions, their aliases, and fetching a model.

A registered version's source is an MLflow Model directory (``MLmodel``, ``python_function``
flavor: :mod:`serving.mlflow_pyfunc`) that carries the Shipyard Model artifact unchanged under
:data:`SHIPYARD_SUBDIR`. Three aliases tell the versions apart:

- ``challenger``: the latest blessed registration (``register_model`` moves it);
- ``champion``: the version in production, moved only by :func:`promote`;
- ``previous``: the champion before the last promotion, where :func:`rollback` returns to.

The functions take an ``MlflowClient`` (no process-global tracking URI) and raise
:class:`~shipyard.errors.RegistryError` for an unknown model, version or alias, naming what exists.
:func:`fetch_model` is the exception that answers None: "no champion yet" is an ordinary state.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
from typing import Any

from shipyard.errors import NotBlessedError, RegistryError

CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS = "previous"
#: The MLflow Model's artifact key of the Shipyard Model artifact, and where it lands in the directory.
SHIPYARD_ARTIFACT = "shipyard"
SHIPYARD_SUBDIR = f"artifacts/{SHIPYARD_ARTIFACT}"
#: Version tags the moves write.
PROMOTED_TAG = "shipyard.promoted_at"
ROLLED_BACK_TAG = "shipyard.rolled_back_at"


@dataclasses.dataclass(frozen=True)
class FetchedModel:
    """A registered version downloaded by :func:`fetch_model`.

    Attributes:
        path: The Shipyard Model artifact directory (``model.json`` and weights, verified).
        name: The registered model.
        version: The version number.
        run_id: The MLflow run that logged it.
        tags: The version's tags.
        aliases: The version's aliases.
    """

    path: str
    name: str
    version: int
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Move:
    """What :func:`promote` or :func:`rollback` did, in data and in words (:attr:`message`)."""

    name: str
    champion: int
    previous: int | None
    was_champion: int | None
    message: str


def client_for(tracking_uri: str) -> Any:
    """An ``MlflowClient`` on the registry at ``tracking_uri``.

    Raises:
        RegistryError: A ``sqlite:///`` URI whose file does not exist (reading would create it).
    """
    from mlflow.tracking import MlflowClient

    from shipyard import rdb

    path = _sqlite_file(tracking_uri)
    if path is not None and not Path(path).is_file():
        raise RegistryError(f"no MLflow store at {tracking_uri!r}: {path} does not exist")
    rdb.prepare(tracking_uri, "mlflow", "mlflow")  # a database's schema exists, and holds no Optuna storage
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _sqlite_file(tracking_uri: str) -> str | None:
    """The file of a ``sqlite:///`` URI (None for other URIs and in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri[len("sqlite:///") :].split("?", 1)[0]
    return path if path and path != ":memory:" else None


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def registered_model(client: Any, name: str) -> Any:
    """The registered model ``name``.

    Raises:
        RegistryError: There is none; the message lists the registered models.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if not _missing(exc):
            raise
    names = sorted(m.name for m in client.search_registered_models())
    have = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "") if names else "none"
    raise RegistryError(f"no registered model {name!r}; registered models: {have}")


def _versions(client: Any, name: str) -> list[Any]:
    return sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))


def _aliases_text(aliases: dict[str, Any]) -> str:
    return ", ".join(f"@{a} → {v}" for a, v in sorted(aliases.items())) or "none"


def resolve(client: Any, name: str, ref: str = "") -> Any:
    """The version ``ref`` of ``name``: ``"@alias"``, a version number, or empty for the latest.

    Returns:
        The ``ModelVersion``.

    Raises:
        RegistryError: An unknown model, version (the message gives the versions) or alias (it
            gives the aliases), or a ``ref`` that is neither.
    """
    from mlflow.exceptions import MlflowException

    model = registered_model(client, name)
    aliases = dict(model.aliases or {})
    if ref.startswith("@"):
        alias = ref[1:]
        if alias not in aliases:
            raise RegistryError(f"model {name!r} has no alias {alias!r}; its aliases: {_aliases_text(aliases)}")
        return client.get_model_version(name, str(aliases[alias]))
    if ref and not ref.isdigit():
        raise RegistryError(f"model {name!r}: version {ref!r} is neither a number nor @ALIAS (e.g. 3 or @champion)")
    if not ref:
        versions = _versions(client, name)
        if not versions:
            raise RegistryError(f"model {name!r} has no versions")
        return versions[-1]
    try:
        return client.get_model_version(name, ref)
    except MlflowException as exc:
        if not _missing(exc):
            raise
    numbers = [int(v.version) for v in _versions(client, name)]
    have = f"{numbers[0]}..{numbers[-1]}" if numbers else "none"
    raise RegistryError(f"model {name!r} has no version {ref}; its versions: {have}")


def version_aliases(model: Any, version: str | int) -> list[str]:
    """The aliases of ``model`` (a ``RegisteredModel``) that point at ``version``."""
    return sorted(a for a, v in (model.aliases or {}).items() if str(v) == str(version))


def describe(client: Any, name: str, ref: str = "") -> dict[str, Any]:
    """One version in plain values: ``{"name", "version", "aliases", "status", "run_id", "source",
    "created", "description", "tags"}`` (see :func:`resolve` for ``ref`` and its errors)."""
    version = resolve(client, name, ref)
    model = registered_model(client, name)
    return {
        "name": name,
        "version": int(version.version),
        "aliases": version_aliases(model, version.version),
        "status": version.status,
        "run_id": version.run_id,
        "source": version.source,
        "created": _when(version.creation_timestamp),
        "description": version.description or "",
        "tags": dict(sorted((version.tags or {}).items())),
    }


def list_models(client: Any) -> list[dict[str, Any]]:
    """Every registered model: ``{"name", "versions", "latest", "aliases" ({alias: version})}``."""
    out = []
    for model in sorted(client.search_registered_models(), key=lambda m: m.name):
        numbers = [int(v.version) for v in _versions(client, model.name)]
        out.append(
            {
                "name": model.name,
                "versions": len(numbers),
                "latest": max(numbers) if numbers else None,
                "aliases": {a: int(v) for a, v in sorted((model.aliases or {}).items())},
            }
        )
    return out


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).isoformat(timespec="seconds")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")


def promote(client: Any, name: str, version: str | int, allow_unblessed: bool = False) -> Move:
    """Moves ``champion`` to ``version``; the champion before it becomes ``previous``.

    Promoting the champion again changes nothing. The version is tagged ``shipyard.promoted_at``.

    Args:
        client: An ``MlflowClient``.
        name: The registered model.
        version: The version number to promote.
        allow_unblessed: Promote a version tagged ``shipyard.blessed=false`` too.

    Returns:
        The :class:`Move`.

    Raises:
        RegistryError: An unknown model or version.
        NotBlessedError: The version was registered unblessed and ``allow_unblessed`` is false.
    """
    target = resolve(client, name, str(version))
    number = int(target.version)
    if (target.tags or {}).get("shipyard.blessed") == "false" and not allow_unblessed:
        raise NotBlessedError(
            f"model {name!r} version {number} was registered unblessed (tag shipyard.blessed=false); "
            "promote it anyway with --force (allow_unblessed=True)"
        )
    aliases = dict(registered_model(client, name).aliases or {})
    current = int(aliases[CHAMPION]) if CHAMPION in aliases else None
    previous = int(aliases[PREVIOUS]) if PREVIOUS in aliases else None
    if current == number:
        return Move(name, number, previous, current, f"{name}: version {number} is already the champion; nothing moved")
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, str(current))
        previous = current
    client.set_registered_model_alias(name, CHAMPION, str(number))
    client.set_model_version_tag(name, str(number), PROMOTED_TAG, _now())
    was = f"version {current} (now @{PREVIOUS})" if current is not None else "no champion before"
    return Move(name, number, previous, current, f"{name}: @{CHAMPION} → version {number}; {was}")


def rollback(client: Any, name: str) -> Move:
    """Moves ``champion`` back to ``previous`` and removes ``previous`` (a second rollback needs a
    new promotion first); the demoted version is tagged ``shipyard.rolled_back_at``.

    Returns:
        The :class:`Move`.

    Raises:
        RegistryError: An unknown model, or one without ``previous`` (nothing to roll back to).
    """
    aliases = dict(registered_model(client, name).aliases or {})
    if PREVIOUS not in aliases:
        raise RegistryError(
            f"model {name!r} has no alias {PREVIOUS!r} to roll back to; its aliases: {_aliases_text(aliases)}"
        )
    back = int(aliases[PREVIOUS])
    current = int(aliases[CHAMPION]) if CHAMPION in aliases else None
    client.set_registered_model_alias(name, CHAMPION, str(back))
    client.delete_registered_model_alias(name, PREVIOUS)
    if current is not None and current != back:
        client.set_model_version_tag(name, str(current), ROLLED_BACK_TAG, _now())
    was = f"version {current} is no longer champion" if current is not None else "there was no champion"
    return Move(name, back, None, current, f"{name}: @{CHAMPION} → version {back} (was @{PREVIOUS}); {was}")


def fetch_model(tracking_uri: str, name: str, ref: str, dst: str) -> FetchedModel | None:
    """Downloads a registered version's Shipyard Model artifact into ``dst`` (verified).

    Args:
        tracking_uri: The MLflow tracking (and registry) URI.
        name: The registered model.
        ref: ``"@alias"`` or a version number (``"3"``).
        dst: A directory to download into (created).

    Returns:
        The :class:`FetchedModel`, or None when there is no registered model ``name`` or no such
        alias (e.g. no ``champion`` yet).

    Raises:
        RegistryError: An explicit version number that does not exist, or a ``ref`` that is neither.
        ArtifactError / IntegrityError: The downloaded artifact is malformed or altered.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from shipyard.artifacts import read_model_manifest

    path = _sqlite_file(tracking_uri)
    if path is not None and not Path(path).is_file():
        return None  # no store yet, so no model
    client = client_for(tracking_uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise
    if ref.startswith("@") and ref[1:] not in (model.aliases or {}):
        return None
    version = resolve(client, name, ref)
    os.makedirs(dst, exist_ok=True)
    local = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=dst, tracking_uri=tracking_uri)
    )
    # A version registered before the MLflow Model layout holds the Shipyard artifact at its root.
    model_dir = local / SHIPYARD_SUBDIR if (local / SHIPYARD_SUBDIR / "model.json").is_file() else local
    read_model_manifest(model_dir, verify=True)
    return FetchedModel(
        path=str(model_dir),
        name=name,
        version=int(version.version),
        run_id=version.run_id or "",
        tags=dict(version.tags or {}),
        aliases=tuple(version_aliases(model, version.version)),
    )
