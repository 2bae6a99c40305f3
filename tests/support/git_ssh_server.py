"""A private git repository over SSH on loopback: asyncssh serving `git-upload-pack` to one deploy key.

As a git host does: the server has its own host key (clients check it against known_hosts), admits one
authorized client public key and no password, and runs only `git-upload-pack '<repo>.git'` for a bare
repository under its root, bridged to the client's channel; any other command (a shell, a push, a path
outside the root) is refused with exit status 1. The server runs its event loop in a thread of its own.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import asyncssh

# git's ssh transport asks for `git-upload-pack '<path>'` (the path quoted for the server's shell)
_UPLOAD_PACK = re.compile(r"git-upload-pack '/?(?P<name>[A-Za-z0-9._-]+\.git)'")
_CHUNK = 64 * 1024


def new_key() -> asyncssh.SSHKey:
    """A fresh ed25519 key pair, e.g. a deploy key: `.export_private_key().decode()` is what its secret holds."""
    return asyncssh.generate_private_key("ssh-ed25519")


def public_line(key: asyncssh.SSHKey) -> str:
    """`ssh-ed25519 AAAA...`: the key's public half, as authorized_keys and known_hosts write it."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


class PrivateSshGitServer:
    """Serves the bare repositories under `root` at ssh://git@127.0.0.1:<port>/<name>.git to one client key."""

    def __init__(self, root: Path, client_public_key: str, host_key: asyncssh.SSHKey | None = None):
        self.root = root
        self.host_key = host_key or new_key()
        self.commands: list[tuple[str, int]] = []  # (command, exit status): what clients ran and how it ended
        self._authorized = asyncssh.import_authorized_keys(client_public_key + "\n")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="git-ssh", daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"ssh://git@127.0.0.1:{self.port}/{name}.git"

    @property
    def known_hosts(self) -> str:
        """This server's known_hosts line, as `ssh-keyscan -p <port> 127.0.0.1` prints it."""
        return f"[127.0.0.1]:{self.port} {public_line(self.host_key)}"

    def __enter__(self) -> "PrivateSshGitServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=60)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncssh.create_server(
            asyncssh.SSHServer,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            authorized_client_keys=self._authorized,
            password_auth=False,
            kbdint_auth=False,
            process_factory=self._serve,
            encoding=None,  # git's pack protocol is bytes
            allow_scp=False,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        found = _UPLOAD_PACK.fullmatch(command)
        repository = self.root / found["name"] if found else None
        if repository is None or not repository.is_dir():
            process.stderr.write(b"this server runs git-upload-pack for its repositories only\n")
            self._exit(process, command, 1)
            return
        child = await asyncio.create_subprocess_exec(
            "git-upload-pack",
            str(repository),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert child.stdin and child.stdout and child.stderr
        feeding = asyncio.ensure_future(_feed(process.stdin, child.stdin))
        await asyncio.gather(_copy(child.stdout, process.stdout), _copy(child.stderr, process.stderr))
        status = await child.wait()
        feeding.cancel()
        self._exit(process, command, status)

    def _exit(self, process: asyncssh.SSHServerProcess, command: str, status: int) -> None:
        self.commands.append((command, status))
        process.exit(status)


async def _copy(source: asyncio.StreamReader, target: asyncssh.SSHWriter) -> None:
    """The child's output to the client, until the child closes it."""
    while data := await source.read(_CHUNK):
        target.write(data)
        await target.drain()


async def _feed(source: asyncssh.SSHReader, target: asyncio.StreamWriter) -> None:
    """The client's requests to the child, until the client's EOF (or the child exits and stops reading)."""
    try:
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
        target.close()
    except (BrokenPipeError, ConnectionResetError):
        pass
