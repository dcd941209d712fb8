# Shopfloor's image: the API, the gateway with the twin, and the simulated plant (docker-compose.yml runs them).
# Built from a Debian Python base; the project is installed editable so its committed data slices and
# models (data/, twin/models/) are found beside the code, and ./shopfloor.toml is the configuration read.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 SHOPFLOOR_STATE=/var/lib/shopfloor
WORKDIR /opt/shopfloor
COPY . .
RUN pip install -e . \
    && useradd --system --home-dir /var/lib/shopfloor --create-home shopfloor
USER shopfloor
# mount your own configuration over this file (see docker-compose.yml)
CMD ["shopfloor", "serve"]
