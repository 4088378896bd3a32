"""The oracle: revealed labels of target points, with a crash-safe ledger and a hard budget.

Two sources answer `reveal(datum_id)` with the same semantics:
  * `HttpSource`: the challenge's reveal API (`POST <url>/reveal/`), credentials from the
    environment (HACKATHON_USERNAME / HACKATHON_PASSWORD), timeouts, retries with backoff on
    connection errors and 5xx answers only.
  * `LocalSource`: the hidden labels of a generated data set.

`Oracle` puts a `Ledger` (sqlite, in the run's output folder) in front of a source: a datum is
written as *pending* before it is asked for and its label is committed before it is returned,
so a rerun after a crash reuses every known label, re-asks only a pending datum (which the
server already counts, so it costs nothing new), and never asks for a sixth distinct datum.

What a failed request leaves in the ledger depends on what the server said:
  * refused (`OracleRefused`: a 3xx or 4xx answer, or an answer about another datum): the
    datum was not revealed to us, so its pending entry is released;
  * no usable answer (`OracleError`: timeouts, dropped connections, 5xx, malformed answers):
    the server may have counted the datum, so it stays pending and counts against the budget;
    a rerun asks for it again, and if that fails too, carries on with the labels left.
"""

import dataclasses
import ipaddress
import os
import pathlib
import time
import urllib.parse
from typing import Protocol

import numpy as np
import requests

from ambig_jax import storage

USERNAME_ENV = "HACKATHON_USERNAME"
PASSWORD_ENV = "HACKATHON_PASSWORD"
MAX_BUDGET = 5


class OracleError(RuntimeError):
    """The oracle could not give a label; the message says why and what to do."""


class BudgetExhausted(OracleError):
    """A new distinct datum was asked for once the budget was spent; nothing was sent."""


class OracleRefused(OracleError):
    """The server answered and refused (or answered about another datum): the datum was not
    revealed to us, so the ledger forgets its pending entry."""


class OracleUnavailable(OracleError):
    """No answer came back (timeout, lost connection, server error): the datum may have been
    counted, so it stays pending."""


