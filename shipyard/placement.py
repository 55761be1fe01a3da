"""Where the tuning and training steps run on a cluster, and how they are retried: compile-time settings.

Read from environment variables when :mod:`pipelines.train_and_deploy` is imported (``shipyard
compile`` sets them from its flags), like the GPU request of :mod:`shipyard.images`: kfp.local 2.17
cannot resolve such settings given as pipeline parameters inside an ``ExitHandler``. kfp.local
ignores the resources and everything Kubernetes (it runs each step as a process on this machine),
and ``shipyard run --local`` drops the retry policies. An unset variable takes its default; a
variable set to the empty string sets nothing (no request, no limit, no toleration).

The training step gets all of them: the CPU and memory requests and limits, the accelerator
(:data:`shipyard.images.ACCELERATOR_TYPE` × :data:`shipyard.images.TRAIN_GPUS`), the node selector,
the tolerations, the checkpoint PVC mounted at ``checkpoint_mount`` with ``$SHIPYARD_CHECKPOINT_URI``
naming that path in the step, and the retry policy. By default, when it requests GPUs, it tolerates
the ``NoSchedule`` taint GPU node pools commonly carry, keyed by the accelerator's resource name
(``nvidia.com/gpu``: any value); given tolerations replace that default. The tuning step fits MLP
trials on the same data, on the CPU image, so it shares the CPU and memory requests and limits and
the retry policy, and nothing that places it on GPU nodes (no accelerator, node selector or
toleration) nor the PVC (tuning writes no checkpoints).

=================================  ====================  ==========================================
variable                           default               value
=================================  ====================  ==========================================
``SHIPYARD_TRAIN_CPU_REQUEST``     ``2``                 CPUs: ``2``, ``0.5`` or ``500m``
``SHIPYARD_TRAIN_CPU_LIMIT``       ``8``                 the same; never below the request
``SHIPYARD_TRAIN_MEMORY_REQUEST``  ``8Gi``               bytes: ``8Gi``, ``512Mi``, ``16G``
``SHIPYARD_TRAIN_MEMORY_LIMIT``    ``16Gi``              the same; never below the request
``SHIPYARD_TRAIN_NODE_SELECTOR``   none                  ``{"pool": "gpu"}`` or ``pool=gpu,zone=a``
``SHIPYARD_TRAIN_TOLERATIONS``     the GPU taint         a JSON list of tolerations, or
                                                         ``key[=value][:Effect]``, comma-separated
``SHIPYARD_CHECKPOINT_PVC``        none                  a PersistentVolumeClaim's name
``SHIPYARD_CHECKPOINT_MOUNT``      ``/mnt/checkpoints``  an absolute path
``SHIPYARD_RETRY_BACKOFF``         ``30s``               the first retry's wait: ``30s``, ``5m``
``SHIPYARD_RETRY_BACKOFF_FACTOR``  ``2``                 each next wait × this (a number >= 1)
``SHIPYARD_RETRY_MAX_DURATION``    ``24h``               all attempts end within this of the first start
=================================  ====================  ==========================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Any, ClassVar, TypeVar

from shipyard.errors import ConfigError

T = TypeVar("T")

CPU_REQUEST = "SHIPYARD_TRAIN_CPU_REQUEST"
CPU_LIMIT = "SHIPYARD_TRAIN_CPU_LIMIT"
MEMORY_REQUEST = "SHIPYARD_TRAIN_MEMORY_REQUEST"
MEMORY_LIMIT = "SHIPYARD_TRAIN_MEMORY_LIMIT"
NODE_SELECTOR = "SHIPYARD_TRAIN_NODE_SELECTOR"
TOLERATIONS = "SHIPYARD_TRAIN_TOLERATIONS"
CHECKPOINT_PVC = "SHIPYARD_CHECKPOINT_PVC"
CHECKPOINT_MOUNT = "SHIPYARD_CHECKPOINT_MOUNT"
RETRY_BACKOFF = "SHIPYARD_RETRY_BACKOFF"
RETRY_BACKOFF_FACTOR = "SHIPYARD_RETRY_BACKOFF_FACTOR"
RETRY_MAX_DURATION = "SHIPYARD_RETRY_MAX_DURATION"

#: The environment variable the training step finds its checkpoint directory in (the PVC's mount).
CHECKPOINT_URI_ENV = "SHIPYARD_CHECKPOINT_URI"

CPU_EXPECTED = "expected a CPU quantity like 2, 0.5 or 500m (above 0)"
MEMORY_EXPECTED = (
    "expected a Kubernetes quantity like 16Gi (above 0): a whole number of bytes, optionally followed by "
    "Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or M, G, T, P, E (powers of 1000)"
)
DURATION_EXPECTED = "expected a duration like 30s, 5m, 1h, 2d or 1w (a whole number and one unit)"

_CPU = re.compile(r"(\d+(?:\.\d+)?)|(\d+)m")
# The suffixes both KFP (which validates them) and Kubernetes (which parses them) accept.
_MEMORY = re.compile(r"(\d+)(Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?")
_MEMORY_UNITS = {
    "": 1,
    **{suffix: 1024 ** (i + 1) for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{suffix: 1000 ** (i + 2) for i, suffix in enumerate(("M", "G", "T", "P", "E"))},
}
_DURATION = re.compile(r"(\d+)([smhdw])")
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
OPERATORS = ("Equal", "Exists")


def cpu_quantity(text: str) -> Decimal:
    """The number of CPUs in a Kubernetes CPU quantity (``2``, ``0.5``, ``500m``).

    Raises:
        ConfigError: Not such a quantity, or 0.
    """
    match = _CPU.fullmatch(text)
    if not match:
        raise ConfigError(CPU_EXPECTED)
    cpus = Decimal(match.group(1)) if match.group(1) is not None else Decimal(match.group(2)) / 1000
    if cpus <= 0:
        raise ConfigError(CPU_EXPECTED)
    return cpus


def memory_quantity(text: str) -> int:
    """The number of bytes in a Kubernetes memory quantity (``16Gi``, ``512Mi``, ``16G``).

    Raises:
        ConfigError: Not such a quantity (``K`` and decimals are refused: KFP or Kubernetes refuses them), or 0.
    """
    match = _MEMORY.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(MEMORY_EXPECTED)
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def duration_seconds(text: str) -> int:
    """The seconds in a duration as KFP's retry policy takes it (``30s``, ``5m``, ``1h``, ``2d``, ``1w``).

    Raises:
        ConfigError: Not such a duration.
    """
    match = _DURATION.fullmatch(text)
    if not match:
        raise ConfigError(DURATION_EXPECTED)
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


def check_label_key(key: str) -> None:
    """Checks a label, taint or resource key: ``[prefix/]name`` (a DNS subdomain prefix, a name of 1-63 characters).

    Raises:
        ConfigError: Not such a key.
    """
    prefix, _, name = key.rpartition("/")
    if not (_NAME.fullmatch(name) and len(name) <= 63) or (
        "/" in key and not (_DNS_SUBDOMAIN.fullmatch(prefix) and len(prefix) <= 253)
    ):
        raise ConfigError(
            f"{key!r} is not a Kubernetes label key: expected [prefix/]name, a name of 1-63 letters, digits, "
            "'-', '_' or '.' beginning and ending with a letter or digit, and a DNS subdomain prefix"
        )


def check_label_value(value: str) -> None:
    """Checks a label or taint value: empty, or 1-63 letters, digits, ``-``, ``_``, ``.`` (alphanumeric at both ends).

    Raises:
        ConfigError: Not such a value.
    """
    if value and not (_NAME.fullmatch(value) and len(value) <= 63):
        raise ConfigError(
            f"{value!r} is not a Kubernetes label value: expected at most 63 letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit"
        )


def check_pvc_name(name: str) -> None:
    """Checks a PersistentVolumeClaim name (a DNS subdomain: lowercase letters, digits, ``-`` and ``.``).

    Raises:
        ConfigError: Not such a name.
    """
    if not (_DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253):
        raise ConfigError(
            "expected a PersistentVolumeClaim name like training-checkpoints: lowercase letters, digits, '-' and "
            "'.', beginning and ending with a letter or digit"
        )


def check_mount_path(path: str) -> None:
    """Checks a mount path: absolute, written plainly (no ``..``, ``.``, ``//`` or trailing ``/``), not ``/``.

    Raises:
        ConfigError: Not such a path.
    """
    pure = PurePosixPath(path)
    if not pure.is_absolute() or str(pure) != path or path == "/" or ".." in pure.parts or ":" in path:
        raise ConfigError("expected an absolute path like /mnt/checkpoints (not /, without '..', ':' or a final '/')")


@dataclasses.dataclass(frozen=True)
class Toleration:
    """One Kubernetes toleration, spelled as in a Pod spec.

    Attributes:
        key: The taint key; empty matches every key (then ``operator`` must be ``Exists``).
        operator: ``Equal`` (the value must match) or ``Exists`` (any value; ``value`` stays empty).
        value: The taint value ``Equal`` matches.
        effect: ``NoSchedule``, ``PreferNoSchedule``, ``NoExecute``, or empty for every effect.
        toleration_seconds: How long a ``NoExecute`` taint is tolerated once it appears (None: forever).
    """

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""
    toleration_seconds: int | None = None

    FIELDS: ClassVar[frozenset[str]] = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})

    @classmethod
    def from_dict(cls, data: Any) -> Toleration:
        """A toleration from its Pod-spec form (``key``, ``operator``, ``value``, ``effect``, ``tolerationSeconds``).

        Raises:
            ConfigError: Not an object, an unknown field, a field of the wrong type or a bad combination.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"expected a toleration object like {{'key': 'nvidia.com/gpu', ...}}, got {data!r}")
        unknown = sorted(set(data) - cls.FIELDS)
        if unknown:
            raise ConfigError(f"unknown toleration field(s) {unknown}; expected {sorted(cls.FIELDS)}")
        for name in ("key", "operator", "value", "effect"):
            if not isinstance(data.get(name, ""), str):
                raise ConfigError(f"toleration {name} must be a string, got {data[name]!r}")
        seconds = data.get("tolerationSeconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
            raise ConfigError(f"tolerationSeconds must be a whole number of seconds, got {seconds!r}")
        toleration = cls(
            key=data.get("key", ""),
            operator=data.get("operator", "Equal"),
            value=data.get("value", ""),
            effect=data.get("effect", ""),
            toleration_seconds=seconds,
        )
        toleration.validate()
        return toleration

    @classmethod
    def from_short(cls, text: str) -> Toleration:
        """A toleration written as a taint is on ``kubectl taint``: ``key[=value][:Effect]``.

        Without a value it tolerates every value (``Exists``), with one only that value (``Equal``);
        without an effect, every effect. ``nvidia.com/gpu:NoSchedule``, ``dedicated=training:NoSchedule``.

        Raises:
            ConfigError: A bad key, value or effect.
        """
        rest, colon, effect = text.strip().partition(":")
        if colon and not effect:
            raise ConfigError(f"{text!r}: expected key[=value][:Effect], Effect one of {', '.join(EFFECTS)}")
        key, equals, value = rest.partition("=")
        toleration = cls(key=key, operator="Equal" if equals else "Exists", value=value, effect=effect)
        toleration.validate()
        return toleration

    def validate(self) -> None:
        """Checks the fields and their combination as the Kubernetes API does.

        Raises:
            ConfigError: A bad key, value, operator or effect, or a combination Kubernetes refuses.
        """
        if self.operator not in OPERATORS:
            raise ConfigError(f"toleration operator {self.operator!r}: expected one of {', '.join(OPERATORS)}")
        if self.effect and self.effect not in EFFECTS:
            raise ConfigError(f"toleration effect {self.effect!r}: expected one of {', '.join(EFFECTS)} or none")
        if self.key:
            check_label_key(self.key)
        elif self.operator != "Exists":
            raise ConfigError("a toleration without a key matches every taint and needs operator Exists")
        if self.operator == "Exists" and self.value:
            raise ConfigError(f"an Exists toleration matches every value; drop its value {self.value!r}")
        check_label_value(self.value)
        if self.toleration_seconds is not None and (self.toleration_seconds < 0 or self.effect != "NoExecute"):
            raise ConfigError("tolerationSeconds must be >= 0 and applies to the NoExecute effect only")

    def to_dict(self) -> dict[str, Any]:
        """The Pod-spec form, with the fields that are set."""
        out: dict[str, Any] = {"key": self.key, "operator": self.operator, "value": self.value, "effect": self.effect}
        out = {name: value for name, value in out.items() if value}
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


def parse_tolerations(text: str) -> tuple[Toleration, ...]:
    """Tolerations from a JSON list of toleration objects (or one object), or comma-separated ``key[=value][:Effect]``.

    ``[]`` and the empty string are no toleration.

    Raises:
        ConfigError: Neither form, or a bad toleration (named by its position).
    """
    text = text.strip()
    if not text:
        return ()
    if text[0] in "[{":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON ({exc})") from None
        items = data if isinstance(data, list) else [data]
        parse: Callable[[Any], Toleration] = Toleration.from_dict
    else:
        items = text.split(",")
        parse = Toleration.from_short
    tolerations = []
    for i, item in enumerate(items):
        try:
            tolerations.append(parse(item))
        except ConfigError as exc:
            raise ConfigError(f"toleration {i}: {exc}") from None
    return tuple(tolerations)


def parse_node_selector(text: str) -> dict[str, str]:
    """A node selector from a JSON object of labels, or comma-separated ``key=value`` pairs; empty: none.

    Raises:
        ConfigError: Neither form, or a bad label key or value.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ConfigError('expected a JSON object of string labels like {"pool": "gpu"}')
        labels: dict[str, str] = data
    else:
        labels = {}
        for pair in text.split(","):
            key, equals, value = pair.strip().partition("=")
            if not equals:
                raise ConfigError(f"{pair.strip()!r}: expected key=value")
            labels[key] = value
    for key, value in labels.items():
        check_label_key(key)
        check_label_value(value)
    return labels


def _named(variable: str, value: str, check: Callable[[str], T]) -> T:
    """``check(value)``, its ConfigError prefixed with ``variable=value``."""
    try:
        return check(value)
    except ConfigError as exc:
        raise ConfigError(f"{variable}={value!r}: {exc}") from None


def _at_most(request: tuple[str, str], limit: tuple[str, str], size: Callable[[str], Any]) -> None:
    (request_var, request_value), (limit_var, limit_value) = request, limit
    if request_value and limit_value and size(request_value) > size(limit_value):
        raise ConfigError(
            f"{request_var}={request_value!r} exceeds {limit_var}={limit_value!r}: a request must not exceed its limit"
        )


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where the training step runs: its resources, nodes and checkpoint volume (see the module docstring).

    Attributes:
        cpu_request: CPUs requested (a Kubernetes quantity; empty: none), also for tuning.
        cpu_limit: CPUs at most (empty: none), also for tuning.
        memory_request: Memory requested (a Kubernetes quantity; empty: none), also for tuning.
        memory_limit: Memory at most (empty: none), also for tuning.
        accelerator_type: The accelerator's resource name (:data:`shipyard.images.ACCELERATOR_TYPE`).
        gpus: Accelerators the training step requests (:data:`shipyard.images.TRAIN_GPUS`; 0: none).
        node_selector: Node labels the training pod must land on.
        tolerations: Taints the training pod tolerates.
        checkpoint_pvc: A PersistentVolumeClaim mounted on the training step (empty: none).
        checkpoint_mount: Where it is mounted; ``$SHIPYARD_CHECKPOINT_URI`` names this path in the step.
    """

    cpu_request: str = "2"
    cpu_limit: str = "8"
    memory_request: str = "8Gi"
    memory_limit: str = "16Gi"
    accelerator_type: str = "nvidia.com/gpu"
    gpus: int = 1
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    checkpoint_pvc: str = ""
    checkpoint_mount: str = "/mnt/checkpoints"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Placement:
        """The placement the environment variables give (an unset variable: its default; an empty one: none).

        Raises:
            ConfigError: A bad value, naming the variable, the value and what was expected.
        """
        from shipyard import images  # here: importing this module reads no environment variable

        defaults = cls()
        gpus, accelerator = images.TRAIN_GPUS, images.ACCELERATOR_TYPE
        if gpus:
            _named("SHIPYARD_ACCELERATOR_TYPE", accelerator, check_label_key)
        selector = _named(NODE_SELECTOR, environ.get(NODE_SELECTOR, ""), parse_node_selector)
        if TOLERATIONS in environ:
            tolerations = _named(TOLERATIONS, environ[TOLERATIONS], parse_tolerations)
        else:  # GPU node pools are commonly tainted with the accelerator's resource name
            tolerations = (Toleration(key=accelerator, operator="Exists", effect="NoSchedule"),) if gpus else ()
        placement = cls(
            cpu_request=environ.get(CPU_REQUEST, defaults.cpu_request).strip(),
            cpu_limit=environ.get(CPU_LIMIT, defaults.cpu_limit).strip(),
            memory_request=environ.get(MEMORY_REQUEST, defaults.memory_request).strip(),
            memory_limit=environ.get(MEMORY_LIMIT, defaults.memory_limit).strip(),
            accelerator_type=accelerator,
            gpus=gpus,
            node_selector=selector,
            tolerations=tolerations,
            checkpoint_pvc=environ.get(CHECKPOINT_PVC, defaults.checkpoint_pvc).strip(),
            checkpoint_mount=environ.get(CHECKPOINT_MOUNT, defaults.checkpoint_mount).strip(),
        )
        placement.validate()
        return placement

    def validate(self) -> None:
        """Checks every setting, and that no request exceeds its limit.

        Raises:
            ConfigError: Naming the variable that sets the bad value, the value and what was expected.
        """
        for variable, value, check in (
            (CPU_REQUEST, self.cpu_request, cpu_quantity),
            (CPU_LIMIT, self.cpu_limit, cpu_quantity),
            (MEMORY_REQUEST, self.memory_request, memory_quantity),
            (MEMORY_LIMIT, self.memory_limit, memory_quantity),
        ):
            if value:
                _named(variable, value, check)
        _at_most((CPU_REQUEST, self.cpu_request), (CPU_LIMIT, self.cpu_limit), cpu_quantity)
        _at_most((MEMORY_REQUEST, self.memory_request), (MEMORY_LIMIT, self.memory_limit), memory_quantity)
        if self.gpus < 0:
            raise ConfigError(f"SHIPYARD_TRAIN_GPUS={self.gpus}: expected a whole number >= 0")
        for key, value in self.node_selector.items():
            _named(NODE_SELECTOR, key, check_label_key)
            _named(NODE_SELECTOR, value, check_label_value)
        for i, toleration in enumerate(self.tolerations):
            try:
                toleration.validate()
            except ConfigError as exc:
                raise ConfigError(f"{TOLERATIONS}: toleration {i} {toleration.to_dict()}: {exc}") from None
        if self.checkpoint_pvc:
            _named(CHECKPOINT_PVC, self.checkpoint_pvc, check_pvc_name)
        _named(CHECKPOINT_MOUNT, self.checkpoint_mount, check_mount_path)

    def apply_to_training(self, task: Any) -> Any:
        """Sets everything on the training task (a KFP ``PipelineTask``); returns it.

        The scheduling settings go to the compiled pipeline's Kubernetes platform spec (kfp-kubernetes),
        which a local run ignores.
        """
        from kfp import kubernetes

        self.apply_to_tuning(task)
        if self.gpus:
            task.set_accelerator_type(self.accelerator_type).set_accelerator_limit(self.gpus)
        for key, value in self.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in self.tolerations:
            kubernetes.add_toleration(
                task,
                key=toleration.key or None,
                operator=toleration.operator,  # type: ignore[arg-type]  # validated: Equal or Exists
                value=toleration.value or None,
                effect=toleration.effect or None,  # type: ignore[arg-type]  # validated: one of EFFECTS
                toleration_seconds=toleration.toleration_seconds,
            )
        if self.checkpoint_pvc:
            kubernetes.mount_pvc(task, pvc_name=self.checkpoint_pvc, mount_path=self.checkpoint_mount)
            task.set_env_variable(CHECKPOINT_URI_ENV, self.checkpoint_mount)
        return task

    def apply_to_tuning(self, task: Any) -> Any:
        """Sets the CPU and memory requests and limits on a task (the tuning task gets only these); returns it."""
        for value, setter in (
            (self.cpu_request, task.set_cpu_request),
            (self.cpu_limit, task.set_cpu_limit),
            (self.memory_request, task.set_memory_request),
            (self.memory_limit, task.set_memory_limit),
        ):
            if value:
                setter(value)
        return task


@dataclasses.dataclass(frozen=True)
class Retry:
    """The retry policy of the steps that may lose their node (tuning and training).

    Attributes:
        retries: Retries after a failure (:data:`shipyard.images.STEP_RETRIES`; 0: no retry policy).
        backoff: The wait before the first retry (``30s``, ``5m``, ...).
        backoff_factor: Each next wait is the previous one times this.
        max_duration: All attempts together end within this of the step's first start (Argo's
            ``backoff.maxDuration``: no retry starts after it, and a running retry's deadline is cut
            to it), so it must exceed the longest training: KFP's default is 1 hour.
    """

    retries: int = 2
    backoff: str = "30s"
    backoff_factor: float = 2.0
    max_duration: str = "24h"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Retry:
        """The retry policy the environment variables give (unset: the defaults).

        Raises:
            ConfigError: A bad value, naming the variable, the value and what was expected.
        """
        from shipyard import images

        defaults = cls()
        factor_text = environ.get(RETRY_BACKOFF_FACTOR, str(defaults.backoff_factor)).strip()
        try:
            factor = float(factor_text)
        except ValueError:
            raise ConfigError(f"{RETRY_BACKOFF_FACTOR}={factor_text!r}: expected a number >= 1, like 2") from None
        retry = cls(
            retries=images.STEP_RETRIES,
            backoff=environ.get(RETRY_BACKOFF, defaults.backoff).strip(),
            backoff_factor=factor,
            max_duration=environ.get(RETRY_MAX_DURATION, defaults.max_duration).strip(),
        )
        retry.validate()
        return retry

    def validate(self) -> None:
        """Checks the durations and the factor.

        Raises:
            ConfigError: Naming the variable that sets the bad value, the value and what was expected.
        """
        if self.retries < 0:
            raise ConfigError(f"SHIPYARD_STEP_RETRIES={self.retries}: expected a whole number >= 0")
        _named(RETRY_BACKOFF, self.backoff, duration_seconds)
        _named(RETRY_MAX_DURATION, self.max_duration, duration_seconds)
        if duration_seconds(self.max_duration) == 0:
            raise ConfigError(f"{RETRY_MAX_DURATION}={self.max_duration!r}: expected a duration above 0, like 24h")
        if not 1 <= self.backoff_factor < float("inf"):
            raise ConfigError(f"{RETRY_BACKOFF_FACTOR}={self.backoff_factor!r}: expected a number >= 1, like 2")

    def kwargs(self) -> dict[str, Any]:
        """The arguments of KFP's ``PipelineTask.set_retry``."""
        return {
            "num_retries": self.retries,
            "backoff_duration": self.backoff,
            "backoff_factor": self.backoff_factor,
            "backoff_max_duration": self.max_duration,
        }

    def apply(self, task: Any) -> Any:
        """Sets the retry policy on a task (none when ``retries`` is 0); returns it."""
        if self.retries:
            task.set_retry(**self.kwargs())
        return task


#: The placement of the training (and, for CPU and memory, tuning) step, read from the environment.
TRAIN: Placement
#: The retry policy of the tuning and training steps, read from the environment.
RETRY: Retry
_READ: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """:data:`TRAIN` and :data:`RETRY`, read from the environment when first used (when the pipeline
    module is imported) and kept, so that ``shipyard compile`` can check its flags with this module's
    parsers before it sets the variables from them."""
    readers: dict[str, Callable[[Mapping[str, str]], Any]] = {"TRAIN": Placement.from_env, "RETRY": Retry.from_env}
    if name not in readers:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _READ:
        _READ[name] = readers[name](os.environ)
    return _READ[name]
