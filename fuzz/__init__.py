"""Coverage-guided fuzz harnesses (atheris), one module per target; see docs/fuzzing.md.

Each module's ``one_input(data)`` is the harness; ``TARGETS`` lists the
modules that :mod:`fuzz.run_all` runs and ``tests/fuzz`` replays.
"""

TARGETS = (
    "smpp_session",
    "smpp_pdu",
    "signed_frame",
    "reassembly",
    "receipt_text",
    "http_callback",
    "identifiers",
    "config",
)