def canonical_server(url: str) -> str:
    """The ledger's key for a server URL: scheme, host and port made explicit and lower-case,
    `localhost` read as 127.0.0.1, so that two spellings of one server share one budget."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OracleError(f"{url!r}: the reveal server's URL must look like http://host:port")
    host = parts.hostname.lower()
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    except ValueError:
        pass  # a name, kept as written
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


@dataclasses.dataclass(frozen=True)
class Answer:
    """One answer of the reveal API."""
    dataset_id: int
    datum_id: int
    label: int
    previously_revealed: tuple[int, ...] = ()


class LabelSource(Protocol):
    """Where labels come from. `server` and `username` key the ledger."""
    server: str
    username: str

    def fetch(self, dataset_id: int, datum_id: int) -> Answer:
        ...


class LocalSource:
    """Answers from known labels (a generated set's hidden target labels)."""

    def __init__(self, labels: dict[int, np.ndarray], username: str = "local"):
        self.server = "local"
        self.username = username
        self._labels = {k: np.asarray(v) for k, v in labels.items()}
        self._asked: dict[int, list[int]] = {}

    def fetch(self, dataset_id: int, datum_id: int) -> Answer:
        if dataset_id not in self._labels:
            raise OracleError(f"local oracle: no hidden labels for data set {dataset_id}")
        labels = self._labels[dataset_id]
        if not 0 <= datum_id < len(labels):
            raise OracleError(f"local oracle: datum {datum_id} outside 0..{len(labels) - 1}")
        asked = self._asked.setdefault(dataset_id, [])
        previously = tuple(asked)
        if datum_id not in asked:
            asked.append(datum_id)
        return Answer(dataset_id, datum_id, int(labels[datum_id]), previously)


class HttpSource:
    """The reveal API over HTTP (`requests`); credentials never leave this object."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 10.0, retries: int = 3, backoff: float = 0.5):
        username = username if username is not None else os.environ.get(USERNAME_ENV)
        password = password if password is not None else os.environ.get(PASSWORD_ENV)
        if not username or not password:
            raise OracleError(f"set {USERNAME_ENV} and {PASSWORD_ENV} in the environment to "
                              "use the HTTP oracle")
        self.url = url.strip().rstrip("/")
        self.server = canonical_server(self.url)
        self.username = username
        self._password = password
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._session = requests.Session()

    def __repr__(self):
        return f"HttpSource({self.server!r}, username={self.username!r})"

    def _post(self, form: dict) -> requests.Response:
        url = f"{self.url}/reveal/"
        for attempt in range(self.retries + 1):
            try:  # never follow a redirect: it would carry the password elsewhere
                response = self._session.post(url, data=form, timeout=self.timeout,
                                              allow_redirects=False)
            except requests.Timeout as e:
                problem = f"no answer within {self.timeout:g}s ({type(e).__name__})"
            except requests.ConnectionError as e:
                problem = f"connection failed ({type(e).__name__})"
            else:
                if response.status_code < 500:
                    return response
                problem = f"server error HTTP {response.status_code}"
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise OracleUnavailable(f"{url}: {problem} after {self.retries + 1} attempts; the "
                                "labels already revealed are kept in the ledger, run again later")

    def fetch(self, dataset_id: int, datum_id: int) -> Answer:
        response = self._post({"username": self.username, "password": self._password,
                               "exercise_id": str(dataset_id), "datum_id": str(datum_id)})
        detail = _server_message(response)
        status = response.status_code
        if 300 <= status < 400:
            raise OracleRefused(
                f"{self.url}: redirects (HTTP {status}) to "
                f"{response.headers.get('Location', '?')!r}, not followed since the form "
                "carries the password; pass that URL as --oracle_url if you trust it")
        if status in (401, 403):
            what = "bad credentials" if status == 401 else "refused"
            raise OracleRefused(f"{self.url}: {what} (HTTP {status}): {detail}; check "
                                f"{USERNAME_ENV}/{PASSWORD_ENV} and the data set's budget")
        if status == 404:
            raise OracleRefused(f"{self.url}: not found (HTTP 404): {detail}; check the URL, "
                                f"data set {dataset_id} and datum {datum_id}")
        if 400 <= status < 500:
            raise OracleRefused(f"{self.url}: HTTP {status}: {detail}")
        if status != 200:
            raise OracleError(f"{self.url}: HTTP {status}: {detail}")
        try:
            body = response.json()
            previously = body.get("previously revealed")
            if previously is None:
                previously = []
            if not isinstance(previously, list):
                raise TypeError("'previously revealed' is not a list")
            answer = Answer(_exact_int(body["exercise_id"]), _exact_int(body["datum_id"]),
                            _exact_int(body["label"]), tuple(_exact_int(i) for i in previously))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise OracleError(f"{self.url}: malformed answer ({type(e).__name__}: {e}): "
                              f"{response.text[:200]!r}") from e
        if (answer.dataset_id, answer.datum_id) != (dataset_id, datum_id):
            raise OracleRefused(f"{self.url}: answered for data set {answer.dataset_id} datum "
                                f"{answer.datum_id}, asked for {dataset_id} datum {datum_id}")
        return answer


def _exact_int(value) -> int:
    """A JSON integer as the API sends it: not a bool, a float or a string."""
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error") or body.get("detail") or body)[:200]
    except ValueError:
        return response.text[:200] or response.reason or ""


class Ledger:
    """Revealed labels on disk (sqlite), keyed by server, user and data set.

    A row with a NULL label is *pending*: asked for (or known to the server as revealed)
    but not yet answered here. Every write is committed before the call returns.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS reveals (
                server TEXT NOT NULL, username TEXT NOT NULL, dataset INTEGER NOT NULL,
                datum INTEGER NOT NULL, label INTEGER, recorded_at REAL NOT NULL,
                PRIMARY KEY (server, username, dataset, datum))""")

    def _connect(self):
        return storage.transaction(self.path)

    def entries(self, server: str, username: str, dataset_id: int) -> dict[int, int | None]:
        """datum -> label (None while pending), in the order they were recorded."""
        with self._connect() as db:
            rows = db.execute("SELECT datum, label FROM reveals WHERE server=? AND username=? "
                              "AND dataset=? ORDER BY recorded_at, datum",
                              (server, username, dataset_id)).fetchall()
        return {int(d): (None if l is None else int(l)) for d, l in rows}

    def reserve(self, server, username, dataset_id, datum_id, budget: int) -> None:
        """Records `datum_id` as pending unless known; raises BudgetExhausted past `budget`."""
        with self._connect() as db:
            known = {d for (d,) in db.execute(
                "SELECT datum FROM reveals WHERE server=? AND username=? AND dataset=?",
                (server, username, dataset_id))}
            if datum_id in known:
                return
            if len(known) >= budget:
                raise BudgetExhausted(
                    f"data set {dataset_id}: the budget of {budget} labels is spent "
                    f"(revealed: {sorted(known)}); datum {datum_id} was not asked for")
            db.execute("INSERT INTO reveals VALUES (?, ?, ?, ?, NULL, ?)",
                       (server, username, dataset_id, datum_id, time.time()))

    def release(self, server, username, dataset_id, datum_id) -> None:
        """Forgets `datum_id` if it is pending: the server refused it, so it was not revealed."""
        with self._connect() as db:
            db.execute("DELETE FROM reveals WHERE server=? AND username=? AND dataset=? AND "
                       "datum=? AND label IS NULL", (server, username, dataset_id, datum_id))

    def record(self, server, username, dataset_id, datum_id, label: int | None) -> None:
        """Stores a datum's label (or marks it known-but-unanswered with None)."""
        with self._connect() as db:
            db.execute("""INSERT INTO reveals VALUES (?, ?, ?, ?, ?, ?)
                          ON CONFLICT (server, username, dataset, datum)
                          DO UPDATE SET label = COALESCE(excluded.label, reveals.label)""",
                       (server, username, dataset_id, datum_id, label, time.time()))


class Oracle:
    """Budgeted, ledgered access to one data set's labels; the only I/O of disambiguation."""

    def __init__(self, source: LabelSource, ledger: Ledger, dataset_id: int,
                 classes=None, budget: int = MAX_BUDGET, num_rows: int | None = None):
        if not 0 <= budget <= MAX_BUDGET:
            raise ValueError(f"budget must be between 0 and {MAX_BUDGET}, got {budget}")
        self.source, self.ledger, self.dataset_id, self.budget = source, ledger, dataset_id, budget
        self.classes = None if classes is None else {int(c) for c in classes}
        self.num_rows = num_rows  # target rows: datum ids outside 0..num_rows-1 are refused

    def _key(self):
        return self.source.server, self.source.username, self.dataset_id

    def revealed(self) -> dict[int, int]:
        """Labels known for this data set: datum -> original label value."""
        return {d: l for d, l in self.ledger.entries(*self._key()).items() if l is not None}

    def spent(self) -> int:
        """Distinct datums revealed or pending (what counts against the budget)."""
        return len(self.ledger.entries(*self._key()))

    def remaining(self) -> int:
        return max(self.budget - self.spent(), 0)

    def _check_datum(self, datum_id) -> int:
        if isinstance(datum_id, bool) or not isinstance(datum_id, (int, np.integer)):
            raise OracleError(f"data set {self.dataset_id}: datum id {datum_id!r} is not an "
                              "integer")
        datum_id = int(datum_id)
        if datum_id < 0 or (self.num_rows is not None and datum_id >= self.num_rows):
            last = "N" if self.num_rows is None else self.num_rows - 1
            raise OracleError(f"data set {self.dataset_id}: datum {datum_id} is outside the "
                              f"target rows 0..{last}")
        return datum_id

    def _check(self, answer: Answer, datum_id: int) -> None:
        """Raises OracleError on an answer that must not be recorded."""
        if self.classes is not None and answer.label not in self.classes:
            raise OracleError(f"data set {self.dataset_id}: label {answer.label} of datum "
                              f"{datum_id} is not one of its classes {sorted(self.classes)}")
        others = set(answer.previously_revealed) - {datum_id}
        for other in others:
            self._check_datum(other)
        if len(others) + 1 > MAX_BUDGET:  # the server's budget, whatever this run's is
            raise OracleError(f"data set {self.dataset_id}: the server reports "
                              f"{len(others) + 1} datums revealed, over the budget of "
                              f"{MAX_BUDGET} (the challenge's); its answer is not recorded")

    def reveal(self, datum_id: int) -> int:
        """The label (original value) of target row `datum_id`, asking the source at most once.

        Raises:
          BudgetExhausted: a new datum past the budget (nothing is sent).
          OracleRefused: the server refused; the datum is not pending any more.
          OracleError: no usable answer; the datum stays pending (it may have been counted).
        """
        datum_id = self._check_datum(datum_id)
        known = self.ledger.entries(*self._key())
        if known.get(datum_id) is not None:
            return known[datum_id]
        self.ledger.reserve(*self._key(), datum_id, self.budget)  # raises past the budget
        try:
            answer = self.source.fetch(self.dataset_id, datum_id)
        except OracleRefused:
            self.ledger.release(*self._key(), datum_id)
            raise
        self._check(answer, datum_id)
        self.ledger.record(*self._key(), datum_id, answer.label)
        for other in answer.previously_revealed:  # revealed elsewhere: counts, label unknown
            self.ledger.record(*self._key(), int(other), None)
        return answer.label

    def resume_pending(self) -> dict[int, int]:
        """Asks again for datums left pending by a crash (free: the server counted them).

        A datum the server now refuses is forgotten; one that still gets no usable answer
        stays pending, counting against the budget, and the run carries on without its label.
        Only an unreachable server stops the resumption (every later request would fail too).
        """
        for datum_id, label in self.ledger.entries(*self._key()).items():
            if label is None:
                try:
                    self.reveal(datum_id)
                except OracleUnavailable:
                    raise
                except OracleError:
                    continue
        return self.revealed()
