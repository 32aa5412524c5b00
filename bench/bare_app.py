"""The yardstick of the gateway benchmark: a bare Flask app with one route, the same JSON body
as the gateway's `GET /livez`, and nothing else (no dispatcher, request id, access log or
metrics). Served by gunicorn with the same settings as the gateway in the same run."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify


def create_app() -> Flask:
    app = Flask("bench.bare")

    @app.get("/livez")
    def livez() -> Any:
        return jsonify({"status": "ok", "service": "gateway"})

    return app
