"""The framework limit: Falcon + waitress doing the least an enqueue endpoint can do.

    python bench/bare_app.py --port 8081 --threads 16

``POST /enqueue`` reads the body, decodes the same JSON as the service with a prebuilt msgspec
decoder, and answers 201 with the request encoded back; ``GET /healthz`` answers 200. No actors,
no storage. waitress runs with the settings the service gives it (threads, connection limit,
poll, backlog), so the gap between the two is what the service adds. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from typing import Annotated

import falcon
import msgspec
import waitress
from msgspec import Meta, Raw

CONNECTION_LIMIT = 1024
"""As in api/server.py: waitress's default of 100 starves a 256-connection load."""


class EnqueueRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
    payload: Raw = Raw(b"null")
    max_retries: Annotated[int, Meta(ge=0, le=100)] = 3


decoder = msgspec.json.Decoder(EnqueueRequest)
encoder = msgspec.json.Encoder()


class Enqueue:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            request = decoder.decode(req.bounded_stream.read())
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise falcon.HTTPBadRequest(description="invalid JSON") from None
        resp.status = falcon.HTTP_201
        resp.data = encoder.encode(request)


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status":"ok"}'


def create_app() -> falcon.App:
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.add_route("/enqueue", Enqueue())
    app.add_route("/healthz", Health())
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    listener = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    server = waitress.create_server(
        create_app(),
        sockets=[listener],
        threads=args.threads,
        connection_limit=CONNECTION_LIMIT,
        asyncore_use_poll=True,
    )
    threading.Thread(target=server.run, name="http-loop", daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main())
