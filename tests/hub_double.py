"""A small in-memory stand-in for the Hugging Face Hub, owned by the tests.

It speaks the HTTP routes that the real ``huggingface_hub`` client (and ``datasets`` through it) uses for
``whoami``, ``create_repo``, ``upload_folder`` (pre-upload, LFS batch + PUT, NDJSON commit), tree listing,
``paths-info``, repo info and ``resolve`` downloads (HEAD and ranged GET). It listens on loopback and is reached
through ``HF_ENDPOINT``, so subprocesses can use it too. Any route it does not know answers 599 and is recorded in
``server.unknown``: the tests assert that list is empty, so an unexpected call fails loudly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

LFS_SUFFIXES = (".parquet", ".png", ".safetensors", ".arrow")
DATE = "%Y-%m-%dT%H:%M:%S.000Z"


class Repo:
    def __init__(self, repo_id: str, private: bool):
        self.repo_id, self.private = repo_id, private
        self.files: dict[str, bytes] = {}
        self.lfs: set[str] = set()
        self.commits: list[dict] = []
        self.sha = hashlib.sha1(repo_id.encode()).hexdigest()

    def commit(self, message: str) -> str:
        self.sha = hashlib.sha1(f"{self.sha}{message}{len(self.commits)}{time.time()}".encode()).hexdigest()
        self.commits.append({"sha": self.sha, "message": message, "files": sorted(self.files)})
        return self.sha


class HubDouble(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tokens=("hf_test_token",), user="tester"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tokens, self.user = set(tokens), user
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> HubDouble:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    server: HubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # -- helpers --------------------------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes | dict | list | None = None, headers: dict | None = None, head: bool = False
    ):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        body = body or b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server.tokens

    def _unknown(self):
        self.server.unknown.append((self.command, self.path))
        self._send(599, {"error": f"hub double: unknown route {self.command} {self.path}"}, head=self.command == "HEAD")

    def _repo(self, repo_id: str) -> Repo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        elif repo.private and not self._authorized():
            self._send(401, {"error": "Unauthorized"}, {"X-Error-Code": "RepoNotFound"})
            return None
        return repo

    def _info(self, repo: Repo) -> dict:
        card = {}
        readme = repo.files.get("README.md", b"").decode()
        if readme.startswith("---"):
            import yaml

            card = yaml.safe_load(readme.split("---")[1]) or {}
        return {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.sha,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": time.strftime(DATE, time.gmtime()),
            "createdAt": time.strftime(DATE, time.gmtime()),
            "cardData": card,
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
        }

    def _entry(self, repo: Repo, path: str) -> dict:
        data = repo.files[path]
        entry = {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
        if path in repo.lfs:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
        return entry

    def _tree(self, repo: Repo, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        out, dirs = [], set()
        for path in sorted(repo.files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            if len(parts) > 1:
                for i in range(1, len(parts) if recursive else 2):
                    d = "/".join(([prefix] if prefix else []) + parts[:i])
                    if d not in dirs:
                        dirs.add(d)
                        out.append(
                            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
                        )
                if not recursive:
                    continue
            out.append(self._entry(repo, path))
        return out

    # -- routes ---------------------------------------------------------------------------------------------------
    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route()

    def do_POST(self):
        self._route()

    def do_PUT(self):
        self._route()

    def _route(self, head: bool = False):
        url = urlparse(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
        m = None
        if path == "/api/agent-harnesses" and self.command == "GET":  # the client's once-a-day registry lookup
            return self._send(200, {"standardEnvVars": [], "harnesses": {}})
        if re.fullmatch(r"/api/models/.+|/[^/]+/[^/]+/resolve/.+", path) and not path.startswith("/datasets/"):
            # this double hosts datasets only: every model repo is missing, as a real Hub answers for unknown ids
            return self._send(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}, head=head)
        if path == "/api/whoami-v2" and self.command == "GET":
            if not self._authorized():
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            return self._send(
                200,
                {
                    "type": "user",
                    "name": self.server.user,
                    "fullname": "Test",
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": "write"}},
                },
            )
        if path == "/api/repos/create" and self.command == "POST":
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            body = json.loads(self._body() or b"{}")
            repo_id = f"{body.get('organization') or self.server.user}/{body['name']}"
            url_ = f"{self.server.endpoint}/datasets/{repo_id}"
            if repo_id in self.server.repos:
                return self._send(409, {"error": "You already created this dataset repo", "url": url_})
            self.server.repos[repo_id] = Repo(repo_id, bool(body.get("private")))
            return self._send(200, {"url": url_, "name": repo_id})
        if path == "/api/validate-yaml" and self.command == "POST":
            self._body()
            return self._send(200, {"errors": [], "warnings": []})
        if (m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)) and self.command == "GET":
            repo = self._repo(m.group(1))
            return repo and self._send(200, self._info(repo))
        if (m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)) and self.command == "GET":
            repo = self._repo(m.group(1))
            if repo is None:
                return None
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return self._send(200, self._tree(repo, m.group(3) or "", recursive))
        if (m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/paths-info/([^/]+)", path)) and self.command == "POST":
            repo = self._repo(m.group(1))
            if repo is None:
                return None
            raw = self._body().decode()
            form = parse_qs(raw)
            paths = form.get("paths") or (json.loads(raw).get("paths", []) if raw.startswith("{") else [])
            out = []
            for p in paths:
                if p in repo.files:
                    out.append(self._entry(repo, p))
                elif any(f.startswith(p.rstrip("/") + "/") for f in repo.files):
                    out.append({"type": "directory", "path": p, "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0})
            return self._send(200, out)
        if (m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/preupload/([^/]+)", path)) and self.command == "POST":
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            repo = self._repo(m.group(1))
            if repo is None:
                return None
            files = json.loads(self._body())["files"]
            return self._send(
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                            "shouldIgnore": False,
                        }
                        for f in files
                    ],
                    "commitOid": repo.sha,
                },
            )
        if (m := re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)) and self.command == "POST":
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            body = json.loads(self._body())
            objects = []
            for o in body["objects"]:
                entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if o["oid"] not in self.server.blobs:
                    entry["actions"] = {
                        "upload": {"href": f"{self.server.endpoint}/lfs-upload/{o['oid']}", "header": {}}
                    }
                objects.append(entry)
            return self._send(
                200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}
            )
        if (m := re.fullmatch(r"/lfs-upload/([0-9a-f]{64})", path)) and self.command == "PUT":
            data = self._body()
            if hashlib.sha256(data).hexdigest() != m.group(1):
                return self._send(400, {"error": "sha256 mismatch"})
            self.server.blobs[m.group(1)] = data
            return self._send(200, {})
        if (m := re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/commit/([^/]+)", path)) and self.command == "POST":
            if not self._authorized():
                return self._send(401, {"error": "Unauthorized"})
            repo = self._repo(m.group(1))
            if repo is None:
                return None
            message = "commit"
            for line in self._body().decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", message)
                elif key == "file":
                    repo.files[value["path"]] = base64.b64decode(value["content"])
                    repo.lfs.discard(value["path"])
                elif key == "lfsFile":
                    if value["oid"] not in self.server.blobs:
                        return self._send(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                    repo.files[value["path"]] = self.server.blobs[value["oid"]]
                    repo.lfs.add(value["path"])
                elif key == "deletedFile":
                    repo.files.pop(value["path"], None)
                elif key == "deletedFolder":
                    for p in [p for p in repo.files if p.startswith(value["path"].rstrip("/") + "/")]:
                        repo.files.pop(p)
                else:
                    return self._unknown()
            sha = repo.commit(message)
            return self._send(
                200,
                {
                    "commitUrl": f"{self.server.endpoint}/datasets/{repo.repo_id}/commit/{sha}",
                    "commitOid": sha,
                    "commitMessage": message,
                    "pullRequestUrl": None,
                },
            )
        if (m := re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)) and self.command in (
            "GET",
            "HEAD",
        ):
            repo = self._repo(m.group(1))
            if repo is None:
                return None
            file = m.group(3)
            if file not in repo.files:
                return self._send(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}, head=head)
            data = repo.files[file]
            etag = hashlib.sha256(data).hexdigest() if file in repo.lfs else hashlib.sha1(data).hexdigest()
            headers = {
                "X-Repo-Commit": repo.sha,
                "ETag": f'"{etag}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            if file in repo.lfs:
                headers["X-Linked-Etag"] = f'"{etag}"'
                headers["X-Linked-Size"] = str(len(data))
            rng = self.headers.get("Range")
            if rng and not head:
                start_s, end_s = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()).groups()
                start = int(start_s) if start_s else max(0, len(data) - int(end_s))
                end = int(end_s) if (end_s and start_s) else len(data) - 1
                end = min(end, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return self._send(206, data[start : end + 1], headers)
            if head:
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return None
            return self._send(200, data, headers)
        return self._unknown()
