"""SMS transport: SMPP binds, HTTP gateway callbacks and send channel, concatenation, receipts.

This package knows nothing of commands, devices or signing: it moves SMS.
"""
