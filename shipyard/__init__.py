"""Shipyard: Kubeflow Pipelines components from raw data to a KServe canary rollout.

The kernel (this package, except :mod:`shipyard.cli`) holds what every other package shares:
errors, configuration, artifact contracts, storage URIs and image names. It imports nothing
from ``components``, ``pipelines`` or ``serving``.
"""

__version__ = "0.1.0"
