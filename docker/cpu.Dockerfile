# Shipyard CPU image: components and the KServe runtime (`shipyard serve`).
# Build from the repository root, with the code's commit (logged by every tracked step):
#   docker build -f docker/cpu.Dockerfile --build-arg SHIPYARD_GIT_COMMIT=$(git rev-parse HEAD) \
#     -t ghcr.io/shipyard-ml/shipyard:0.1.0 .
FROM python:3.11-slim

ARG SHIPYARD_GIT_COMMIT=unknown
LABEL org.opencontainers.image.revision=$SHIPYARD_GIT_COMMIT
ENV SHIPYARD_GIT_COMMIT=$SHIPYARD_GIT_COMMIT

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/shipyard
COPY requirements.lock setup.cfg pyproject.toml README.md ./
COPY shipyard ./shipyard
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
# torch==2.13.0 from the CPU wheel index; every other version from the lock file.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c requirements.lock .
RUN useradd --create-home --uid 1000 shipyard
USER 1000
EXPOSE 8080
ENTRYPOINT ["shipyard"]
CMD ["--help"]
