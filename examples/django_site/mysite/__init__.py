"""A minimal Django project served by fcgigw through Django's ASGI (or WSGI) handler."""
