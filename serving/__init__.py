"""The KServe runtime for Shipyard model artifacts.

``serving.formats.load_model`` is the one place a model format is loaded: evaluation,
quantization benchmarks and the server all go through it, so what is evaluated is what is served.
This package never imports ``kfp`` or ``components``; ``kserve`` is imported only by
``serving.model`` and ``serving.server``.
"""
