"""A local IMDSv2 for one simulated instance: identity, placement, its role's credentials, the spot notice."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import secrets
import threading


class InstanceMetadata:
    """Serves what the agent asks EC2's metadata service on 127.0.0.1 (a free port)."""

    def __init__(self, instance_id: str, instance_type: str, availability_zone: str):
        self.values = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/instance-type": instance_type,
            "/latest/meta-data/placement/availability-zone": availability_zone,
        }
        self._tokens: set[str] = set()
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"imds-{instance_id}", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> "InstanceMetadata":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def post_spot_notice(self, action: str = "terminate", in_seconds: float = 120) -> dict:
        """What AWS publishes when it reclaims a spot instance: the action and when it will happen."""
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=in_seconds)
        notice = {"action": action, "time": _iso(when)}
        with self._lock:
            self.values["/latest/meta-data/spot/instance-action"] = json.dumps(notice)
        return notice

    def assign_role(self, role_name: str, credentials: dict) -> None:
        """Serve the instance profile role's credentials where the SDKs look for them, as EC2 does
        (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-security-credentials.html)."""
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=6)
        document = {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "LastUpdated": _iso(dt.datetime.now(dt.timezone.utc)),
            "Expiration": _iso(expires),
            **credentials,
        }
        with self._lock:
            self.values["/latest/meta-data/iam/security-credentials/"] = role_name
            self.values[f"/latest/meta-data/iam/security-credentials/{role_name}"] = json.dumps(document)

    def _answer(self, method: str, path: str, token: str | None) -> tuple[int, str]:
        with self._lock:
            if method == "PUT":
                if path != "/latest/api/token":
                    return 404, "Not Found"
                token = secrets.token_urlsafe(24)
                self._tokens.add(token)
                return 200, token
            if token not in self._tokens:
                return 401, "Unauthorized"  # IMDSv2 only, as the launch template requires
            value = self.values.get(path)
            return (200, value) if value is not None else (404, "Not Found")

    def _handler_class(self) -> type:
        metadata = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                self._reply(*metadata._answer("PUT", self.path, None))

            def do_GET(self) -> None:  # noqa: N802
                self._reply(*metadata._answer("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))

            def _reply(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent gave up waiting or was killed with its instance: nobody to answer

            def log_message(self, *args: object) -> None:
                pass  # the agent polls every half second; its log would drown the emulator's

        return Handler


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
