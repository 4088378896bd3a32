import concurrent.futures

import numpy as np
import pytest
import requests

from ambig_jax import oracle
from tests import servers

LABELS = {1: [0, 1] * 10, 456: [4, 5, 6] * 5}


@pytest.fixture
def data_dir(tmp_path):
    servers.write_hidden(tmp_path, LABELS)
    return tmp_path


@pytest.fixture
def server(data_dir):
    with servers.running_leaderboard(data_dir) as (url, board):
        yield url, board


def http_oracle(url, tmp_path, dataset_id=1, username="alice", **kwargs):
    source = oracle.HttpSource(url, username, servers.USERS.get(username, "nope"), **kwargs)
    return oracle.Oracle(source, oracle.Ledger(tmp_path / "ledger.sqlite"), dataset_id,
                         classes=sorted(set(LABELS[dataset_id])))


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_reveal_api_answers_like_the_original(server, encoding):
    url, _ = server
    form = {"username": "alice", "password": "s3cret-pw", "exercise_id": "456", "datum_id": "4"}
    kwargs = {"data": form} if encoding == "urlencoded" else \
        {"files": {k: (None, v) for k, v in form.items()}}
    first = requests.post(f"{url}/reveal/", **kwargs, timeout=5)
    assert first.status_code == 200
    assert first.json() == {"exercise_id": 456, "datum_id": 4, "label": 5, "previously revealed": []}
    form["datum_id"] = "7"
    kwargs = {"data": form} if encoding == "urlencoded" else \
        {"files": {k: (None, v) for k, v in form.items()}}
    second = requests.post(f"{url}/reveal/", **kwargs, timeout=5).json()
    assert second["label"] == 5 and second["previously revealed"] == [4]


def test_client_happy_path(server, tmp_path):
    url, board = server
    client = http_oracle(url, tmp_path)
    assert client.reveal(3) == 1
    assert client.reveal(3) == 1  # from the ledger
    assert client.reveal(4) == 0
    assert client.revealed() == {3: 1, 4: 0}
    assert board.stats["reveal_requests"] == 2 and client.remaining() == 3


def test_wrong_password(server, tmp_path):
    url, _ = server
    client = http_oracle(url, tmp_path, username="mallory")
    with pytest.raises(oracle.OracleError, match="bad credentials") as error:
        client.reveal(1)
    assert "nope" not in str(error.value)


def test_credentials_come_from_the_environment_and_stay_secret(monkeypatch):
    monkeypatch.delenv(oracle.USERNAME_ENV, raising=False)
    monkeypatch.delenv(oracle.PASSWORD_ENV, raising=False)
    with pytest.raises(oracle.OracleError, match=oracle.USERNAME_ENV):
        oracle.HttpSource("http://127.0.0.1:9")
    monkeypatch.setenv(oracle.USERNAME_ENV, "alice")
    monkeypatch.setenv(oracle.PASSWORD_ENV, "s3cret-pw")
    source = oracle.HttpSource("http://127.0.0.1:9")
    assert source.username == "alice" and "s3cret-pw" not in repr(source)


def test_budget_is_refused_before_sending(server, tmp_path):
    url, board = server
    client = http_oracle(url, tmp_path)
    for datum in range(5):
        client.reveal(datum)
    with pytest.raises(oracle.BudgetExhausted, match="budget of 5"):
        client.reveal(5)
    assert board.stats["reveal_requests"] == 5
    assert client.reveal(2) == 0  # known labels stay available


def test_server_enforces_the_budget_too(server):
    url, _ = server
    answers = [requests.post(f"{url}/reveal/", data={"username": "bob", "password": "hunter2",
                                                     "exercise_id": 1, "datum_id": d}, timeout=5)
               for d in range(7)]
    assert [a.status_code for a in answers] == [200] * 5 + [403] * 2
    assert "budget" in answers[-1].json()["error"]
    again = requests.post(f"{url}/reveal/", data={"username": "bob", "password": "hunter2",
                                                  "exercise_id": 1, "datum_id": 2}, timeout=5)
    assert again.status_code == 200  # an already revealed datum is free


def test_twenty_concurrent_threads_never_get_a_sixth_label(server):
    url, board = server

    def ask(datum):
        return requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                     "exercise_id": 1, "datum_id": datum},
                             timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(ask, range(20)))
    assert len(codes) == 20 and codes.count(200) == 5 and codes.count(403) == 15
    assert board.stats == {"reveal_requests": 20, "labels_granted": 5}


def test_concurrent_clients_sharing_a_ledger_send_at_most_five(server, tmp_path):
    url, board = server

    def ask(datum):
        try:
            return http_oracle(url, tmp_path).reveal(datum)
        except oracle.BudgetExhausted:
            return None

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(ask, range(20)))
    assert sum(r is not None for r in results) == 5
    assert board.stats["reveal_requests"] == 5


