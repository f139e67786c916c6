"""``fhir_server.asgi:app`` for uvicorn/gunicorn: the app built from the environment."""

from fhir_server.app import create_app

app = create_app()
