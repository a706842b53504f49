"""A local stand-in for the Hugging Face Hub: just the routes ``HfApi`` uses to create a repo and commit.

Run the real ``huggingface_hub`` client against it with ``HfApi(endpoint=hub.url)``. It implements

- ``POST /api/repos/create``                        create a model repo (409 if it exists)
- ``GET  /api/models/{repo}[/revision/{rev}]``       repo info (create_repo's fallback after a 401/403)
- ``POST /api/validate-yaml``                        the model card's metadata (must parse as YAML)
- ``POST /api/models/{repo}/branch/{branch}``        create a branch (409 if it exists)
- ``POST /api/models/{repo}/preupload/{rev}``        every file is a "regular" upload (no LFS / Xet)
- ``POST /api/models/{repo}/commit/{rev}``           NDJSON commit of base64 files

and records every request. ``fail(route, *actions)`` queues what the next requests to ``route``
get instead of an answer: an HTTP status (e.g. 500), or ``"drop"`` to close the connection
without a reply. Requests must carry ``Authorization: Bearer <token>``; ``writable=False``
makes writes 403.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
ROUTES = [
    ("create", "POST", re.compile(r"^/api/repos/create$")),
    ("validate", "POST", re.compile(r"^/api/validate-yaml$")),
    ("branch", "POST", re.compile(rf"^/api/models/{REPO}/branch/(?P<rev>[^/]+)$")),
    ("preupload", "POST", re.compile(rf"^/api/models/{REPO}/preupload/(?P<rev>[^/]+)$")),
    ("commit", "POST", re.compile(rf"^/api/models/{REPO}/commit/(?P<rev>[^/]+)$")),
    ("info", "GET", re.compile(rf"^/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?$")),
]


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict[str, Any]] = field(default_factory=list)
    head: str = "0" * 40


@dataclass
class Request:
    route: str
    method: str
    path: str
    authorization: str | None
    body: bytes


class FakeHub:
    def __init__(self, token: str, user: str = "user") -> None:
        self.token, self.user = token, user
        self.writable = True
        self.echo_auth = False  # a careless server: injected errors quote the Authorization header back
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.validated: list[str] = []  # README contents sent to validate-yaml
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, route: str, *actions: int | str) -> None:
        """The next ``len(actions)`` requests to ``route`` get these statuses (or ``"drop"``)."""
        self._failures[route].extend(actions)

    def calls(self, route: str) -> list[Request]:
        return [r for r in self.requests if r.route == route]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[repo_id].branches[revision])

    # ---- request handling (called from the server's threads)

    def handle(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], Any] | None:
        route, match = next(
            ((name, m) for name, meth, rx in ROUTES if meth == method and (m := rx.match(path))), (None, None)
        )
        with self._lock:
            self.requests.append(
                Request(route or "unknown", method, path, headers.get("authorization"), body)
            )
            if route is None:
                return 404, {}, {"error": f"fake hub: no route {method} {path}"}
            if self._failures[route]:
                action = self._failures[route].popleft()
                echo = f" (got {headers.get('authorization')})" if self.echo_auth else ""
                return None if action == "drop" else (action, {}, {"error": f"injected {action}{echo}"})
            if headers.get("authorization") != f"Bearer {self.token}":
                return 401, {}, {"error": "Invalid credentials in Authorization header"}
            args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return getattr(self, f"_{route}")(body=body, **args)

    def _create(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        payload = json.loads(body)
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        if not self.writable:
            return 403, {}, {"error": "You don't have the rights to create a model under this namespace"}
        if repo_id in self.repos:
            return 409, {}, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        return 200, {}, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def _info(self, body: bytes, repo: str, rev: str = "main") -> tuple[int, dict[str, str], Any]:
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        r = self.repos[repo]
        return 200, {}, {"id": repo, "modelId": repo, "sha": r.head, "private": r.private, "siblings": []}

    def _validate(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        content = json.loads(body)["content"]
        self.validated.append(content)
        try:
            meta = yaml.safe_load(content.split("---")[1]) if content.startswith("---") else {}
        except yaml.YAMLError as e:
            return 400, {}, {"errors": [{"message": str(e)}]}
        if not isinstance(meta, dict):
            return 400, {}, {"errors": [{"message": "metadata must be a mapping"}]}
        return 200, {}, {"errors": [], "warnings": []}

    def _branch(self, body: bytes, repo: str, rev: str) -> tuple[int, dict[str, str], Any]:
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        if not self.writable:
            return 403, {}, {"error": "forbidden"}
        branches = self.repos[repo].branches
        if rev in branches:
            return 409, {}, {"error": "Reference already exists"}
        branches[rev] = dict(branches["main"])
        return 200, {}, {}

    def _preupload(self, body: bytes, repo: str, rev: str) -> tuple[int, dict[str, str], Any]:
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        files = json.loads(body)["files"]
        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        return 200, {}, {"files": modes}

    def _commit(self, body: bytes, repo: str, rev: str) -> tuple[int, dict[str, str], Any]:
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, {"error": "Repository not found"}
        if not self.writable:
            return 403, {}, {"error": "forbidden"}
        r = self.repos[repo]
        if rev not in r.branches:
            return 404, {"X-Error-Code": "RevisionNotFound"}, {"error": f"Invalid rev id: {rev}"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header, ops = lines[0], lines[1:]
        tree = dict(r.branches[rev])
        for op in ops:
            if op["key"] != "file":
                return 400, {}, {"error": f"fake hub: unsupported commit operation {op['key']}"}
            tree[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
        oid = hashlib.sha1(body).hexdigest()
        r.branches[rev], r.head = tree, oid
        r.commits.append(
            {"oid": oid, "revision": rev, **header["value"], "paths": [o["value"]["path"] for o in ops]}
        )
        return (
            200,
            {},
            {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
        )


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = hub.handle(self.command, urlsplit(self.path).path, self.headers, body)
            if answer is None:  # drop the connection without a reply
                self.close_connection = True
                return
            status, headers, payload = answer
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler
