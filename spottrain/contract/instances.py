"""EC2 instance states, by what the workflow and the emulator do about them.

Two sets, because two questions: can the instance still be running the training (PollCompletion,
CheckBid, the simulated EC2), and must it still be terminated (TerminateInstance: a stopped instance
runs nothing, yet keeps its volume and must go).
"""

from __future__ import annotations

ALL_INSTANCE_STATES = frozenset({"pending", "running", "shutting-down", "terminated", "stopping", "stopped"})
# Booting or up: the agent may be running, or about to.
LIVE_INSTANCE_STATES = frozenset({"pending", "running"})
# Not (yet) being terminated: TerminateInstances still has something to end.
UNTERMINATED_INSTANCE_STATES = frozenset({"pending", "running", "stopping", "stopped"})
# Neither booting nor up: whatever ran there has stopped.
ENDED_INSTANCE_STATES = ALL_INSTANCE_STATES - LIVE_INSTANCE_STATES
