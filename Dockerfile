# syntax=docker/dockerfile:1
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY mappings ./mappings
RUN python -m venv /opt/egauge-gateway \
 && /opt/egauge-gateway/bin/pip install --no-cache-dir .

FROM ${BASE_IMAGE}
RUN groupadd --system egauge-gateway \
 && useradd --system --gid egauge-gateway --home-dir /var/lib/egauge-gateway \
      --create-home egauge-gateway
COPY --from=build /opt/egauge-gateway /opt/egauge-gateway
COPY gateway.yaml /etc/egauge-gateway/gateway.yaml
COPY mappings /etc/egauge-gateway/mappings
ENV PATH=/opt/egauge-gateway/bin:$PATH \
    PYTHONUNBUFFERED=1
USER egauge-gateway
WORKDIR /var/lib/egauge-gateway
EXPOSE 5020 9120
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9120/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["egauge-gateway"]
CMD ["run", "-c", "/etc/egauge-gateway/gateway.yaml"]
