# One image for every leadflow service; the service is chosen by the command:
#   python -m services.<ingest|enrich|score|router> [run|migrate]
#
# BASE_IMAGE must be a Debian-based Python 3.11, named by an exact tag and, where a registry is
# reachable, its digest: the default is python:3.11.16-slim-bookworm as published on 2026-09-01
# (its image index digest as docker-library/repo-info recorded it, repos/python/remote/
# 3.11.16-slim-bookworm.md at 422f3cf). `make image` builds an equivalent local base with
# debootstrap where no registry is reachable.
ARG BASE_IMAGE=docker.io/library/python:3.11.16-slim-bookworm@sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/runtime.lock ./
# The runtime lock (every dependency, transitively, with its hashes; the same versions CI tests
# from requirements/dev.lock), as wheels only: pip refuses a file whose hash the lock does not
# list, no compiler is needed here and none reaches the final stage. The optional build secret
# `ca-bundle` lets pip trust a TLS-intercepting proxy without the certificate landing in a layer.
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python3 -m venv /opt/leadflow \
 && /opt/leadflow/bin/pip install --require-hashes --only-binary=:all: -r runtime.lock
COPY shared ./shared
COPY services ./services
# Bytecode is compiled now because the root filesystem is read-only at run time.
RUN /opt/leadflow/bin/python -m compileall -q shared services

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 leadflow \
 && useradd --system --uid 10001 --gid leadflow --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin leadflow
COPY --from=build /opt/leadflow /opt/leadflow
COPY --from=build /src/shared /app/shared
COPY --from=build /src/services /app/services
# MPLCONFIGDIR: matplotlib (score's model pictures) keeps its font cache in the writable /tmp
# volume; the home directory does not exist and the root filesystem is read-only.
ENV PATH=/opt/leadflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /app
# Numeric user so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000 8081 8082 8083
# Exec form: Python is PID 1 and receives SIGTERM itself (its handlers start the drain).
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["python", "-m"]
CMD ["services.ingest", "run"]
