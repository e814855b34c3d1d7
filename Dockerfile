# The issuance portal: Quart on hypercorn, migrations applied at start.
#   docker build -t issuer .
#   docker run -p 5000:5000 -e ISSUER_SECRET_KEY=... -e ISSUER_ACAPY_ADMIN_URL=... issuer
# compose.yaml runs it with PostgreSQL and an ACA-Py issuer. Say which build it is with
#   docker build --build-arg GIT_REVISION=$(git rev-parse HEAD) \
#                --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t issuer .
# (GET /health and the issuer_build_info metric show the version and the revision).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
# The build's identity: the package version (keep equal to issuer.release.VERSION, tested), the
# git revision, and optionally the build time (RFC 3339) and where the source is published.
ARG VERSION=0.1.0
ARG GIT_REVISION=unknown
ARG CREATED
ARG SOURCE_URL

# --- assets: the pinned browser bundles (Swagger UI, ReDoc), integrity-checked by npm ci ---------
FROM ${NODE_IMAGE} AS assets
WORKDIR /assets
COPY assets/package.json assets/package-lock.json assets/.npmrc ./
RUN npm ci

# --- build: the package and its runtime dependencies in a virtual environment ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (cached until pyproject.toml or the lock changes), then the code.
COPY pyproject.toml requirements.lock README.md ./
COPY src ./src
# Only the files the pages load go into the package (src/issuer/static/vendor).
COPY assets/vendor.py assets/package-lock.json ./assets/
COPY --from=assets /assets/node_modules ./assets/node_modules
RUN python assets/vendor.py
# No dev extras: the lock is only a constraint, so test tools are not installed.
RUN pip install -c requirements.lock .
# The revision baked into the installed package (issuer/REVISION): what GET /health shows when
# ISSUER_GIT_REVISION is empty. Last, so a new revision does not redo the install.
ARG GIT_REVISION
RUN python -c "import importlib.util, pathlib, sys; \
pathlib.Path(importlib.util.find_spec('issuer').origin).with_name('REVISION').write_text(sys.argv[1] + '\n')" \
    "$GIT_REVISION"

# --- runtime: no compiler, no source tree, not root ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ISSUER_ENV=production \
    PORT=5000 \
    WEB_CONCURRENCY=1 \
    ISSUER_DATABASE_URL=sqlite+aiosqlite:////app/data/issuer.db
RUN groupadd --system --gid 10001 issuer \
    && useradd --system --uid 10001 --gid issuer --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin issuer \
    && mkdir -p /app/data \
    && chown issuer:issuer /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Owned by root and read-only for the app user; only /app/data (SQLite, if used) is writable.
COPY alembic ./alembic
COPY alembic.ini hypercorn.toml ./
# Late in the stage, so a new revision changes only these layers.
ARG VERSION
ARG GIT_REVISION
ARG CREATED
ARG SOURCE_URL
LABEL org.opencontainers.image.title="issuer" \
      org.opencontainers.image.description="Credential issuance portal and accounts API on Quart" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$GIT_REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.source="$SOURCE_URL"
ENV ISSUER_GIT_REVISION=$GIT_REVISION
# Mount a volume at /app/data when running on SQLite.
# Numeric, so orchestrators can verify runAsNonRoot.
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=4)" || exit 1
# hypercorn's graceful_timeout (hypercorn.toml) is 10 s; give it that before SIGKILL.
STOPSIGNAL SIGTERM
# Migrate, then `exec` so hypercorn replaces the shell and receives SIGTERM itself (through
# `python -m issuer.serve`: hypercorn's command line, its master safe from a second signal).
# One worker suits SQLite; on PostgreSQL set WEB_CONCURRENCY > 1 (LISTEN/NOTIFY fan-out).
CMD ["sh", "-c", "alembic upgrade head && exec python -m issuer.serve --config hypercorn.toml --bind \"0.0.0.0:${PORT:-5000}\" --workers \"${WEB_CONCURRENCY:-1}\" 'issuer:create_app()'"]
