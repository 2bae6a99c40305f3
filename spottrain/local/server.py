"""moto's server on a free loopback port, with its Step Functions executor on."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any, Callable

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

log = logging.getLogger(__name__)

REGION = "us-east-1"
# moto's default account; the stack's outputs and ARNs carry it
ACCOUNT_ID = "123456789012"
# Seeded ids: a fresh emulator names its VPC, subnets and instances the same way every run.
ID_SEED = 6
# never route a loopback call through a proxy from the environment
LOOPBACK_NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
_LOOPBACK_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _WrappedMotoServer(ThreadedMotoServer):
    """moto's threaded server with a WSGI layer in front of moto's app (the instances' IAM)."""

    def __init__(self, wrap: Callable[[Any], Any]):
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self._wrap = wrap

    def _server_entry(self) -> None:  # ThreadedMotoServer's own, with the app wrapped
        app = self._wrap(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class MotoServer:
    def __init__(self, wrap: Callable[[Any], Any] = lambda app: app) -> None:
        self._server = _WrappedMotoServer(wrap)
        self.endpoint = ""

    def start(self) -> str:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto's Step Functions executor calls Lambda at localhost:$MOTO_PORT, with a client that
        # (like every boto3 client in this process) would honour an HTTP(S)_PROXY from the environment
        os.environ["MOTO_PORT"] = str(port)
        for name, hosts in LOOPBACK_NO_PROXY.items():
            current = os.environ.get(name, "")
            if hosts not in current:
                os.environ[name] = f"{current},{hosts}" if current else hosts
        # moto's state is per process: start from a clean one, then seed the ids it will generate
        self._post("/moto-api/reset", None)
        self._post(f"/moto-api/seed?a={ID_SEED}", None)
        self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        log.info("moto server on %s", self.endpoint)
        return self.endpoint

    def stop(self) -> None:
        if self.endpoint:
            # leave moto's process-wide switch as we found it for whoever runs next in this process
            self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": False}})
            self._post("/moto-api/reset", None)
            self._server.stop()
            self.endpoint = ""

    def _post(self, path: str, body: dict | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.endpoint + path, data=data, method="POST")
        with _LOOPBACK_OPENER.open(request, timeout=30) as response:
            response.read()
