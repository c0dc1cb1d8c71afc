#!/bin/sh
# For web servers that start the app themselves (Apache mod_fcgid, lighttpd bin-path, h2o
# fastcgi.spawn): they run this with a listening socket on fd 0 (FastCGI §2.2), which
# fcgigw serves on, and stop it with SIGTERM. chmod 755 it. Settings: FCGIGW_* variables
# from the server's config (FcgidInitialEnv, bin-environment, env), or options here.
#
# Adjust this line: the fcgigw of your virtualenv, and your app.
exec /srv/myapp/venv/bin/fcgigw myproject.wsgi:application
