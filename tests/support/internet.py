"""A stand-in for "the internet" on loopback, for hybrid's pin check tests.

hybrid's test hook HYBRID_PIN_CHECK_ENDPOINT=http://127.0.0.1:PORT rewrites
every `https://HOST/PATH?QUERY` it would fetch into
`http://127.0.0.1:PORT/HOST/PATH?QUERY`; this program answers those.

usage: internet.py [CONFIG.json]
Prints exactly one line `ready http://127.0.0.1:PORT` on stdout once every
part is up, then serves until SIGTERM/SIGINT or until its parent process
dies; then it stops its registry processes and removes its temp dir.

What it answers (the first path segment is the original host):

- Files: any host that is not a registry (dl.k8s.io, github.com,
  objects.githubusercontent.com, raw.githubusercontent.com, artifacts.k8s.io,
  k8stestinfrabinaries.blob.core.windows.net, ...). A PERMISSIVE world: any
  path exists unless listed in `missing`. GET/HEAD answer 200 with the body
  b"file:" + URL (URL = https://HOST/PATH, the query left out). A path
  ending in `.sha256` or `.sha256sum` answers
  "<sha256 hex of the target's body>  <target's base name>\\n", the target
  being the same URL without that suffix, so checksums always match.
  - `https://github.com/<o>/<r>/releases/download/<tag>/<name>` answers 302
    to `https://objects.githubusercontent.com/github-production-release-asset/<o>/<r>/releases/download/<tag>/<name>`
    (hybrid rewrites that back to here), which answers the file. Both
    URLs have the body of the github.com URL. A github.com download URL in
    `missing` answers 404 at github.com directly, as GitHub does (and its
    objects.githubusercontent.com twin 404s too).
  - `https://api.github.com/repos/<o>/<r>/releases/tags/<tag>` answers
    {"tag_name": tag, "assets": [{"name", "digest": "sha256:<hex of body>",
    "size", "browser_download_url", ...}]}. The assets are the names in
    `github_assets[<that API URL>]`, plus (when `github_assets_permissive`,
    the default) every name requested so far under
    github.com/<o>/<r>/releases/download/<tag>/ - so hybrid must fetch or
    HEAD an asset before looking up its digest, or the test lists the name.
    Assets whose download URL is in `missing` are left out; an API URL in
    `missing` answers 404.
  - `https://api.github.com/repos/<o>/<r>/contents/<path>?ref=<ref>` answers
    {"type": "file", "sha": <git blob sha1 of the body of
    https://raw.githubusercontent.com/<o>/<r>/<ref>/<path>>, ...} only when
    the Accept header names application/vnd.github.object+json; otherwise
    403 "too_large", as GitHub does for files over 1 MB (Calico's CRDs).
    404 when the API URL (with or without its query) or the raw URL is in
    `missing`. Any other api.github.com path answers 404.
- Registries: registry.k8s.io, quay.io, ghcr.io, registry-1.docker.io,
  mcr.microsoft.com, public.ecr.aws (and `registry_hosts`).
  `/<host>/v2/<name>/...` is proxied to a real registry (Debian's
  docker-registry, distribution 2.8) as `/v2/<host>/<name>/...`, so
  repositories are namespaced by host. Method, headers (Accept!), status and
  response headers pass through; WWW-Authenticate is rewritten to say
  `service="<host>"` and `scope="repository:<name>:pull"` (no host prefix),
  Location headers to `https://<host>/v2/...`, and error bodies lose the
  host prefix in repository names. `/<host>/v2/` answers 401 with the bare
  challenge, as registries do.
  - Token auth, anonymous pull only: the realm is
    `http://127.0.0.1:PORT/_token` (plain http, so hybrid uses it as is);
    GET it with `service=<host>&scope=repository:<name>:pull` for
    {"token", "access_token", "expires_in", "issued_at"}. Push actions are
    never granted.
  - LAZY SEEDING: the first GET or HEAD of `<host>/v2/<name>/manifests/<tag>`
    (a tag, not a digest) pushes that image first, unless `<host>/<name>:<tag>`
    is in `missing_images` (then it answers 404 MANIFEST_UNKNOWN). It is an
    OCI image index (a Docker manifest list for hosts in
    `docker_manifest_list_hosts`) with the variants linux/amd64 and
    windows/amd64 with os.version 10.0.17763.6893, 10.0.20348.3207 and
    10.0.26100.3194, or exactly the platforms in `images[<host>/<name>:<tag>]`.
    Children are tiny single-layer images whose config carries the
    platform (and a label naming the image, so digests differ per image).
    Seeding goes through a second, auth-less registry on the same storage.
- Faults, per host: `slow` waits before answering anything for that host;
  `dead` closes the connection at once without an answer; `hang` never
  answers (until the client gives up or this program stops).
- `GET /_log` answers a JSON list of [method, original_url, status] for every
  request so far, in arrival order (status null while in flight, 0 for dead
  and hang). original_url is https://HOST/PATH?QUERY, or the
  http://127.0.0.1:PORT/_token?... URL for token requests.

CONFIG.json, every key optional:
  {
    "missing": ["https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe",
                "https://github.com/o/r/releases/download/v9.9.9/*"],
                         # exact URL (compared with and without its query),
                         # or a prefix when it ends in "*"
    "missing_images": ["quay.io/calico/node:v3.99.0", "ghcr.io/x/*"],
                         # host/name:tag, exact or "*"-prefix
    "images": {"quay.io/calico/node-windows:v3.32.4":
                 [{"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893"}]},
                         # the exact platform list of that image's index; a
                         # single dict instead of a list pushes a plain image
                         # manifest (no index) for that platform
    "github_assets": {"https://api.github.com/repos/o/r/releases/tags/v1.2.3": ["a.tar.gz"]},
    "github_assets_permissive": true,
    "slow": {"quay.io": 3.0},          # seconds
    "dead": ["ghcr.io"],
    "hang": ["mcr.microsoft.com"],
    "docker_manifest_list_hosts": ["registry-1.docker.io"],
    "registry_hosts": ["registry.example.com"]   # more registry hosts
  }
`docker.io/...` in image keys means registry-1.docker.io (and
`docker.io/x` means `docker.io/library/x`); "docker.io" as a host in
`slow`/`dead`/`hang`/`docker_manifest_list_hosts` means registry-1.docker.io.

Needs: /usr/bin/docker-registry (Debian `docker-registry`), PyJWT and
cryptography (all installed by scripts/setup.sh): run it with .venv/bin/python.
Startup takes about 0.2 s (two registries, 0.05 s each; the first pull of an
image seeds it, about 0.05-0.25 s). After a SIGKILL the registries die too
(PR_SET_PDEATHSIG) but the temp dir (/tmp/hybrid-internet-*) is left.
Self-test: tests/support/internet_selftest.py.
"""
import base64
import datetime
import gzip
import hashlib
import http.client
import http.server
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

