# The exchange CLI and services (router, connectors) for deployments.
#
# Two stages: the router's compiled kernel (kernel/, Rust with PyO3) is built into a wheel in
# the first, with Rust from rustup; the image itself carries neither a compiler nor cargo.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH="/root/.cargo/bin:${PATH}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel ./kernel
COPY exchange ./exchange
COPY connectors ./connectors
# The package and every dependency as wheels, for the second stage to install offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels exchange && rm -rf /wheels
COPY config ./config
COPY schemas ./schemas
# Not root: uid 1000, the apache/kafka image's user too, so the broker reads the secrets this
# image writes (files 0600). Empty volumes mounted at /secrets and /app/.exchange take these
# folders' owner.
RUN useradd --uid 1000 --create-home exchange \
    && mkdir -p /secrets /app/.exchange/router /app/.exchange/secrets \
       /app/.exchange/connectors/gongan /app/.exchange/connectors/scjg \
       /app/.exchange/connectors/rsj /app/.exchange/connectors/mzj \
    && chown -R exchange:exchange /secrets /app/.exchange \
    && chmod 700 /secrets
USER 1000:1000
ENTRYPOINT ["exchange"]
