"""Real servers on loopback for the oracle tests: the leaderboard and three broken ones."""

import contextlib
import socket
import threading

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
    server = leaderboard.make_server(board)
    # a short poll interval: shutdown() waits for the loop to notice, 0.5 s by default
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", board
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