try:
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError as e:
    sys.exit(f"internet.py: {e}: run it with .venv/bin/python after scripts/setup.sh")

REGISTRY_HOSTS = {"registry.k8s.io", "quay.io", "ghcr.io", "registry-1.docker.io", "mcr.microsoft.com", "public.ecr.aws"}
DEFAULT_PLATFORMS = [
    {"os": "linux", "architecture": "amd64"},
    {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893"},
    {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.3207"},
    {"os": "windows", "architecture": "amd64", "os.version": "10.0.26100.3194"},
]
SERVICE = ISSUER = "internet"  # what the real registry checks (aud, iss)
OBJECT_MEDIA_TYPE = "application/vnd.github.object+json"
RELEASE_DOWNLOAD = re.compile(r"^/([^/]+)/([^/]+)/releases/download/([^/]+)/([^/]+)$")
RELEASES_API = re.compile(r"^/repos/([^/]+)/([^/]+)/releases/tags/([^/]+)$")
CONTENTS_API = re.compile(r"^/repos/([^/]+)/([^/]+)/contents/(.+)$")
MANIFEST = re.compile(r"^/(.+)/manifests/([^/]+)$")
OBJECTS_PREFIX = "/github-production-release-asset/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


def norm_host(h):
    return "registry-1.docker.io" if h == "docker.io" else h


def norm_image(key):
    if key.startswith("docker.io/"):
        rest = key[len("docker.io/"):]
        if "/" not in rest.split(":")[0]:
            rest = "library/" + rest
        key = "registry-1.docker.io/" + rest
    return key


def listed(patterns, s):
    return any(s == p or (p.endswith("*") and s.startswith(p[:-1])) for p in patterns)


# ---------------------------------------------------------------- config

cfg = {}
if len(sys.argv) > 1:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
MISSING = list(cfg.get("missing", []))
MISSING_IMAGES = [norm_image(k) for k in cfg.get("missing_images", [])]
IMAGES = {norm_image(k): v for k, v in cfg.get("images", {}).items()}
GITHUB_ASSETS = dict(cfg.get("github_assets", {}))
GITHUB_PERMISSIVE = bool(cfg.get("github_assets_permissive", True))
SLOW = {norm_host(h): float(s) for h, s in cfg.get("slow", {}).items()}
DEAD = {norm_host(h) for h in cfg.get("dead", [])}
HANG = {norm_host(h) for h in cfg.get("hang", [])}
DOCKER_LIST_HOSTS = {norm_host(h) for h in cfg.get("docker_manifest_list_hosts", [])}
REGISTRY_HOSTS |= {norm_host(h) for h in cfg.get("registry_hosts", [])}

STOP = threading.Event()
lock = threading.Lock()
request_log = []   # [method, url, status]
requested_assets = {}  # (owner, repo, tag) -> [names]
seeded = set()
seed_locks = {}
state = {"tmp": None, "procs": [], "front_port": 0, "reg_port": 0, "seed_port": 0}


def missing(url):
    return listed(MISSING, url) or listed(MISSING, url.split("?", 1)[0])


# ---------------------------------------------------------------- files

def canonical(host, path):
    """The URL whose body a path serves (github release assets live at two URLs)."""
    if host == "objects.githubusercontent.com" and path.startswith(OBJECTS_PREFIX):
        return "https://github.com/" + path[len(OBJECTS_PREFIX):]
    return f"https://{host}{path}"


def file_body(url):
    for suffix in (".sha256sum", ".sha256"):
        if url.endswith(suffix):
            target = url[:-len(suffix)]
            name = target.rsplit("/", 1)[-1]
            return f"{hashlib.sha256(file_body(target)).hexdigest()}  {name}\n".encode()
    return b"file:" + url.encode()


def git_blob_sha(body):
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


# ---------------------------------------------------------------- token auth

def make_keys(tmp):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "internet-token-issuer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt = os.path.join(tmp, "token.crt")
    with open(crt, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    kid = ":".join(b32[i:i + 4] for i in range(0, 48, 4))  # libtrust key id
    return key, kid, crt


def issue_token(query):
    q = urllib.parse.parse_qs(query)
    host = norm_host((q.get("service") or [""])[0])
    if host not in REGISTRY_HOSTS:
        return 400, {"errors": [{"code": "UNSUPPORTED", "message": f"unknown service {host!r}"}]}
    access = []
    for scope in q.get("scope", []):
        for s in scope.split(" "):
            parts = s.split(":")
            if len(parts) < 3 or parts[0] != "repository":
                continue
            name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
            access.append({"type": "repository", "name": f"{host}/{name}",
                           "actions": [a for a in actions if a == "pull"]})  # anonymous: pull only
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
              "jti": uuid.uuid4().hex, "access": access}
    tok = jwt.encode(claims, state["key"], algorithm="ES256", headers={"typ": "JWT", "kid": state["kid"]})
    return 200, {"token": tok, "access_token": tok, "expires_in": 300,
                 "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


# ---------------------------------------------------------------- registry processes and seeding

def start_registry(tmp, label, storage, auth):
    conf = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": "127.0.0.1:0", "secret": "not-a-secret-test-only"},
    }
    if auth:
        conf["auth"] = {"token": {"realm": f"http://127.0.0.1:{state['front_port']}/_token", "service": SERVICE,
                                  "issuer": ISSUER, "rootcertbundle": state["crt"]}}
    path = os.path.join(tmp, f"{label}.yml")
    with open(path, "w") as f:
        json.dump(conf, f)  # YAML is a superset of JSON
    log_path = os.path.join(tmp, f"{label}.log")
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        sys.exit("internet.py: docker-registry not found (Debian package docker-registry): run scripts/setup.sh")
    logf = open(log_path, "wb")
    proc = subprocess.Popen([binary, "serve", path], stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    logf.close()
    state["procs"].append(proc)
    return proc, log_path


def wait_listening(proc, log_path, deadline):
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", f.read())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    with open(log_path, "rb") as f:
        sys.stderr.write(f"internet.py: registry did not start:\n{f.read().decode(errors='replace')}\n")
    shutdown(1)


def die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def seed_request(method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", state["seed_port"], timeout=30)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r, r.read()
    finally:
        c.close()


def push_blob(repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r, _ = seed_request("HEAD", f"/v2/{repo}/blobs/{digest}")
    if r.status == 200:
        return digest
    r, body = seed_request("POST", f"/v2/{repo}/blobs/uploads/")
    if r.status != 202:
        raise RuntimeError(f"start upload to {repo}: {r.status} {body[:300]!r}")
    loc = urllib.parse.urlsplit(r.getheader("Location"))
    query = (loc.query + "&" if loc.query else "") + "digest=" + digest
    r, body = seed_request("PUT", f"{loc.path}?{query}", body=data,
                           headers={"Content-Type": "application/octet-stream"})
    if r.status != 201:
        raise RuntimeError(f"upload to {repo}: {r.status} {body[:300]!r}")
    return digest


def push_manifest(repo, ref, doc):
    raw = json.dumps(doc, separators=(",", ":")).encode()
    r, body = seed_request("PUT", f"/v2/{repo}/manifests/{ref}", body=raw, headers={"Content-Type": doc["mediaType"]})
    if r.status != 201:
        raise RuntimeError(f"put manifest {repo}:{ref}: {r.status} {body[:300]!r}")
    return {"mediaType": doc["mediaType"], "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}


def push_image(repo, key, platform, docker):
    mt = {
        "manifest": "application/vnd.docker.distribution.manifest.v2+json" if docker else "application/vnd.oci.image.manifest.v1+json",
        "config": "application/vnd.docker.container.image.v1+json" if docker else "application/vnd.oci.image.config.v1+json",
        "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker else "application/vnd.oci.image.layer.v1.tar+gzip",
    }
    tar = b"\0" * 1024  # an empty tar archive
    layer = gzip.compress(tar, mtime=0)
    config = {k: platform[k] for k in ("architecture", "os", "os.version", "os.features", "variant") if k in platform}
    config.update({"config": {"Labels": {"internet.image": key}}, "created": "2025-01-01T00:00:00Z",
                   "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}})
    config_raw = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_digest = push_blob(repo, config_raw)
    layer_digest = push_blob(repo, layer)
    manifest = {"schemaVersion": 2, "mediaType": mt["manifest"],
                "config": {"mediaType": mt["config"], "digest": config_digest, "size": len(config_raw)},
                "layers": [{"mediaType": mt["layer"], "digest": layer_digest, "size": len(layer)}]}
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return manifest, "sha256:" + hashlib.sha256(raw).hexdigest()


def seed(host, name, tag):
    key = f"{host}/{name}:{tag}"
    repo = f"{host}/{name}"
    docker = host in DOCKER_LIST_HOSTS
    platforms = IMAGES.get(key, DEFAULT_PLATFORMS)
    if isinstance(platforms, dict):  # a plain image, no index
        manifest, _ = push_image(repo, key, platforms, docker)
        push_manifest(repo, tag, manifest)
        return
    entries = []
    for p in platforms:
        manifest, digest = push_image(repo, key, p, docker)
        desc = push_manifest(repo, digest, manifest)
        desc["platform"] = dict(p)
        entries.append(desc)
    index_type = ("application/vnd.docker.distribution.manifest.list.v2+json" if docker
                  else "application/vnd.oci.image.index.v1+json")
    push_manifest(repo, tag, {"schemaVersion": 2, "mediaType": index_type, "manifests": entries})


def ensure_seeded(host, name, tag):
    key = f"{host}/{name}:{tag}"
    if key in seeded or listed(MISSING_IMAGES, key):
        return
    with lock:
        klock = seed_locks.setdefault(key, threading.Lock())
    with klock:
        if key in seeded:
            return
        try:
            seed(host, name, tag)
        except Exception as e:  # e.g. a name the registry rejects: let the registry answer
            sys.stderr.write(f"internet.py: seeding {key} failed: {e}\n")
        seeded.add(key)


# ---------------------------------------------------------------- front server

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def version_string(self):
        return "internet"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=(), length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        return status

    def json(self, status, doc, headers=()):
        return self.reply(status, json.dumps(doc).encode(), "application/json; charset=utf-8", headers)

    def dispatch(self):
        body = self.read_body()
        path, _, query = self.path.partition("?")
        if path == "/_log":
            with lock:
                doc = [list(e) for e in request_log]
            self.json(200, doc)
            return
        if path == "/_token":
            entry = self.log_entry(f"http://127.0.0.1:{state['front_port']}{self.path}")
            entry[2] = self.json(*issue_token(query))
            return
        host, slash, rest = path[1:].partition("/")
        rest = slash + rest
        url = f"https://{host}{rest}" + (f"?{query}" if query else "")
        entry = self.log_entry(url)
        if host in DEAD:
            entry[2] = 0
            self.close_connection = True
            return
        if host in HANG:
            entry[2] = 0
            self.hang()
            return
        if host in SLOW:
            time.sleep(SLOW[host])
        if not host:
            entry[2] = self.reply(404, b"no host\n")
        elif host in REGISTRY_HOSTS:
            entry[2] = self.registry(host, rest, query, body)
        elif host == "api.github.com":
            entry[2] = self.github_api(url, rest, query)
        else:
            entry[2] = self.file(host, rest, url)

    def log_entry(self, url):
        entry = [self.command, url, None]
        with lock:
            request_log.append(entry)
        return entry

    def hang(self):
        self.close_connection = True
        sock = self.connection
        while not STOP.is_set():
            r, _, _ = select.select([sock], [], [], 0.2)
            if r:
                try:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        return  # the client gave up
                except OSError:
                    return
                time.sleep(0.2)

    # -- files

    def file(self, host, path, url):
        m = RELEASE_DOWNLOAD.match(path) if host == "github.com" else None
        if m:
            with lock:
                names = requested_assets.setdefault(m.group(1, 2, 3), [])
                if m.group(4) not in names:
                    names.append(m.group(4))
            if missing(url):
                return self.reply(404, b"Not Found")
            location = "https://objects.githubusercontent.com/github-production-release-asset" + url[len("https://github.com"):]
            return self.reply(302, b"", headers=[("Location", location)])
        canon = canonical(host, path)
        if missing(url) or missing(canon):
            return self.reply(404, b"Not Found")
        return self.reply(200, file_body(canon), "application/octet-stream")

    # -- api.github.com

    def github_api(self, url, path, query):
        not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
        m = RELEASES_API.match(path)
        if m:
            owner, repo, tag = m.groups()
            if missing(url):
                return self.json(404, not_found)
            names = list(GITHUB_ASSETS.get(url, GITHUB_ASSETS.get(url.split("?", 1)[0], [])))
            if GITHUB_PERMISSIVE:
                with lock:
                    names += [n for n in requested_assets.get((owner, repo, tag), []) if n not in names]
            assets = []
            for i, name in enumerate(names):
                dl = f"https://github.com/{owner}/{repo}/releases/download/{tag}/{name}"
                if missing(dl):
                    continue
                body = file_body(dl)
                assets.append({"id": i + 1, "name": name, "label": "", "content_type": "application/octet-stream",
                               "state": "uploaded", "size": len(body),
                               "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "browser_download_url": dl})
            return self.json(200, {"tag_name": tag, "name": tag, "draft": False, "prerelease": False,
                                   "assets": assets})
        m = CONTENTS_API.match(path)
        if m:
            owner, repo, file_path = m.groups()
            ref = (urllib.parse.parse_qs(query).get("ref") or ["main"])[0]
            raw = f"https://raw.githubusercontent.com/{owner}/{repo}/{ref}/{file_path}"
            if missing(url) or missing(raw):
                return self.json(404, not_found)
            if OBJECT_MEDIA_TYPE not in (self.headers.get("Accept") or ""):
                return self.json(403, {"message": "This API returns blobs up to 1 MB in size. The requested blob is too large to fetch via the API, but you can use the Git Data API to request blobs up to 100 MB in size.",
                                       "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}],
                                       "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content",
                                       "status": "403"})
            body = file_body(raw)
            return self.json(200, {"type": "file", "name": file_path.rsplit("/", 1)[-1], "path": file_path,
                                   "sha": git_blob_sha(body), "size": len(body), "download_url": raw})
        return self.json(404, not_found)

    # -- registries

    def registry(self, host, path, query, body):
        if path not in ("/v2", "/v2/") and not path.startswith("/v2/"):
            return self.json(404, {"errors": [{"code": "NOT_FOUND", "message": "not a registry API path"}]})
        sub = path[3:]
        upstream = "/v2/" if sub in ("", "/") else f"/v2/{host}{sub}"
        m = MANIFEST.match(sub)
        if m and self.command in ("GET", "HEAD") and ":" not in m.group(2):
            ensure_seeded(host, m.group(1), m.group(2))
        if query:
            upstream += "?" + query
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        c = http.client.HTTPConnection("127.0.0.1", state["reg_port"], timeout=60)
        try:
            c.request(self.command, upstream, body=body or None, headers=headers)
            r = c.getresponse()
            data = r.read()
        except OSError as e:
            return self.reply(502, f"registry unreachable: {e}\n".encode())
        finally:
            c.close()
        out = []
        for k, v in r.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk in ("date", "server"):
                continue
            if lk == "www-authenticate":
                v = v.replace(f'service="{SERVICE}"', f'service="{host}"').replace(f"repository:{host}/", "repository:")
            elif lk == "location":
                for prefix in (f"http://127.0.0.1:{state['reg_port']}/v2/{host}/", f"/v2/{host}/"):
                    if v.startswith(prefix):
                        v = f"https://{host}/v2/" + v[len(prefix):]
            out.append((k, v))
        if r.status >= 400 and data:
            data = data.replace(f'"{host}/'.encode(), b'"')
        length = r.getheader("Content-Length") if self.command == "HEAD" else None
        return self.reply(r.status, data, None, out, length=length if length is not None else None)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many nodes' checks at once: no SYN retries

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


# ---------------------------------------------------------------- life cycle

def shutdown(code=0, *_):
    STOP.set()
    for p in state["procs"]:
        if p.poll() is None:
            p.terminate()
    for p in state["procs"]:
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            p.kill()
    if state["tmp"]:
        shutil.rmtree(state["tmp"], ignore_errors=True)
    os._exit(code if isinstance(code, int) and code < 128 else 0)


def main():
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: shutdown(0))
    signal.signal(signal.SIGINT, lambda *_: shutdown(0))
    tmp = state["tmp"] = tempfile.mkdtemp(prefix="hybrid-internet-")
    try:
        state["key"], state["kid"], state["crt"] = make_keys(tmp)
        server = Server(("127.0.0.1", 0), Handler)
        state["front_port"] = server.server_address[1]
        storage = os.path.join(tmp, "storage")
        os.makedirs(storage)
        deadline = time.monotonic() + 15
        reg = start_registry(tmp, "registry", storage, auth=True)
        seeder = start_registry(tmp, "seeder", storage, auth=False)
        state["reg_port"] = wait_listening(*reg, deadline)
        state["seed_port"] = wait_listening(*seeder, deadline)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    except BaseException:
        import traceback
        traceback.print_exc()
        shutdown(1)
    sys.stdout.write(f"ready http://127.0.0.1:{state['front_port']}\n")
    sys.stdout.flush()
    while not STOP.wait(0.25):
        if os.getppid() != parent:
            shutdown(0)
        if any(p.poll() is not None for p in state["procs"]):
            sys.stderr.write("internet.py: a registry process exited\n")
            shutdown(1)


if __name__ == "__main__":
    main()
