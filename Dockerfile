# modelpack serving image: mount or copy a model at /opt/model and it is served on port 8080.
#
#   docker build -t modelpack .
#   docker run -p 8080:8080 -v "$PWD/diabetes_model:/opt/model:ro" modelpack
#
# Settings (environment): MODELPACK_PORT (8080), MODELPACK_WORKERS (1), MODELPACK_TIMEOUT (60),
# MODELPACK_HOST (0.0.0.0), MODELPACK_MAX_BODY_BYTES, MODELPACK_LOG_LEVEL. The model runs in this
# image's environment (--env-manager local): its libraries must be installed here, which is true of
# scikit-learn models; for anything else build a per-model image (`modelpack build-docker`).
# See docs/deploying.md.

# Any Debian-like image with python3 and the venv module (python:3.X-slim, or debian + python3-venv).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Hooks for a private package index or a TLS-intercepting proxy; build arguments of this stage only.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_CERT=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/venv
COPY pyproject.toml README.md /src/
# modelpack/flavors is a symlink to ../flavors, which COPY keeps as a symlink: both directories are needed.
COPY modelpack /src/modelpack
COPY flavors /src/flavors
# A wheel, not the source tree: the installed modelpack then pins itself as `modelpack==X` in models it saves.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/wheels /src \
    && /opt/venv/bin/pip install /tmp/wheels/modelpack-*.whl

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-log-init --create-home --home-dir /home/modelpack \
        --shell /usr/sbin/nologin modelpack
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELPACK_HOST=0.0.0.0 \
    MODELPACK_PORT=8080 \
    MODELPACK_WORKERS=1 \
    MODELPACK_TIMEOUT=60
WORKDIR /home/modelpack
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ping' % os.environ.get('MODELPACK_PORT', '8080'), timeout=4)"]
# Exec form: `modelpack serve` replaces itself with the gunicorn master, which gets SIGTERM directly.
CMD ["modelpack", "serve", "--model-uri", "/opt/model", "--env-manager", "local"]
