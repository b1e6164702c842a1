"""WSGI entry point for production servers: ``gunicorn wsgi:app``."""

from idp import create_server_app

app = create_server_app()
