# Annostream: one image for every service (watcher, worker, API, or all of them via `up`).
# Docker cannot be exercised on the development machines (no engine); the image is kept
# minimal and mirrors `make run`: the same package, the same entry point.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ANNOSTREAM_DATA_DIR=/data \
    ANALYSES_INCOMING=/data/analyses/incoming \
    ANALYSES_PATH=/data/analyses/imported \
    ANALYSES_FAILED=/data/analyses/failed \
    PORT=3114

RUN apt-get update \
    && apt-get install -y --no-install-recommends supervisor tabix \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/annostream
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY consumers ./consumers
COPY producers ./producers
COPY api ./api
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --create-home --uid 1000 annostream \
    && mkdir -p /data && chown annostream /data
COPY ops/supervisord.conf /etc/supervisor/conf.d/annostream.conf

USER annostream
VOLUME ["/data"]
EXPOSE 3114
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3114\")}/healthz')"
# `up` supervises broker (unless KAFKA_BOOTSTRAP_SERVERS is set), watcher, worker and API.
# Production with external Kafka can instead run: supervisord -n -c /etc/supervisor/supervisord.conf
ENTRYPOINT ["annostream"]
CMD ["up"]
