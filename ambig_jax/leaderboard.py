r"""A local leaderboard server speaking the challenge's protocol, to replay it offline.

  AMBIG_JAX_USERS=alice:secret python -m ambig_jax.leaderboard --data_dir=DIR --port=8000

* `POST /reveal/` (multipart or urlencoded form: username, password, exercise_id, datum_id)
  answers `{"exercise_id", "datum_id", "label", "previously revealed"}` as the original did;
  at most 5 distinct datums per (user, data set), enforced atomically.
* `POST /submit/` (username, password, exercise_id and a CSV as the `file` part or the
  `predictions` field) scores one submission per (user, data set) and answers its accuracy.
* `GET /leaderboard` gives the scores as JSON; `GET /leaderboard?format=html` as a table.

Labels come from `DIR/hidden/<id>.npy` (what `experiments.make_datasets` writes); all state
lives in sqlite (`--state`, default `DIR/leaderboard.sqlite`), so a restart loses nothing.
Built on the standard library's `http.server`: the protocol is three small endpoints, and a
framework would add a dependency for no gain. Binds to 127.0.0.1 unless told otherwise.

What a bad client cannot do: send a body larger than the endpoint needs (`MAX_BODY`: the
request is refused before its body is read), lie about its length (a Content-Length that is
not a plain non-negative integer is refused), hold a thread for ever (sockets time out after
`TIMEOUT` seconds of silence), log in with an empty password, or get a dropped connection
instead of an answer (an unexpected error answers 500 with its cause).
"""

import email.parser
import email.policy
import hmac
import html
import json
import os
import pathlib
import re
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from ambig_jax import outputs
from ambig_jax import storage
from ambig_jax.datasets import catalog
from ambig_jax.datasets import generator

BUDGET = 5
USERS_ENV = "AMBIG_JAX_USERS"
MAX_BODY = {"reveal": 16 * 1024, "submit": 1024 * 1024}  # bytes; a 20,000-row CSV is ~40 KB
TIMEOUT = 10.0  # seconds a connection may stay silent
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII digits only: not " 12 ", "1_2" or "١٢"


