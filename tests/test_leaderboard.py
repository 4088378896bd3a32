import json

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
