"""The debug door's note on the instance: the agent writes it into its workdir when it keeps a failed
instance (on_failure.keep_alive_minutes), for whoever opens a session there, and for `spottrain shell`
in the emulator, which finds the kept instance by it.

{"exec_name": str, "instance_id": str | null, "until": ISO 8601 UTC, when the agent shuts the instance down}
"""

from __future__ import annotations

DOOR_FILE = "debug-door.json"  # in the agent's --workdir (/opt/spottrain/work on an instance)
