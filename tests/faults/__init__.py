"""The fault suite: real processes and real parts under injected faults (issue 12)."""
