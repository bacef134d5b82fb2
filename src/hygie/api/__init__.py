"""The web portal and REST API of the hub (FastAPI + Jinja2). ``create_app(settings)`` is the entry point."""

from hygie.api.app import create_app

__all__ = ["create_app"]
