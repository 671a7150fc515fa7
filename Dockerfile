# syntax=docker/dockerfile:1
# Production image of the vaultsync operator: `vaultsync run` as a non-root user.
# Holds no credentials: in a cluster it uses its ServiceAccount (in-cluster config),
# and it logs in to Vault as each tenant at run time.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtualenv with the project and its runtime dependencies (no test extras)
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/vaultsync
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ ./operator/
# A regular (non-editable) install; pip byte-compiles here, so the read-only root
# filesystem of the running container never needs to be written to.
RUN /opt/vaultsync/bin/pip install . \
    && /opt/vaultsync/bin/pip uninstall --yes pip \
    && /opt/vaultsync/bin/vaultsync --help >/dev/null

# ---- runtime: the slim base plus the virtualenv, nothing else
FROM ${PYTHON_IMAGE}
ARG UID=65532
RUN groupadd --system --gid "${UID}" vaultsync \
    && useradd --system --uid "${UID}" --gid vaultsync --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin vaultsync
COPY --from=build /opt/vaultsync /opt/vaultsync
ENV PATH=/opt/vaultsync/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER ${UID}:${UID}
WORKDIR /tmp
# 8080: Prometheus metrics (VAULTSYNC_METRICS_PORT); 8081: kopf liveness (/healthz).
EXPOSE 8080 8081
ENTRYPOINT ["vaultsync", "run"]
CMD ["--standalone"]
