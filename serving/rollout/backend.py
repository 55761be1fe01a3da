"""What a rollout controller needs from where the model runs: the :class:`Backend` protocol.

A backend owns the traffic split between the **stable** model (what serves today) and the
**canary** (the new version), the metrics of both (a Prometheus HTTP API, queried with the same
PromQL templates everywhere), and a place to publish the rollout's state and read an operator's
command. Two implement it: ``serving.rollout.local.LocalBackend`` (``shipyard serve`` processes on
127.0.0.1 behind HAProxy, scraped by Prometheus) and ``serving.rollout.kubernetes.KubernetesBackend``
(an InferenceService, Serverless or RawDeployment). The controller itself
(``serving.rollout.controller``) is pure; ``serving.rollout.run`` drives it against a backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

#: The two sides of a rollout, as the ``{target}`` placeholder of a query template names them.
SIDES = ("canary", "stable")
#: Operator commands a backend may hand the controller (``shipyard rollout promote|abort``).
COMMANDS = ("promote", "abort")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One element of a Prometheus instant vector: its labels and value."""

    labels: dict[str, str]
    value: float


class Backend(Protocol):
    """Where a rollout happens. Every method may raise :class:`shipyard.errors.DeploymentError`."""

    #: A short description for reports (``local: haproxy on 127.0.0.1:PORT``, ``kubernetes raw ns/name``).
    description: str

    def start(self) -> None:
        """Brings the canary up beside the stable model at weight 0 (idempotent)."""

    def canary_ready(self) -> bool:
        """Whether the canary answers readiness (weights are raised only when it does)."""

    def set_weight(self, weight: int) -> None:
        """Sends ``weight`` percent (0..100) of the traffic to the canary, the rest to stable."""

    def query(self, promql: str) -> list[Sample]:
        """One Prometheus instant query; an empty list when it has no data."""

    def selector(self, side: str) -> str:
        """PromQL label matchers of one side (``canary`` or ``stable``) for a template's ``{target}``."""

    def promote(self) -> None:
        """Makes the canary the stable model with all the traffic (the rollout succeeded)."""

    def rollback(self) -> None:
        """Sends all the traffic back to stable and takes the canary out (weight 0)."""

    def publish(self, state: dict[str, Any]) -> None:
        """Records the rollout's state (JSON-able) where ``shipyard rollout status`` reads it."""

    def read_state(self) -> dict[str, Any] | None:
        """The last published state, or None."""

    def command(self) -> str | None:
        """An operator's pending command (one of :data:`COMMANDS`), consumed by reading it; or None."""

    def send_command(self, command: str) -> None:
        """Leaves an operator's command for the running controller (``shipyard rollout promote|abort``)."""

    def close(self) -> None:
        """Stops what the backend started (local processes); leaves a cluster's objects in place."""
