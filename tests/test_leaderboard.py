import contextlib
import json
import socket
import sqlite3
import time

import numpy as np
import pytest
import requests

from ambig_jax import leaderboard
from ambig_jax import outputs
from tests import servers


@pytest.fixture
def server(tmp_path):
    servers.write_hidden(tmp_path, {1: [0, 1, 1, 0], 2: [0, 2, 2, 2]})
    with servers.running_leaderboard(tmp_path) as (url, board):
        yield url, board


def submit(url, dataset_id, labels, user="alice", password="s3cret-pw"):
    csv = outputs.format_submission(np.asarray(labels))
    return requests.post(f"{url}/submit/", files={"username": (None, user),
                                                  "password": (None, password),
                                                  "exercise_id": (None, str(dataset_id)),
                                                  "file": ("submission.csv", csv)}, timeout=5)


def test_submit_scores_once_per_user_and_set(server):
    url, _ = server
    first = submit(url, 1, [0, 1, 0, 0])
    assert first.status_code == 200 and first.json() == {"exercise_id": 1, "accuracy": 0.75}
    again = submit(url, 1, [0, 1, 1, 0])
    assert again.status_code == 409
    assert submit(url, 1, [0, 1, 1, 0], "bob", "hunter2").json()["accuracy"] == 1.0


def test_submit_rejects_malformed_csv(server):
    url, _ = server
    bad = requests.post(f"{url}/submit/", data={"username": "alice", "password": "s3cret-pw",
                                                "exercise_id": 1,
                                                "predictions": "label\n0\n1\n1\n0\n"}, timeout=5)
    assert bad.status_code == 400 and "line 1" in bad.json()["error"]
    short = submit(url, 1, [0, 1])
    assert short.status_code == 400 and "2 labels for 4" in short.json()["error"]
    wrong_class = submit(url, 2, [0, 1, 2, 2])
    assert wrong_class.status_code == 400 and "not among the classes" in wrong_class.json()["error"]


def test_leaderboard_json_and_html(server):
    url, _ = server
    submit(url, 2, [0, 2, 2, 2])
    board = requests.get(f"{url}/leaderboard", timeout=5).json()
    alice = next(e for e in board["leaderboard"] if e["username"] == "alice")
    assert alice["accuracy"] == {"2": 1.0}
    assert alice["total"] == pytest.approx(1 * 0.8 + 1 * 1.0)  # set 1 unsubmitted: default
    page = requests.get(f"{url}/leaderboard?format=html", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and "<table" in page.text


def test_unknown_endpoint_and_bad_fields(server):
    url, _ = server
    assert requests.post(f"{url}/nope/", data={}, timeout=5).status_code == 404
    bad = requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                "exercise_id": "x", "datum_id": 1}, timeout=5)
    assert bad.status_code == 400 and "exercise_id" in bad.json()["error"]
    outside = requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                    "exercise_id": 1, "datum_id": 4}, timeout=5)
    assert outside.status_code == 404


def test_users_from_file_or_environment(tmp_path, monkeypatch):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"carol": "pw"}))
    assert leaderboard.load_users(path) == {"carol": "pw"}
    monkeypatch.setenv(leaderboard.USERS_ENV, "dan:a:b,erin:c")
    assert leaderboard.load_users() == {"dan": "a:b", "erin": "c"}
    monkeypatch.delenv(leaderboard.USERS_ENV)
    with pytest.raises(ValueError, match="no users"):
        leaderboard.load_users()


def raw_request(url: str, head: bytes, body: bytes = b"", wait: float = 3.0) -> bytes:
    """Sends raw bytes to the server and returns all it answers before closing (or `wait`)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as conn:
        conn.sendall(head + body)
        answer = b""
        with contextlib.suppress(socket.timeout):
            while chunk := conn.recv(65536):
                answer += chunk
    return answer


FORM = b"username=alice&password=s3cret-pw&exercise_id=1&datum_id=0"


@pytest.mark.parametrize("length,status", [(b"-1", b"400"), (b"abc", b"400"),
                                           (b" 1_0", b"400"), (None, b"411")])
def test_content_length_must_be_a_plain_integer(server, length, status):
    url, board = server
    head = (b"POST /reveal/ HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + (b"" if length is None else b"Content-Length: " + length + b"\r\n") + b"\r\n")
    started = time.perf_counter()
    answer = raw_request(url, head, FORM)
    assert answer.startswith(b"HTTP/1.0 " + status) or answer.startswith(b"HTTP/1.1 " + status)
    assert time.perf_counter() - started < 2.0  # answered, not waiting for a body or timing out
    assert board.stats["labels_granted"] == 0


def test_an_oversized_body_is_refused_before_it_is_read(server):
    url, _ = server
    # headers only: the 16 MB body never comes, so a server that read it first would hang
    head = (b"POST /reveal/ HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 16777216\r\n\r\n")
    started = time.perf_counter()
    answer = raw_request(url, head)
    assert b" 413 " in answer.split(b"\r\n")[0] and b"at most" in answer
    assert time.perf_counter() - started < 2.0


def test_unexpected_failures_still_get_an_answer(server, tmp_path):
    url, board = server
    (tmp_path / "hidden" / "2.npy").write_bytes(b"not an array")  # a corrupt hidden file
    answer = requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                   "exercise_id": 2, "datum_id": 0}, timeout=5)
    assert answer.status_code == 500 and "hidden labels cannot be read" in answer.json()["error"]
    with sqlite3.connect(board.state_path) as db:  # a state database someone broke
        db.execute("DROP TABLE reveals")
    answer = requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                   "exercise_id": 1, "datum_id": 0}, timeout=5)
    assert answer.status_code == 500 and "OperationalError" in answer.json()["error"]


def test_silent_clients_are_dropped(tmp_path):
    servers.write_hidden(tmp_path, {1: [0, 1]})
    board = leaderboard.Leaderboard(tmp_path, servers.USERS)
    with servers.serving(leaderboard.make_server(board, timeout=0.3)) as url:
        started = time.perf_counter()
        answer = raw_request(url, b"POST /reveal/ HTTP/1.1\r\n", wait=3.0)  # then silence
        assert answer == b"" and time.perf_counter() - started < 2.0  # closed by the server


def test_empty_passwords_never_log_in(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="empty name or password"):
        leaderboard.Leaderboard(tmp_path, {"alice": "s3cret-pw", "eve": ""})
    monkeypatch.setenv(leaderboard.USERS_ENV, "alice:pw,eve:")
    with pytest.raises(ValueError, match=r"\['eve'\]"):
        leaderboard.load_users()
    board = leaderboard.Leaderboard(tmp_path, servers.USERS)
    for form in ({"username": "alice", "password": ""}, {"username": "", "password": ""},
                 {"username": "nobody", "password": ""}):
        with pytest.raises(leaderboard.RequestError, match="wrong username or password"):
            board.authenticate(form)


@pytest.mark.parametrize("datum", [" 1 ", "1_0", "١", "+1", "0x1", ""])
def test_datum_ids_are_plain_ascii_digits(server, datum):
    url, board = server
    answer = requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                   "exercise_id": "1", "datum_id": datum},
                           timeout=5)
    assert answer.status_code == 400 and "datum_id" in answer.json()["error"]
    assert board.stats["labels_granted"] == 0
