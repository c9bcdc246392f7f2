"""``GET /healthz``: the process is up and serving HTTP."""

from __future__ import annotations

from typing import Final

import falcon

from api.options import JsonOptions
from api.schema import encoder

_OK: Final = encoder.encode({"status": "ok"})


class HealthResource(JsonOptions):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = _OK
