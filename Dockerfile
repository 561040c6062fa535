# syntax=docker/dockerfile:1
# rxroute's one image: `serve` (the default), `worker` and `migrate` are its commands, e.g.
#   docker run IMAGE                      -> rxroute serve --host 0.0.0.0
#   docker run IMAGE worker               -> rxroute worker
#   docker run IMAGE migrate --wait-for-db 120
# Build: docker build -t rxroute:$(git rev-parse --short HEAD) .
# In CI, pin the base image by digest (python:3.11-slim-bookworm@sha256:...) so a rebuild
# cannot pull a different Python; docs/operations.md ("Image and manifests") says more.

# --- builder: the wheel, and every dependency from the hashed lock, in a venv ----------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
RUN python -m venv /opt/rxroute

# Dependencies first (their own layer, rebuilt only when the lock changes). --require-hashes:
# exactly the reviewed files, or the build fails. Every locked package ships wheels for
# Linux, so this stage needs no compiler either.
COPY requirements.lock ./
RUN /opt/rxroute/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r requirements.lock

# Then rxroute itself, as a wheel (no editable install, no source tree in the image).
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/rxroute/bin/pip wheel --no-deps --wheel-dir /build/dist . \
    && /opt/rxroute/bin/pip install --no-deps --no-index /build/dist/rxroute-*.whl \
    && /opt/rxroute/bin/rxroute --help >/dev/null

# --- runtime: Python, the venv, a non-root user; no compiler, no build files --------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="rxroute" \
      org.opencontainers.image.description="Route prescriptions to pharmacies by region and track them until dispensed." \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed uid/gid, so Kubernetes' runAsNonRoot can check it and volumes can be owned by it.
RUN groupadd --system --gid 10001 rxroute \
    && useradd --system --uid 10001 --gid rxroute --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin rxroute

COPY --from=builder /opt/rxroute /opt/rxroute

# The root filesystem may be read-only (it is, in deploy/kubernetes): no bytecode is written,
# and the only writable place rxroute may need (RXROUTE_VAR_DIR) is under /tmp.
ENV PATH=/opt/rxroute/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RXROUTE_VAR_DIR=/tmp/rxroute \
    RXROUTE_PORT=8000

WORKDIR /tmp
USER 10001:10001
EXPOSE 8000

# uvicorn and the worker both finish their work on SIGTERM (the worker waits for its running
# jobs up to its shutdown grace); docker and Kubernetes send it on stop.
STOPSIGNAL SIGTERM

# For `serve` (slim has no curl). A worker or migrate container has no web server: disable
# the check for those (compose: `healthcheck: {disable: true}`); Kubernetes ignores it and
# uses the probes in deploy/kubernetes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RXROUTE_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["rxroute"]
CMD ["serve", "--host", "0.0.0.0"]
