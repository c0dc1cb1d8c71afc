"""A small Flask app served by fcgigw: ``python -m fcgigw examples.flask_app:app``."""

from __future__ import annotations

from flask import Flask, Response, jsonify, redirect, request, stream_with_context, url_for

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"<h1>Hello from Flask over FastCGI</h1><p>You asked for {request.path}</p>"


@app.route("/echo", methods=["GET", "POST", "PUT"])
def echo() -> Response:
    """What the app saw: handy for checking a web server's configuration."""
    return jsonify(
        method=request.method,
        path=request.path,
        script_root=request.script_root,
        url=request.url,
        args=request.args.to_dict(flat=False),
        form=request.form.to_dict(flat=False),
        body_length=len(request.get_data()),
        headers=dict(request.headers.items()),
        cookies=request.cookies,
        scheme=request.scheme,
    )


@app.get("/go")
def go() -> Response:
    return redirect(url_for("index"))


@app.get("/stream")
def stream() -> Response:
    def chunks() -> object:
        for number in range(5):
            yield f"chunk {number}\n"

    return Response(stream_with_context(chunks()), mimetype="text/plain")


@app.get("/fail")
def fail() -> str:
    raise RuntimeError("this page fails on purpose")
