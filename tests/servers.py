"""Real servers on loopback for the oracle tests: the leaderboard, broken ones that hang, drop
or speak garbage, and scripted ones that answer what a test tells them."""

import contextlib
import http.server
import json
import socket
import threading
import urllib.parse

import numpy as np

from ambig_jax import leaderboard

USERS = {"alice": "s3cret-pw", "bob": "hunter2"}


def write_hidden(data_dir, labels_by_id):
    hidden = data_dir / "hidden"
    hidden.mkdir(parents=True, exist_ok=True)
    for dataset_id, labels in labels_by_id.items():
        np.save(hidden / f"{dataset_id}.npy", np.asarray(labels, dtype=np.int64))


@contextlib.contextmanager
def running_leaderboard(data_dir, state_path=None):
    """Starts a real leaderboard server on 127.0.0.1 (free port); yields (url, board)."""
    board = leaderboard.Leaderboard(data_dir, USERS, state_path)
    with serving(leaderboard.make_server(board)) as url:
        yield url, board


@contextlib.contextmanager
def serving(server):
    """Runs an HTTP server in a thread; yields its URL; shuts it down."""
    # a short poll interval: shutdown() waits for the loop to notice, 0.5 s by default
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def broken_server(behaviour: str):
    """A TCP server on loopback that hangs, drops the connection, or answers garbage."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()
    accepted = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.settimeout(2.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)
                if behaviour == "drop":
                    conn.close()
                elif behaviour == "garbage":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 9\r\nConnection: close\r\n\r\nnot json!")
                    conn.close()
                elif behaviour == "error500":
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    conn.close()
                # "hang": keep the connection open and say nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            with contextlib.suppress(OSError):
                conn.close()
        listener.close()


@contextlib.contextmanager
def scripted_server(answer):
    """An HTTP server on loopback whose every POST is answered by `answer(form)` ->
    (status, headers, body bytes); yields (url, received forms)."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            received.append({k: v[-1] for k, v in form.items()})
            status, headers, body = answer(received[-1])
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url, received


def json_answer(payload, status=200):
    """An `answer` for `scripted_server` that always sends this JSON."""
    return lambda form: (status, {"Content-Type": "application/json"},
                         json.dumps(payload).encode())


class _FaultyHandler(leaderboard.Handler):
    """The real leaderboard's handler, misbehaving on /reveal/ while `fault` is set:
    refuse: 403 before revealing; redirect: 307 elsewhere before revealing; garbage: reveals
    (the datum counts), answers non-JSON; other_datum: reveals, answers about the next datum;
    die: reveals, then closes the connection without a word."""
    fault: dict  # {"name": str | None}, shared with the test

    def _answer(self, work):
        fault = self.fault["name"] if "reveal" in self.path else None
        if fault in ("refuse", "redirect"):
            status, headers = ((403, {}) if fault == "refuse" else
                               (307, {"Location": "http://127.0.0.1:9/reveal/"}))
            self.send_response(status)
            for key, value in {**headers, "Content-Length": "0", "Connection": "close"}.items():
                self.send_header(key, value)
            self.end_headers()
            self.close_connection = True
            return
        if fault is None:
            return super()._answer(work)
        status, payload, content_type = work()  # the server counts the datum
        if fault == "die":
            self.close_connection = True
            return
        if fault == "garbage":
            payload = "<html>upstream timed out</html>"
        elif fault == "other_datum":
            payload = {**payload, "datum_id": payload["datum_id"] + 1}
        self._send(status, payload, content_type)


@contextlib.contextmanager
def faulty_leaderboard(data_dir, state_path):
    """A real leaderboard that misbehaves on demand; yields (url, board, fault) where
    `fault["name"]` is one of `_FaultyHandler`'s faults or None."""
    board = leaderboard.Leaderboard(data_dir, USERS, state_path)
    fault = {"name": None}
    handler = type("Faulty", (_FaultyHandler,), {"board": board, "fault": fault,
                                                  "timeout": 5.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with serving(server) as url:
        yield url, board, fault