def test_server_restart_keeps_the_ledger(data_dir, tmp_path):
    state = tmp_path / "state.sqlite"
    with servers.running_leaderboard(data_dir, state) as (url, _):
        for datum in range(5):
            requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                  "exercise_id": 1, "datum_id": datum}, timeout=5)
    with servers.running_leaderboard(data_dir, state) as (url, _):
        form = {"username": "alice", "password": "s3cret-pw", "exercise_id": 1, "datum_id": 9}
        refused = requests.post(f"{url}/reveal/", data=form, timeout=5)
        assert refused.status_code == 403
        form["datum_id"] = 3
        assert requests.post(f"{url}/reveal/", data=form, timeout=5).json()[
            "previously revealed"] == [0, 1, 2, 4]


def test_rerun_after_a_crash_asks_nothing_twice(server, tmp_path):
    url, board = server
    first = http_oracle(url, tmp_path)
    labels = {d: first.reveal(d) for d in (2, 5, 8)}
    del first  # the process "crashes"; the ledger is on disk
    rerun = http_oracle(url, tmp_path)
    assert {d: rerun.reveal(d) for d in (2, 5, 8)} == labels
    assert board.stats["reveal_requests"] == 3


def test_crash_between_send_and_record_is_resumed_for_free(server, tmp_path):
    url, board = server
    ledger = oracle.Ledger(tmp_path / "ledger.sqlite")
    ledger.reserve(url, "alice", 1, 6, budget=5)  # pending: sent, answer lost in the crash
    requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                          "exercise_id": 1, "datum_id": 6}, timeout=5)
    rerun = http_oracle(url, tmp_path)
    assert rerun.spent() == 1 and rerun.revealed() == {}
    assert rerun.resume_pending() == {6: 0}
    assert board.stats["labels_granted"] == 1


def test_previously_revealed_elsewhere_counts_against_the_budget(server, tmp_path):
    url, _ = server
    for datum in (10, 11):  # revealed from another machine, unknown to this ledger
        requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                              "exercise_id": 1, "datum_id": datum}, timeout=5)
    client = http_oracle(url, tmp_path)
    client.reveal(0)
    assert client.spent() == 3
    assert client.resume_pending() == {0: 0, 10: 0, 11: 1}


@pytest.mark.parametrize("behaviour,message", [("hang", "no answer within"),
                                               ("drop", "connection failed"),
                                               ("error500", "server error HTTP 503"),
                                               ("garbage", "malformed answer")])
def test_broken_servers_give_clear_errors_and_lose_no_label(server, tmp_path, behaviour, message):
    url, _ = server
    http_oracle(url, tmp_path).reveal(1)
    with servers.broken_server(behaviour) as (bad_url, _):
        client = http_oracle(bad_url, tmp_path, timeout=0.5, retries=1, backoff=0.01)
        # the ledger is keyed by server: copy the known label under the broken URL's key
        client.ledger.record(bad_url, "alice", 1, 1, 1)
        with pytest.raises(oracle.OracleError, match=message):
            client.reveal(2)
        assert client.reveal(1) == 1
        assert client.revealed() == {1: 1} and client.spent() == 2  # datum 2 stays pending
    assert http_oracle(url, tmp_path).revealed() == {1: 1}


def test_answer_for_another_datum_or_class_is_rejected(server, tmp_path):
    url, _ = server
    client = http_oracle(url, tmp_path)
    client.classes = {7, 8}
    with pytest.raises(oracle.OracleError, match="not one of its classes"):
        client.reveal(0)


def test_unknown_dataset(server, tmp_path):
    url, _ = server
    client = oracle.Oracle(oracle.HttpSource(url, "alice", "s3cret-pw"),
                           oracle.Ledger(tmp_path / "l.sqlite"), 99)
    with pytest.raises(oracle.OracleError, match="HTTP 404"):
        client.reveal(0)


def test_local_source_has_the_same_semantics(tmp_path):
    source = oracle.LocalSource({1: np.array(LABELS[1])})
    client = oracle.Oracle(source, oracle.Ledger(tmp_path / "l.sqlite"), 1, classes=[0, 1])
    assert [client.reveal(d) for d in range(5)] == [0, 1, 0, 1, 0]
    with pytest.raises(oracle.BudgetExhausted):
        client.reveal(5)
    with pytest.raises(ValueError):
        oracle.Oracle(source, client.ledger, 1, budget=6)


