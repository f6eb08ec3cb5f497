"""Small fake Kannel and Jasmin HTTP servers (real HTTP on 127.0.0.1:0) that record requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web import server
from twisted.web.resource import Resource

from sms_gateway.http.callback import parse_query_bytes


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, bytes]
    form: dict[str, bytes]
    headers: dict[str, str] = field(default_factory=dict)


class FakeGateway(Resource):
    """Answers with queued (status, body) pairs, else the default; records every request."""

    isLeaf = True  # noqa: N815

    def __init__(self, default: tuple[int, bytes]) -> None:
        super().__init__()
        self.default = default
        self.answers: list[tuple[int, bytes]] = []
        self.requests: list[Seen] = []
        self.hang = False

    def render(self, request: Any) -> bytes | int:
        target = request.uri.decode("latin-1")
        query = dict(parse_query_bytes(target.split("?", 1)[1].encode("latin-1"))) \
            if "?" in target else {}
        request.content.seek(0)
        body = request.content.read()
        form = dict(parse_query_bytes(body)) if body else {}
        headers = {k.decode().lower(): b", ".join(v).decode()
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        self.requests.append(Seen(request.method.decode(), target.split("?", 1)[0],
                                  {k.decode(): v for k, v in query.items()},
                                  {k.decode(): v for k, v in form.items()}, headers))
        if self.hang:
            return server.NOT_DONE_YET
        status, answer = self.answers.pop(0) if self.answers else self.default
        request.setResponseCode(status)
        return answer


def start_fake(case: TestCase, default: tuple[int, bytes]) -> tuple[FakeGateway, str]:
    """Start a fake gateway; return it and its base URL."""
    fake = FakeGateway(default)
    site = server.Site(fake)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    return fake, f"http://127.0.0.1:{port.getHost().port}"
