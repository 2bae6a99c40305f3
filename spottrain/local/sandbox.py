"""A simulated instance's /home: the sandbox's home/ folder, mounted over /home in a private mount namespace.

The simulated AMI is Ubuntu's: default user `ubuntu`, home /home/ubuntu. Jobs name absolute folders
there (2017: /home/ubuntu/data) and the clone lives at /home/ubuntu/<repository_name>, yet the emulator
writes nothing outside its folder. So each instance boots where /home is its sandbox's home/:
- as root: in a private mount namespace;
- as another user: in one owned by a user namespace that maps that user to itself (where the kernel
  allows unprivileged user namespaces).
The host's other homes are bound back at their places (the checkout and virtualenv often live there);
only a host /home/ubuntu is hidden. Where no namespace can be made, the instance boots unmapped:
~ubuntu is the sandbox's home/ubuntu under its real path, and the agent refuses absolute folders,
saying why. There is no `ubuntu` account either: the commands run as the emulator's own user, with
HOME=/home/ubuntu (the bootstrap's SPOTTRAIN_RUN_AS and SPOTTRAIN_RUN_AS_HOME).

The instance runs this file as a script before its user data (`python -I sandbox.py HOME -- bash
user-data.sh`), so it uses the standard library only.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

SIMULATED_USER = "ubuntu"
HOST_HOME = Path("/home")
# <sched.h> and <sys/mount.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
REFUSAL = (
    "this emulator cannot map absolute paths into its sandbox ({why}); run it as root, or where "
    "unprivileged user namespaces are allowed (e.g. sysctl kernel.apparmor_restrict_unprivileged_userns=0)"
)


class SandboxError(OSError):
    """The namespace could not be set up; the message says which step failed and why."""


def boot_command(sandbox: Path, script: Path, env: Mapping[str, str]) -> Tuple[List[str], Dict[str, str]]:
    """argv and environment that run the user data `script` inside the simulated AMI's /home."""
    home = sandbox / "home"
    _write_profile(home / SIMULATED_USER, env.get("PATH", ""))
    argv = [sys.executable, "-I", str(Path(__file__).resolve()), str(home), "--", "bash", str(script)]
    return argv, dict(env)


def _write_profile(user_home: Path, path: str) -> None:
    # A login shell's /etc/profile may reset PATH; the AMI's profile puts its frameworks back, as
    # pyenv or conda do on a real one. Here they are the emulator's aws shim and its Python.
    user_home.mkdir(parents=True, exist_ok=True)
    profile = "# The simulated AMI's frameworks: the emulator's aws shim and Python.\n"
    (user_home / ".profile").write_text(profile + f'export PATH={shlex.quote(path)}":$PATH"\n')


# ----- inside the booting instance ------------------------------------------------------------


def main(argv: List[str]) -> None:
    home, command = Path(argv[0]), argv[2:]
    env = dict(os.environ, SPOTTRAIN_RUN_AS=_own_name())
    try:
        why_not = _outside_simulated_home(home)
        if why_not:
            raise SandboxError(why_not)
        _enter_namespace()
    except OSError as error:
        print(f"sandbox: /home is not mapped: {error}", file=sys.stderr)
        env.update(
            SPOTTRAIN_RUN_AS_HOME=str(home / SIMULATED_USER), SPOTTRAIN_ABSOLUTE_PATHS_REFUSED=REFUSAL.format(why=error)
        )
    else:
        _mount_home(home)
        print(f"sandbox: /home is {home} (private mount namespace)", file=sys.stderr)
        env.update(SPOTTRAIN_RUN_AS_HOME=str(HOST_HOME / SIMULATED_USER))
    os.execvpe(command[0], command, env)


def _own_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # an arbitrary uid the password database does not know
        return str(os.geteuid())


def _outside_simulated_home(home: Path) -> str:
    """Why /home cannot be replaced: the emulator's own files are in the host's /home/ubuntu, which it hides."""
    hidden = HOST_HOME / SIMULATED_USER
    needed = {home, Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve(), Path(__file__).resolve()}
    inside = sorted(str(path) for path in needed if path == hidden or hidden in path.resolve().parents)
    if inside:
        return (
            f"{', '.join(inside)} would be hidden by the simulated {hidden}; keep the emulator's folder and "
            f"virtualenv outside {hidden}"
        )
    return ""


def _enter_namespace() -> None:
    """A mount namespace of our own: directly as root, else inside a user namespace."""
    uid, gid = os.geteuid(), os.getegid()
    errors = []
    for flags in ([CLONE_NEWNS] if uid == 0 else []) + [CLONE_NEWUSER | CLONE_NEWNS]:
        name = "unshare(CLONE_NEWUSER|CLONE_NEWNS)" if flags & CLONE_NEWUSER else "unshare(CLONE_NEWNS)"
        try:
            _call(name, _libc().unshare(flags))
            break
        except OSError as error:
            errors.append(error.strerror or str(error))
    else:
        raise SandboxError("; ".join(errors))
    if flags & CLONE_NEWUSER:
        # Map us to ourselves: files keep their owner, and the commands run as the same user as before.
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    # Nothing mounted here may propagate back to the host's namespace.
    _mount(None, "/", MS_REC | MS_PRIVATE)


def _mount_home(home: Path) -> None:
    """home/ over /home, then every other host home back at its place (they hold checkouts and venvs)."""
    kept = {}
    for entry in sorted(HOST_HOME.iterdir()) if HOST_HOME.is_dir() else []:
        if entry.name == SIMULATED_USER:
            continue
        if entry.is_symlink():
            if not (home / entry.name).is_symlink():
                (home / entry.name).symlink_to(os.readlink(entry))
        elif entry.is_dir():
            (home / entry.name).mkdir(exist_ok=True)
            # An O_PATH handle still reaches the host's folder once /home is covered.
            kept[entry.name] = os.open(entry, os.O_PATH | os.O_DIRECTORY)
    _mount(home, HOST_HOME, MS_BIND | MS_REC)
    for name, handle in kept.items():
        _mount(f"/proc/self/fd/{handle}", HOST_HOME / name, MS_BIND | MS_REC)
        os.close(handle)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source, target, flags: int) -> None:
    # mount(8) would canonicalise /proc/self/fd/N to the covered path, and refuses non-root users.
    encoded = str(source).encode() if source is not None else None
    _call(f"mount {source or ''} on {target}", _libc().mount(encoded, str(target).encode(), None, flags, None))


def _call(what: str, result: int) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxError(errno, f"{what}: {os.strerror(errno)}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except OSError as error:  # after /home was covered: nothing sensible to boot into
        sys.exit(f"sandbox: cannot set up the simulated /home: {error}")
