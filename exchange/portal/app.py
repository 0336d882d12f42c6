"""The portal's ASGI application: the API and the pages over one :class:`Portal`.

Building the app touches no network; the portal starts (follows its topics, opens its audit
chain) in the app's lifespan, so ``uvicorn`` workers and tests start it the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exchange.portal.api import api_router, install_error_handlers
from exchange.portal.pages import install_page_errors, page_router
from exchange.portal.quality_pages import quality_router
from exchange.portal.service import Portal

__all__ = ["create_app"]


def create_app(portal: Portal) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        portal.start()
        try:
            yield
        finally:
            portal.stop()

    app = FastAPI(
        title="Exchange portal API",
        version="1",
        summary="Departments apply for, decide and end their data grants themselves.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.portal = portal
    install_error_handlers(app)
    install_page_errors(app)
    app.include_router(api_router())
    app.include_router(page_router())
    app.include_router(quality_router())
    return app
