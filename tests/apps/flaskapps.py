"""A Flask app that saves uploads as many do (``request.get_data()`` to a file), for checking
what reaches the disk when an upload is cut short (test_nginx_flask)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request

app = Flask(__name__)


@app.post("/upload/<name>")
def upload(name: str) -> dict[str, int]:
    """Saves the body as ``name`` in the directory the ``dir`` query parameter names."""
    data = request.get_data()
    (Path(request.args["dir"]) / name).write_bytes(data)
    return {"saved": len(data)}
