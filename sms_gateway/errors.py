"""The error hierarchy of :mod:`sms_gateway`.

``LocalError``: our side is wrong (bad configuration, a message we refuse to
send).  ``RemoteError``: the peer (SMSC, HTTP gateway) refused or misbehaved.
Submit failures carry ``temporary``: a temporary one may be retried later, a
permanent one must not be.
"""

from __future__ import annotations


class SmsGatewayError(Exception):
    """Base of every error raised by :mod:`sms_gateway`."""


class LocalError(SmsGatewayError):
    """The fault is on our side: configuration or a request we refuse."""


class RemoteError(SmsGatewayError):
    """The fault is on the peer's side, or in the link to it."""


class AddressError(LocalError):
    """A phone number (MSISDN) could not be parsed or is not valid."""


class UdhError(RemoteError):
    """User data header bytes are malformed."""


class MessageTooLongError(LocalError):
    """A message needs more parts than the configured limit; nothing was sent."""


class SubmitError(SmsGatewayError):
    """A submit failed.  ``temporary`` says whether a later retry may succeed.

    ``code`` is the peer's error code when there is one (an SMPP command_status,
    an HTTP status), ``link`` the bind or gateway that failed.
    """

    def __init__(self, message: str, *, temporary: bool, code: int | None = None,
                 link: str | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.code = code
        self.link = link


class NoRouteError(SubmitError):
    """No configured link can take this destination right now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, temporary=True)


class ChannelUnavailableError(SubmitError):
    """The channel cannot take a submit now (down or stopping); nothing was sent.

    A router may safely try another channel after this error.
    """

    def __init__(self, message: str, *, link: str | None = None) -> None:
        super().__init__(message, temporary=True, link=link)
