# The service's image: `docker build -t callcenter .`
# The base is a build argument so that a machine without a registry can build
# from a Python image of its own (scripts/compose-check does).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY callcenter ./callcenter
# A virtual environment (pip compiles its bytecode), copied whole into the final image:
# no pip cache, build tools or sources there.
RUN python -m venv /opt/callcenter \
 && /opt/callcenter/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/callcenter --create-home callcenter
COPY --from=build /opt/callcenter /opt/callcenter
ENV PATH=/opt/callcenter/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CALLCENTER_HOST=0.0.0.0 \
    CALLCENTER_PORT=8080 \
    CALLCENTER_DATA_DIR=/var/lib/callcenter
USER callcenter
WORKDIR /var/lib/callcenter
EXPOSE 8080
# Ready = the database answers and its migrations are current (what a load balancer wants).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('CALLCENTER_PORT', '8080'), timeout=2)"]
CMD ["callcenter", "serve"]
