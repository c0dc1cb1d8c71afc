#!/bin/sh
# A CGI program that hands each request on to a running fcgigw over FastCGI: for a web
# server or host that runs CGI programs but speaks no FastCGI. cgi-fcgi (Debian:
# libfcgi-bin) passes its whole environment as params, so the CGI variables of the request
# reach the app, and so does anything else in the environment (PATH, and secrets if there
# are any: keep them out of the web server's CGI environment). It sends CONTENT_LENGTH
# bytes of the body: a chunked request, which has no CONTENT_LENGTH, arrives empty.
#
#   fcgigw --bind unix:/tmp/fcgigw.sock myapp:app
#   REQUEST_METHOD=GET SCRIPT_NAME=/app PATH_INFO=/ ./examples/servers/cgi-fcgi.cgi
#
# Adjust this line: fcgigw's address (a Unix socket path, or HOST:PORT).
exec cgi-fcgi -bind -connect /tmp/fcgigw.sock
