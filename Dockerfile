# syntax=docker/dockerfile:1
# egauge-gateway: docker build -t egauge-gateway .   (docs/OPERATIONS.md, "Docker")
# The base image is a build argument: --build-arg BASE_IMAGE=python:3.12-slim-bookworm
# (requirements.lock is resolved for Python 3.11; for byte-identical images pin the base image
# by digest too: --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:...)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# Exact versions and their sha256 hashes (scripts/lock writes the file): the dependencies
# first, then the gateway itself without resolving anything again and without build
# isolation (its build requirements, setuptools and wheel, are in the lock too), so two
# builds of one commit install the same files.
COPY requirements.lock ./
RUN python -m venv /opt/egauge-gateway \
 && /opt/egauge-gateway/bin/pip install --no-cache-dir --require-hashes --only-binary :all: \
      -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
RUN /opt/egauge-gateway/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/egauge-gateway/bin/pip check \
 && /opt/egauge-gateway/bin/egauge-gateway --version

FROM ${BASE_IMAGE}
# a fixed uid/gid (10001), so that an orchestrator can run the image as that user by number
# (Kubernetes: runAsNonRoot with runAsUser, fsGroup for the state volume)
RUN groupadd --system --gid 10001 egauge-gateway \
 && useradd --system --uid 10001 --gid egauge-gateway --home-dir /var/lib/egauge-gateway \
      --create-home --shell /usr/sbin/nologin egauge-gateway
COPY --from=build /opt/egauge-gateway /opt/egauge-gateway
# The example configuration; mount your own over it (and mapping files next to it).
COPY gateway.yaml /etc/egauge-gateway/gateway.yaml
ENV PATH=/opt/egauge-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER egauge-gateway
WORKDIR /var/lib/egauge-gateway
VOLUME ["/var/lib/egauge-gateway"]
# Modbus TCP; the HTTP endpoint (/healthz, /readyz, /metrics) listens on 127.0.0.1 unless the
# configuration sets http.host: 0.0.0.0 to publish it.
EXPOSE 5020 9120
# Checks the HTTP endpoint inside the container (http.enabled with http.port 9120).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9120/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["egauge-gateway"]
CMD ["run", "-c", "/etc/egauge-gateway/gateway.yaml"]