class RequestError(Exception):
    """An answer other than 200: status and message."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def load_users(users_file=None) -> dict[str, str]:
    """Users from a JSON file {"name": "password"} or from $AMBIG_JAX_USERS 'name:pw,name:pw'."""
    if users_file:
        users = json.loads(pathlib.Path(users_file).read_text())
    else:
        spec = os.environ.get(USERS_ENV, "")
        users = dict(item.split(":", 1) for item in spec.split(",") if ":" in item)
    if not users:
        raise ValueError(f"no users: pass --users_file or set {USERS_ENV}=name:password,...")
    return _check_users({str(k): str(v) for k, v in users.items()})


def _check_users(users: dict[str, str]) -> dict[str, str]:
    empty = sorted(name for name, password in users.items() if not name or not password)
    if empty:
        raise ValueError(f"users {empty} have an empty name or password; every user needs both")
    return dict(users)


class Leaderboard:
    """The server's state and rules, independent of HTTP."""

    def __init__(self, data_dir, users: dict[str, str], state_path=None, budget: int = BUDGET):
        self.data_dir = pathlib.Path(data_dir)
        self.users = _check_users(users)
        self.budget = budget
        self.state_path = pathlib.Path(state_path or self.data_dir / "leaderboard.sqlite")
        self._lock = threading.Lock()
        self._labels: dict[int, np.ndarray] = {}
        self.stats = {"reveal_requests": 0, "labels_granted": 0}
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS reveals (username TEXT, dataset INTEGER, "
                       "datum INTEGER, at REAL, PRIMARY KEY (username, dataset, datum))")
            db.execute("CREATE TABLE IF NOT EXISTS submissions (username TEXT, dataset INTEGER, "
                       "accuracy REAL, at REAL, PRIMARY KEY (username, dataset))")

    def _db(self):
        return storage.transaction(self.state_path)

    def labels(self, dataset_id: int) -> np.ndarray:
        if dataset_id not in self._labels:
            path = generator.hidden_labels_path(self.data_dir, dataset_id)
            if not path.is_file():
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown exercise_id {dataset_id}")
            try:
                labels = np.load(path, allow_pickle=False).reshape(-1)
                if not np.issubdtype(labels.dtype, np.integer):
                    raise ValueError(f"dtype {labels.dtype}, not integer labels")
            except (ValueError, OSError, EOFError) as e:
                raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR,
                                   f"exercise {dataset_id}: its hidden labels cannot be read "
                                   f"({type(e).__name__}: {e})") from None
            self._labels[dataset_id] = labels
        return self._labels[dataset_id]

    def authenticate(self, form: dict) -> str:
        """The user named by the form; the password is compared in constant time."""
        username, password = form.get("username", ""), form.get("password", "")
        expected = self.users.get(username, "")
        # compare even for unknown users, so the time taken says nothing about who exists
        matches = hmac.compare_digest(password.encode(), expected.encode())
        if not username or not password or not expected or not matches:
            raise RequestError(HTTPStatus.UNAUTHORIZED, "wrong username or password")
        return username

    @staticmethod
    def _int_field(form: dict, name: str) -> int:
        value = form.get(name)
        if value is None or not _DIGITS.fullmatch(value):
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"field {name!r} must be a non-negative integer in ASCII digits")
        return int(value)

    def reveal(self, form: dict) -> dict:
        with self._lock:
            self.stats["reveal_requests"] += 1
        username = self.authenticate(form)
        dataset_id = self._int_field(form, "exercise_id")
        datum_id = self._int_field(form, "datum_id")
        labels = self.labels(dataset_id)
        if not 0 <= datum_id < len(labels):
            raise RequestError(HTTPStatus.NOT_FOUND,
                               f"datum_id {datum_id} outside 0..{len(labels) - 1}")
        with self._lock, self._db() as db:  # one writer at a time, in one transaction
            before = [d for (d,) in db.execute(
                "SELECT datum FROM reveals WHERE username=? AND dataset=? ORDER BY at, datum",
                (username, dataset_id))]
            if datum_id not in before:
                if len(before) >= self.budget:
                    raise RequestError(HTTPStatus.FORBIDDEN,
                                       f"budget of {self.budget} labels spent for exercise "
                                       f"{dataset_id} (revealed: {before})")
                db.execute("INSERT INTO reveals VALUES (?, ?, ?, ?)",
                           (username, dataset_id, datum_id, time.time()))
                self.stats["labels_granted"] += 1
        return {"exercise_id": dataset_id, "datum_id": datum_id,
                "label": int(labels[datum_id]),
                "previously revealed": [d for d in before if d != datum_id]}

    def submit(self, form: dict) -> dict:
        username = self.authenticate(form)
        dataset_id = self._int_field(form, "exercise_id")
        labels = self.labels(dataset_id)
        text = form.get("file") or form.get("predictions")
        if not text:
            raise RequestError(HTTPStatus.BAD_REQUEST, "send the CSV as 'file' or 'predictions'")
        try:
            predicted = outputs.parse_submission(text, len(labels), np.unique(labels),
                                                 where=f"exercise {dataset_id} submission")
        except outputs.OutputError as e:
            raise RequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        accuracy = float(np.mean(predicted == labels))
        with self._lock, self._db() as db:
            if db.execute("SELECT 1 FROM submissions WHERE username=? AND dataset=?",
                          (username, dataset_id)).fetchone():
                raise RequestError(HTTPStatus.CONFLICT,
                                   f"exercise {dataset_id} was already submitted by {username}")
            db.execute("INSERT INTO submissions VALUES (?, ?, ?, ?)",
                       (username, dataset_id, accuracy, time.time()))
        return {"exercise_id": dataset_id, "accuracy": accuracy}

    def scores(self) -> dict:
        """Per user: accuracy per submitted set and the total (points x score, defaults else)."""
        with self._db() as db:
            rows = db.execute("SELECT username, dataset, accuracy FROM submissions").fetchall()
        ids = sorted(int(p.stem) for p in generator.hidden_dir(self.data_dir).glob("*.npy")
                     if p.stem.isdigit())
        board = []
        for username in sorted(self.users):
            mine = {d: a for u, d, a in rows if u == username}
            total = sum(catalog.info_for(d).points * mine.get(d, catalog.info_for(d).default_score)
                        for d in ids)
            board.append({"username": username, "total": round(total, 4),
                          "accuracy": {str(d): mine[d] for d in sorted(mine)}})
        board.sort(key=lambda entry: -entry["total"])
        return {"datasets": ids, "leaderboard": board}

    def scores_html(self) -> str:
        data = self.scores()
        head = "".join(f"<th>{d}</th>" for d in data["datasets"])
        rows = "".join(
            f"<tr><td>{html.escape(e['username'])}</td><td>{e['total']:.3f}</td>"
            + "".join(f"<td>{e['accuracy'].get(str(d), float('nan')):.3f}</td>"
                      for d in data["datasets"]) + "</tr>"
            for e in data["leaderboard"])
        return ("<!doctype html><title>ambig_jax leaderboard</title><table border=1>"
                f"<tr><th>user</th><th>total</th>{head}</tr>{rows}</table>")


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """A POST body (urlencoded or multipart/form-data) -> {field: text}."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        if not message.is_multipart():
            raise RequestError(HTTPStatus.BAD_REQUEST, "malformed multipart body")
        form = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                form[name] = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        return form
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


class Handler(BaseHTTPRequestHandler):
    server_version = "ambig_jax-leaderboard/1"
    board: Leaderboard  # set by make_server
    timeout = TIMEOUT  # socket timeout: a silent client is dropped, its thread freed

    def _send(self, status: HTTPStatus, payload, content_type="application/json"):
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")  # the rest of a refused body is not read
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, work):
        """Sends what `work()` returns, or the error it raised; never drops the connection
        without an answer."""
        try:
            status, payload, content_type = work()
        except RequestError as e:
            status, payload, content_type = e.status, {"error": str(e)}, "application/json"
        except Exception as e:  # noqa: BLE001: any failure still gets an answer
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            payload = {"error": f"internal error ({type(e).__name__}: {e})"}
        try:
            self._send(status, payload, content_type)
        except OSError:  # the client left
            self.close_connection = True

    def _body_length(self, endpoint: str) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
        if not _DIGITS.fullmatch(raw.strip()):
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"Content-Length {raw[:20]!r} is not a non-negative integer")
        length = int(raw)
        if length > MAX_BODY[endpoint]:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes; /{endpoint}/ takes at most "
                               f"{MAX_BODY[endpoint]}")
        return length

    def do_POST(self):  # noqa: N802 (http.server's naming)
        routes = {"reveal": self.board.reveal, "submit": self.board.submit}

        def work():
            endpoint = urllib.parse.urlparse(self.path).path.strip("/")
            if endpoint not in routes:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint /{endpoint}")
            body = self.rfile.read(self._body_length(endpoint))
            form = parse_form(self.headers.get("Content-Type", ""), body)
            return HTTPStatus.OK, routes[endpoint](form), "application/json"

        self._answer(work)

    def do_GET(self):  # noqa: N802
        def work():
            url = urllib.parse.urlparse(self.path)
            if url.path.rstrip("/") != "/leaderboard":
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint {url.path}")
            if "html" in urllib.parse.parse_qs(url.query).get("format", []):
                return HTTPStatus.OK, self.board.scores_html(), "text/html; charset=utf-8"
            return HTTPStatus.OK, self.board.scores(), "application/json"

        self._answer(work)

    def log_message(self, format, *args):  # keep credentials and noise out of stderr
        pass


def make_server(board: Leaderboard, host: str = "127.0.0.1", port: int = 0,
                timeout: float = TIMEOUT) -> ThreadingHTTPServer:
    """A threaded HTTP server for `board` (port 0: any free port, see `server_address`);
    `timeout`: seconds a connection may stay silent."""
    handler = type("BoundHandler", (Handler,), {"board": board, "timeout": timeout})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv=None):
    from absl import app, flags  # the library part above needs no flags

    flags.DEFINE_string("data_dir", None, "Folder with hidden/<id>.npy labels.", required=True)
    flags.DEFINE_integer("port", 8000, "Port to listen on.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind (loopback by default).")
    flags.DEFINE_string("users_file", None, f"JSON users file; else ${USERS_ENV}.")
    flags.DEFINE_string("state", None, "sqlite state file (default DATA_DIR/leaderboard.sqlite).")

    def run(_):
        f = flags.FLAGS
        board = Leaderboard(f.data_dir, load_users(f.users_file), f.state)
        server = make_server(board, f.host, f.port)
        print(f"leaderboard on http://{f.host}:{server.server_address[1]} "
              f"(state {board.state_path})", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass

    app.run(run, argv)


if __name__ == "__main__":
    main()
