"""The media uploader's HTTP behaviour, against a small loopback server that records what it receives."""

import email.parser
import email.policy
import http.server
import json
import socket
import threading
import urllib.parse

import pytest

from churnflow.storage.upload import MediaUploader, UploadFailed


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers uploads with the status the test sets; can close the connection after each answer."""

    protocol_version = "HTTP/1.1"
    received: list[dict] = []
    connections: set[tuple] = set()
    status = 200
    close_after = False

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.connections.add(self.client_address)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        url = urllib.parse.urlsplit(self.path)
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        metadata, media = message.iter_parts()
        self.received.append(
            {
                "path": url.path,
                "query": urllib.parse.parse_qs(url.query),
                "headers": dict(self.headers),
                "metadata": json.loads(metadata.get_content()),
                "media_type": media.get_content_type(),
                "body": media.get_payload(decode=True),
            }
        )
        reply = b'{"name": "x"}' if self.status == 200 else b'{"error": {"message": "denied"}}'
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)
        if self.close_after:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Recorder.received, Recorder.connections, Recorder.status, Recorder.close_after = [], set(), 200, False
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def endpoint(httpd):
    return f"http://127.0.0.1:{httpd.server_address[1]}"


class Credentials:
    """Google credentials as the uploader uses them: `valid`, `token`, `refresh(request)`."""

    def __init__(self):
        self.token, self.refreshes = None, 0

    @property
    def valid(self):
        return self.token is not None

    def refresh(self, request):
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"


def test_uploads_the_object_by_name_with_its_content_type(server, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint(server))
    upload = MediaUploader("logs", "application/x-ndjson", timeout_s=5)
    payload = bytes(range(256)) * 4  # binary, with CR/LF and dashes
    name = "requests/dt=2026-11-22/hour=09/a b.jsonl.gz"
    upload(name, payload)
    (request,) = Recorder.received
    assert request["path"] == "/upload/storage/v1/b/logs/o"
    assert request["query"] == {"uploadType": ["multipart"], "ifGenerationMatch": ["0"]}  # create-only
    assert request["metadata"] == {
        "name": "requests/dt=2026-11-22/hour=09/a b.jsonl.gz",
        "contentType": "application/x-ndjson",
    }
    assert request["media_type"] == "application/x-ndjson"
    assert "Authorization" not in request["headers"]  # the emulator takes no credentials
    assert request["body"] == payload


def test_keeps_the_connection_and_reconnects_when_the_server_closed_it(server):
    upload = MediaUploader("logs", "text/plain", timeout_s=5, endpoint=endpoint(server), credentials=Credentials())
    upload("a", b"1")
    upload("b", b"2")
    assert len(Recorder.connections) == 1
    Recorder.close_after = True
    upload("c", b"3")  # the server closes after answering: the next upload needs a new connection
    Recorder.close_after = False
    upload("d", b"4")
    assert [r["body"] for r in Recorder.received] == [b"1", b"2", b"3", b"4"]
    assert len(Recorder.connections) == 2


def test_outside_the_emulator_sends_a_bearer_token_refreshed_when_invalid(server, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    credentials = Credentials()
    upload = MediaUploader("logs", "text/plain", timeout_s=5, endpoint=endpoint(server), credentials=credentials)
    upload("a", b"1")
    upload("b", b"2")
    assert [r["headers"]["Authorization"] for r in Recorder.received] == ["Bearer token-1", "Bearer token-1"]
    credentials.token = None  # expired
    upload("c", b"3")
    assert Recorder.received[-1]["headers"]["Authorization"] == "Bearer token-2"


def test_an_error_status_raises_with_the_status_and_the_answer(server):
    Recorder.status = 403
    upload = MediaUploader("logs", "text/plain", timeout_s=5, endpoint=endpoint(server), credentials=Credentials())
    with pytest.raises(UploadFailed, match=r"answered 403: .*denied"):
        upload("a", b"1")


def test_an_unreachable_endpoint_raises_a_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upload = MediaUploader("logs", "text/plain", 1, endpoint=f"http://127.0.0.1:{port}", credentials=Credentials())
    with pytest.raises(ConnectionError):
        upload("a", b"1")
