# Shipyard GPU image: the same package on CUDA torch, for train_model (and tune_hyperparams if wanted).
# Build from the repository root, with the code's commit (logged by every tracked step):
#   docker build -f docker/gpu.Dockerfile --build-arg SHIPYARD_GIT_COMMIT=$(git rev-parse HEAD) \
#     -t ghcr.io/shipyard-ml/shipyard-gpu:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG SHIPYARD_GIT_COMMIT=unknown
LABEL org.opencontainers.image.revision=$SHIPYARD_GIT_COMMIT
ENV SHIPYARD_GIT_COMMIT=$SHIPYARD_GIT_COMMIT

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
 && rm -rf /var/lib/apt/lists/* && python3.11 -m venv /opt/venv
WORKDIR /opt/shipyard
COPY requirements.lock setup.cfg pyproject.toml README.md ./
COPY shipyard ./shipyard
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
# The CUDA build of torch 2.13.0 (the lock pins the version; the index picks the CUDA wheel).
RUN pip install --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
 && pip install -c requirements.lock .
RUN useradd --create-home --uid 1000 shipyard
USER 1000
ENTRYPOINT ["shipyard"]
CMD ["--help"]
