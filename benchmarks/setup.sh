#!/usr/bin/env bash
# Install what benchmarks/run.py needs; safe to run again (apt and pip skip what is there).
#   - Debian packages: the load (wrk), the web server (nginx-light), the peers that are not on
#     PyPI (uwsgi + its python3 plugin) and the libfcgi C ceiling (libfcgi-dev, gcc).
#   - benchmarks/.venv (gitignored): fcgigw from this tree (editable, with uvloop) and the
#     Python peers, so the project's own environment stays as the tests expect it.
# Run as root (or with sudo) on Debian 12: sudo bash benchmarks/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="nginx-light wrk uwsgi uwsgi-plugin-python3 libfcgi-dev gcc"
# The peers as their users install them: fcgisgi is the PyPI name of the asyncio FastCGI
# adapter; uvicorn[standard] brings uvloop and httptools, which uvicorn then picks; granian
# (Rust, WSGI and ASGI) ships as a wheel. matplotlib draws benchmarks/results.png: it is the
# harness's, not a dependency of fcgigw.
PIP_PACKAGES=(flup fcgisgi gunicorn "uvicorn[standard]" granian matplotlib)
PYTHON="${PYTHON:-python3}"

missing=""
for package in ${APT_PACKAGES}; do
    dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "ok installed" \
        || missing="${missing} ${package}"
done
if [ -n "${missing}" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts nginx and uwsgi as services on install; the harness starts its own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends ${missing} > /dev/null
fi

if [ ! -x benchmarks/.venv/bin/python ]; then
    "${PYTHON}" -m venv benchmarks/.venv
fi
benchmarks/.venv/bin/python -m pip install --quiet --upgrade pip
benchmarks/.venv/bin/python -m pip install --quiet -e '.[fast]' "${PIP_PACKAGES[@]}"
# fcgigw's compiled build (mypyc, README "The compiled build") for the *-mypyc targets, in a
# venv of its own; built again each time, so it follows the tree.
if [ ! -x benchmarks/.venv-mypyc/bin/python ]; then
    "${PYTHON}" -m venv benchmarks/.venv-mypyc
fi
FCGIGW_COMPILE=1 benchmarks/.venv-mypyc/bin/python -m pip install --quiet --no-cache-dir \
    --force-reinstall '.[fast]'
benchmarks/.venv-mypyc/bin/python -m fcgigw --version
echo "benchmarks: ready; run python3 benchmarks/run.py --help"
