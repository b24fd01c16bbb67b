# wampd: a resilient, reconnecting WAMP client daemon (see docs/CONTAINER.md).
#
#   docker build -t wampd .
#   docker run --rm -v "$PWD/wampd.toml:/etc/wampd/wampd.toml:ro" wampd
#
# BASE is any Debian-like image with python3 (>= 3.11) and its venv module at the same
# path in both stages: python:3.12-slim by default, or a local Debian bookworm with
# python3 + python3-venv (see scripts/test-image).
ARG BASE=python:3.12-slim

# ---- build: wampd and its dependencies into a self-contained virtualenv at /opt/wampd ----
FROM ${BASE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/wampd

WORKDIR /src
# The dependencies first, exactly as requirements/wampd.lock pins them (scripts/lock makes
# it): --require-hashes refuses any other version, any altered file and anything unpinned, so
# the image runs the versions the tests ran. Its own layer: cached until the lock changes.
COPY requirements/wampd.lock ./requirements/
RUN /opt/wampd/bin/pip install --no-cache-dir --require-hashes -r requirements/wampd.lock
COPY pyproject.toml README.md ./
COPY wampd ./wampd
# The `twist wampd` plugin module, installed into site-packages/twisted/plugins.
COPY twisted ./twisted
# wampd itself, a regular (not editable) install with --no-deps: all it needs is installed
# above, and `pip check` fails the build if the lock misses something pyproject.toml asks for.
# The runtime stage gets the venv and nothing else. pip compiles the .pyc files here, so the
# read-only runtime never needs to write them. setuptools (which Python 3.11's venv adds,
# 3.12's does not; the lock has none: tests/unit/test_lock.py) is not needed at run time;
# pip stays, so an image built FROM this one can add components with it.
RUN /opt/wampd/bin/pip install --no-cache-dir --no-deps . \
    && /opt/wampd/bin/pip uninstall --yes setuptools \
    && /opt/wampd/bin/pip check \
    && /opt/wampd/bin/wampd --version

# ---- runtime: the base image, the venv, a non-root user ---------------------------------
FROM ${BASE}

ARG BASE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="wampd" \
      org.opencontainers.image.description="A resilient, reconnecting WAMP client daemon: hosts autobahn components and keeps them joined through every outage." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="The wampd developers" \
      org.opencontainers.image.documentation="docs/CONTAINER.md" \
      org.opencontainers.image.base.name="${BASE}"

# uid/gid 10001, no home, no shell, no lastlog/faillog entries (-l: keeps the image small).
RUN groupadd --gid 10001 wampd \
    && useradd --no-log-init --uid 10001 --gid 10001 \
       --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin wampd \
    && mkdir -p /etc/wampd

COPY --from=build /opt/wampd /opt/wampd

ENV PATH=/opt/wampd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# /metrics, /healthz, /readyz ([http] listen; 127.0.0.1:9100 unless configured otherwise:
# set listen = "0.0.0.0:9100" to reach them from outside the container).
EXPOSE 9100

USER 10001

# wampd is PID 1 (exec form): it gets SIGTERM itself, every session leaves with GOODBYE,
# and it exits 0 within [shutdown] timeout.
STOPSIGNAL SIGTERM

# Liveness from inside the container (same network namespace as the daemon): GET
# http://127.0.0.1:9100/healthz, exit 0 on 2xx. A router outage is not unhealthy;
# a component that gave up or was rejected fatally is. The probe's own timeout is 5 s.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["wampd", "probe"]

ENTRYPOINT ["wampd"]
CMD ["run", "--config", "/etc/wampd/wampd.toml"]
