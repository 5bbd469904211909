"""The HTTP API for upstream apps (``pulse api``): publish events and media, read feeds and the
other views, with API keys, user tokens and rate limits (docs/api.md).

An entry point like the CLI (the layer contract in pyproject.toml): nothing below imports it.
Importing this package imports nothing heavy; :func:`streams.api.app.create_app` builds the
FastAPI application.
"""
