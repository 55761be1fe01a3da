"""Container images the components run on: one per dependency set, tagged with the version.

Override at compile time with environment variables (read when ``components`` is imported):
``SHIPYARD_IMAGE_REGISTRY`` (default ``ghcr.io/shipyard-ml``), ``SHIPYARD_IMAGE_TAG`` (default the
package version), or the full names ``SHIPYARD_CPU_IMAGE`` / ``SHIPYARD_GPU_IMAGE``.
"""

from __future__ import annotations

import os

from shipyard import __version__
from shipyard.errors import ConfigError

REGISTRY = os.environ.get("SHIPYARD_IMAGE_REGISTRY", "ghcr.io/shipyard-ml").rstrip("/")
TAG = os.environ.get("SHIPYARD_IMAGE_TAG", __version__)

#: CPU image: everything but CUDA (Dockerfile ``docker/cpu.Dockerfile``).
CPU_IMAGE = os.environ.get("SHIPYARD_CPU_IMAGE", f"{REGISTRY}/shipyard:{TAG}")
#: GPU image: the same package on CUDA torch (Dockerfile ``docker/gpu.Dockerfile``).
GPU_IMAGE = os.environ.get("SHIPYARD_GPU_IMAGE", f"{REGISTRY}/shipyard-gpu:{TAG}")
#: Serving image used by the KServe ServingRuntime (same as the CPU image).
SERVING_IMAGE = os.environ.get("SHIPYARD_SERVING_IMAGE", CPU_IMAGE)

ALL_IMAGES = (CPU_IMAGE, GPU_IMAGE)


def _count(name: str, text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"{name}={text!r}: expected a whole number >= 0")
    return int(text)


#: Accelerator the training step requests on a cluster, and how many (0: CPU only). Compile-time
#: settings (``shipyard compile --train-gpus N``): kfp.local 2.17 cannot resolve an accelerator
#: limit given as a pipeline parameter inside an ExitHandler, so this is not a run parameter.
ACCELERATOR_TYPE = os.environ.get("SHIPYARD_ACCELERATOR_TYPE", "nvidia.com/gpu")
TRAIN_GPUS = _count("SHIPYARD_TRAIN_GPUS", os.environ.get("SHIPYARD_TRAIN_GPUS", "1"))

#: Retries of the steps that may lose their node (tuning and training: GPU or spot preemption), a
#: compile-time setting like the GPU count (``SHIPYARD_STEP_RETRIES``, default 2; 0 compiles no
#: retry policy; the backoff is :data:`shipyard.placement.RETRY`'s, beside the steps' CPU, memory,
#: node selector, tolerations and checkpoint PVC). KFP retries whatever the error, so a retry of a
#: deterministic failure (bad option, bad data) fails as soon as it starts (after its backoff)
#: through the failure marker of :mod:`shipyard.attempts`, where the marker survives;
#: ``shipyard run --local`` drops the retry policies (a local process is not preempted, and
#: kfp.local would sleep out every backoff).
STEP_RETRIES = _count("SHIPYARD_STEP_RETRIES", os.environ.get("SHIPYARD_STEP_RETRIES", "2"))
