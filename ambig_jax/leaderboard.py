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
"""

import email.parser
import email.policy
import html
import json
import os
import pathlib
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
MAX_BODY = 16 * 1024 * 1024


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
    return {str(k): str(v) for k, v in users.items()}


class Leaderboard:
    """The server's state and rules, independent of HTTP."""

    def __init__(self, data_dir, users: dict[str, str], state_path=None, budget: int = BUDGET):
        self.data_dir = pathlib.Path(data_dir)
        self.users = users
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
            self._labels[dataset_id] = np.load(path, allow_pickle=False).reshape(-1)
        return self._labels[dataset_id]

    def authenticate(self, form: dict) -> str:
        username = form.get("username", "")
        if not username or self.users.get(username) != form.get("password"):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "wrong username or password")
        return username

    @staticmethod
    def _int_field(form: dict, name: str) -> int:
        try:
            return int(form[name])
        except (KeyError, ValueError):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"field {name!r} must be an integer") from None

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

    def _send(self, status: HTTPStatus, payload, content_type="application/json"):
        body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        routes = {"/reveal/": self.board.reveal, "/reveal": self.board.reveal,
                  "/submit/": self.board.submit, "/submit": self.board.submit}
        path = urllib.parse.urlparse(self.path).path
        try:
            if path not in routes:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no endpoint {path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
            form = parse_form(self.headers.get("Content-Type", ""), self.rfile.read(length))
            self._send(HTTPStatus.OK, routes[path](form))
        except RequestError as e:
            self._send(e.status, {"error": str(e)})

    def do_GET(self):  # noqa: N802
        url = urllib.parse.urlparse(self.path)
        if url.path.rstrip("/") != "/leaderboard":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {url.path}"})
        elif "html" in urllib.parse.parse_qs(url.query).get("format", []):
            self._send(HTTPStatus.OK, self.board.scores_html(), "text/html; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, self.board.scores())

    def log_message(self, format, *args):  # keep credentials and noise out of stderr
        pass


def make_server(board: Leaderboard, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threaded HTTP server for `board` (port 0: any free port, see `server_address`)."""
    handler = type("BoundHandler", (Handler,), {"board": board})
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
