"""The HTTP face of task_queue: the Falcon app, its configuration, and the waitress server."""

from __future__ import annotations

from api.app import create_app
from api.config import Config, ConfigError, load_config

__all__ = ["Config", "ConfigError", "create_app", "load_config"]
