"""Submitting a pipeline run to a KFP API server (``shipyard run --host``), with one-line errors.

kfp.Client retries its health check and logs a traceback each time; a host that cannot be reached,
or that answers but not as KFP does, becomes one :class:`~shipyard.errors.KFPHostError` line naming
the host and the cause.
"""

from __future__ import annotations

from typing import Any

from shipyard.errors import KFPHostError


def submit(pipeline: Any, arguments: dict[str, Any], host: str) -> int:
    """Submits a run to the KFP API at ``host``; prints the run id.

    Raises:
        KFPHostError: The host cannot be reached, or does not answer as a KFP API (naming the
            host and the cause, in one line).
    """
    import logging
    import warnings

    import kfp
    import urllib3
    from kfp_server_api.exceptions import ApiException

    healthz = _HealthzAttempts()
    root = logging.getLogger()
    root.addFilter(healthz)
    try:
        with warnings.catch_warnings():  # kfp's notice about the server versions it supports
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host)
        run = client.create_run_from_pipeline_func(pipeline, arguments=arguments)
    except ApiException as exc:
        raise KFPHostError(f"the KFP API at {host} answered {exc.status} {exc.reason}".rstrip()) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        cause = _root_cause(exc)
        if isinstance(healthz.last, ApiException):  # something answered, but not as KFP does
            last = healthz.last
            cause = f"its health check answered {last.status} {last.reason} {healthz.count} times; is it a KFP API?"
        raise KFPHostError(f"cannot reach the KFP API at {host}: {cause}") from exc
    finally:
        root.removeFilter(healthz)
    print(f"submitted run {run.run_id} to {host}")
    return 0


class _HealthzAttempts:
    """A logging filter: keeps kfp.Client's traceback per failed health check off stderr (the
    error says it in one line) and remembers the last one's exception."""

    def __init__(self) -> None:
        self.count = 0
        self.last: BaseException | None = None

    def filter(self, record: Any) -> bool:
        if not str(record.msg).startswith("Failed to get healthz info"):
            return True
        self.count += 1
        self.last = record.exc_info[1] if record.exc_info else None
        return False


def _root_cause(exc: BaseException) -> str:
    """The innermost cause of a connection failure, e.g. ``Connection refused``."""
    seen: set[int] = set()
    found: BaseException = exc
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError keeps it here
        current = reason if isinstance(reason, BaseException) else current.__cause__ or current.__context__
    if isinstance(found, OSError) and found.strerror:
        return found.strerror
    return str(found).splitlines()[0] if str(found) else found.__class__.__name__
