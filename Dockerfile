# The exchange CLI and services (router, connectors) for deployments.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY exchange ./exchange
COPY connectors ./connectors
RUN pip install --no-cache-dir .
COPY config ./config
COPY schemas ./schemas
ENTRYPOINT ["exchange"]
