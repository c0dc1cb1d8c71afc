"""A small FastAPI app served by fcgigw over ASGI.

Run it from the repository root and point a web server's FastCGI upstream at the address::

    python -m fcgigw --bind 127.0.0.1:9000 examples.fastapi_app:app

fcgigw detects the ASGI interface and runs the lifespan handler before serving. Mounted under
a sub-path (nginx ``location /api/``), add ``--root-path /api``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

#: Bytes read from an upload per call, so a large file is hashed without holding it whole.
UPLOAD_CHUNK_BYTES = 64 * 1024


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Startup work (open pools, load config); the yielded dict is each request's state."""
    app.state.started_at = time.time()
    app.state.greeting = "set at startup"
    yield {"lifespan_greeting": "hello from lifespan state"}


app = FastAPI(title="fcgigw FastAPI example", lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/")
def index() -> dict[str, str]:
    return {"message": "Hello from FastAPI over FastCGI"}


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    while chunk := await file.read(UPLOAD_CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return {"filename": file.filename, "size": size, "sha256": digest.hexdigest()}


@app.post("/json")
def echo_json(item: Item) -> Item:
    return item


@app.get("/stream")
def stream() -> StreamingResponse:
    def lines() -> Iterator[str]:
        for number in range(5):
            yield f"line {number}\n"

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/state")
def state(request: Request) -> dict[str, Any]:
    return {
        "greeting": request.app.state.greeting,
        "started_at": request.app.state.started_at,
        "lifespan_greeting": request.state.lifespan_greeting,
    }


@app.get("/whoami")
def whoami(request: Request) -> dict[str, Any]:
    """Where the app thinks it is mounted and who asked: handy for checking a server config."""
    return {
        "root_path": request.scope["root_path"],
        "path": request.url.path,
        "client_host": request.client.host if request.client else None,
        "role": request.scope["extensions"]["fastcgi"]["role"],
    }
