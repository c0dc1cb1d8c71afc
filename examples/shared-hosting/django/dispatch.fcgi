#!/home/alice/venv/bin/python3
"""Serves the Django example (examples/django_site/) from a web directory.

Apache mod_fcgid (with the .htaccess next to this directory) and lighttpd (bin-path) start
this script with a listening socket on fd 0 and keep it running. mod_cgi runs it once per
request, and from a shell it answers one request as a CGI program:

    REQUEST_METHOD=GET PATH_INFO=/ ./dispatch.fcgi

Adjust the first line (the python of a virtualenv with fcgigw and Django installed) and
APP_DIR, then chmod 755 this file. Settings come from FCGIGW_* variables (FcgidInitialEnv,
lighttpd's bin-environment) or as keywords of fcgigw.serve() at the end.
"""

import os
import sys

APP_DIR = "/home/alice/django_site"  # the directory holding manage.py, not in public_html
sys.path.insert(0, APP_DIR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from mysite.wsgi import application  # noqa: E402

import fcgigw  # noqa: E402

SCRIPT = "/" + os.path.basename(__file__)


def mounted_at_this_directory(wsgi_app):
    """The .htaccess rewrite serves /hello as /dispatch.fcgi/hello, so Apache sends
    SCRIPT_NAME=/dispatch.fcgi and PATH_INFO=/hello, and Django would build its links as
    /dispatch.fcgi/... . Visitors never see that name: mount the app at the directory.
    (Django's FORCE_SCRIPT_NAME setting does the same from settings.py.)"""

    def middleware(environ, start_response):
        script_name = environ.get("SCRIPT_NAME", "")
        if script_name.endswith(SCRIPT):
            environ["SCRIPT_NAME"] = script_name[: -len(SCRIPT)]
        return wsgi_app(environ, start_response)

    return middleware


fcgigw.serve(mounted_at_this_directory(application))