@pytest.mark.parametrize("datum,status", [(99, "HTTP 404"), (0, "refused")])
def test_a_refused_datum_is_not_left_pending(server, tmp_path, datum, status):
    url, _ = server
    if datum == 0:  # another machine spent the budget: the server answers 403
        for other in range(5):
            requests.post(f"{url}/reveal/", data={"username": "alice", "password": "s3cret-pw",
                                                  "exercise_id": 1, "datum_id": 10 + other},
                          timeout=5)
    client = http_oracle(url, tmp_path)
    with pytest.raises(oracle.OracleRefused, match=status):
        client.reveal(datum)
    assert client.spent() == 0  # released: a rerun is not stuck on it
    assert client.resume_pending() == {}
    if datum == 99:
        assert client.reveal(3) == 1 and client.spent() == 1


def test_a_datum_left_pending_by_an_unusable_answer_does_not_block_a_rerun(server, tmp_path):
    url, _ = server
    http_oracle(url, tmp_path).reveal(1)
    with servers.scripted_server(servers.json_answer({"exercise_id": 1, "datum_id": 5,
                                                      "label": "one"})) as (bad_url, _):
        client = http_oracle(bad_url, tmp_path)
        client.ledger.record(client.source.server, "alice", 1, 1, 1)
        with pytest.raises(oracle.OracleError, match="malformed"):
            client.reveal(5)
        assert client.spent() == 2  # may have been counted: pending
        assert client.resume_pending() == {1: 1}  # the rerun carries on without it
        assert client.remaining() == 3


@pytest.mark.parametrize("payload,message", [
    ({"exercise_id": 1, "datum_id": 3.9, "label": True, "previously revealed": "12"},
     "malformed"),
    ({"exercise_id": 1, "datum_id": 3, "label": True, "previously revealed": []}, "malformed"),
    ({"exercise_id": 1, "datum_id": 3, "label": 1, "previously revealed": "12"}, "malformed"),
    ({"exercise_id": 1, "datum_id": 3, "label": 1, "previously revealed": [100, 101]},
     "outside the target rows"),
    ({"exercise_id": 1, "datum_id": 3, "label": 1, "previously revealed": list(range(4, 12))},
     "over the budget")])
def test_loose_answers_are_rejected_and_record_nothing(tmp_path, payload, message):
    with servers.scripted_server(servers.json_answer(payload)) as (url, _):
        source = oracle.HttpSource(url, "alice", "s3cret-pw")
        client = oracle.Oracle(source, oracle.Ledger(tmp_path / "l.sqlite"), 1,
                               classes=[0, 1], num_rows=20)
        with pytest.raises(oracle.OracleError, match=message):
            client.reveal(3)
        assert client.ledger.entries(source.server, "alice", 1) == {3: None}  # only the ask


def test_a_run_with_a_smaller_budget_accepts_what_the_server_granted_elsewhere(tmp_path):
    payload = {"exercise_id": 1, "datum_id": 3, "label": 1, "previously revealed": [4, 5, 6]}
    with servers.scripted_server(servers.json_answer(payload)) as (url, _):
        source = oracle.HttpSource(url, "alice", "s3cret-pw")
        client = oracle.Oracle(source, oracle.Ledger(tmp_path / "l.sqlite"), 1,
                               classes=[0, 1], budget=2, num_rows=20)
        assert client.reveal(3) == 1  # 4 of the server's 5: a legal answer
        assert client.spent() == 4 and client.remaining() == 0
        with pytest.raises(oracle.BudgetExhausted):
            client.reveal(7)


def test_redirects_are_not_followed(tmp_path):
    with servers.scripted_server(servers.json_answer({})) as (elsewhere, received):
        redirect = lambda form: (307, {"Location": f"{elsewhere}/reveal/"}, b"")  # noqa: E731
        with servers.scripted_server(redirect) as (url, _):
            client = oracle.Oracle(oracle.HttpSource(url, "alice", "s3cret-pw"),
                                   oracle.Ledger(tmp_path / "l.sqlite"), 1)
            with pytest.raises(oracle.OracleRefused, match="redirects.*not followed"):
                client.reveal(0)
        assert received == []  # the password never went there
        assert client.spent() == 0


def test_one_server_spelled_two_ways_has_one_budget(server, tmp_path):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    spellings = [f"http://127.0.0.1:{port}", f"http://localhost:{port}/",
                 f"HTTP://LocalHost:{port}"]
    assert len({oracle.canonical_server(u) for u in spellings}) == 1
    assert oracle.canonical_server("http://example.org") == "http://example.org:80"
    assert oracle.canonical_server("https://[::1]:8443/api/") == "https://[::1]:8443/api"
    ledger = oracle.Ledger(tmp_path / "l.sqlite")
    for i, spelling in enumerate(spellings):
        client = oracle.Oracle(oracle.HttpSource(spelling, "alice", "s3cret-pw"), ledger, 1)
        client.reveal(i)
    assert client.spent() == 3 and client.revealed() == {0: 0, 1: 1, 2: 0}
    with pytest.raises(oracle.OracleError, match="must look like"):
        oracle.canonical_server("127.0.0.1:8000")
