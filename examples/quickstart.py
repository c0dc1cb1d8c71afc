"""See fcgigw work in one command: serve the Flask example, fetch a page over FastCGI, and
(when nginx is installed) put nginx in front of it on http://127.0.0.1:8080/.

    python3 -m pip install '.[examples]' && python3 examples/quickstart.py

It keeps serving, with the addresses printed, until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from fcgigw.client import FastCGIClient, build_params

HERE = Path(__file__).resolve().parent
FASTCGI_ADDRESS = os.environ.get("QUICKSTART_FASTCGI", "127.0.0.1:9000")
HTTP_PORT = int(os.environ.get("QUICKSTART_HTTP_PORT", "8080"))

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
{user}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    fastcgi_temp_path {dir}/fastcgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass {fastcgi};
        }}
    }}
}}
"""


def wait_for(check: object, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            check()  # type: ignore[operator]
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"quickstart: {what} did not come up in {seconds:.0f} s")


def start_fcgigw() -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "fcgigw", "--bind", FASTCGI_ADDRESS, "--access-log"]
    command.append("examples.flask_app:app")
    print("$ python3", " ".join(command[1:]), flush=True)
    return subprocess.Popen(command, cwd=HERE.parent)


def fetch_over_fastcgi(path: str) -> bytes:
    with FastCGIClient(FASTCGI_ADDRESS, timeout=5) as client:
        response = client.request(build_params("GET", path))
    print(f"FastCGI GET {path} -> {response.status} {response.reason}")
    return response.body


def start_nginx() -> tuple[subprocess.Popen[bytes], str] | None:
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None or not Path("/etc/nginx/fastcgi_params").exists():
        print("nginx is not installed: skipping the web server step (apt-get install nginx)")
        return None
    workdir = tempfile.mkdtemp(prefix="fcgigw-quickstart-")
    conf = Path(workdir, "nginx.conf")
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        NGINX_CONF.format(dir=workdir, port=HTTP_PORT, fastcgi=FASTCGI_ADDRESS, user=user)
    )
    process = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", workdir, "-e", f"{workdir}/error.log"],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{HTTP_PORT}/"
    wait_for(lambda: urllib.request.urlopen(url, timeout=2).close(), "nginx")
    return process, url


def main() -> None:
    server = start_fcgigw()
    nginx = None
    try:
        wait_for(lambda: fetch_over_fastcgi("/"), "fcgigw")
        print(fetch_over_fastcgi("/echo?hello=world").decode()[:300])
        nginx = start_nginx()
        if nginx is not None:
            with urllib.request.urlopen(nginx[1] + "echo?via=nginx", timeout=5) as reply:
                print(f"HTTP GET {nginx[1]}echo?via=nginx -> {reply.status} through nginx")
        print(f"\nfcgigw is serving examples/flask_app.py over FastCGI on {FASTCGI_ADDRESS}")
        if nginx is not None:
            print(f"nginx is serving it over HTTP on {nginx[1]}  (try: curl {nginx[1]}echo)")
        print(f"try: python3 -m fcgigw.client {FASTCGI_ADDRESS} /echo?x=1")
        print("Ctrl-C to stop.", flush=True)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if nginx is not None:
            nginx[0].send_signal(signal.SIGQUIT)
            nginx[0].wait(timeout=10)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=35)


if __name__ == "__main__":
    main()
