"""The pure core of the MEPL: the command lifecycle and the policy decisions (no I/O)."""
