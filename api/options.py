"""``OPTIONS`` on any route: the allowed methods, in JSON like every other answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.schema import encoder

if TYPE_CHECKING:
    import falcon


class JsonOptions:
    """Mixed into every resource: Falcon's own OPTIONS answer has an empty body."""

    def on_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        methods = sorted(name[3:].upper() for name in dir(type(self)) if name.startswith("on_"))
        resp.set_header("Allow", ", ".join(methods))
        resp.data = encoder.encode({"allow": methods})
