"""Self-test of tests/support/internet.py, stdlib only (urllib/http.client).

usage: .venv/bin/python tests/support/internet_selftest.py
Starts internet.py with a config that exercises every feature, checks each
answer as hybrid's pin check would see it (https URLs rewritten onto the
endpoint, redirects followed, the anonymous Bearer token flow), then checks
that SIGTERM and the death of its parent stop it and clean up. Prints one
line per check; exits non-zero on the first failure.
"""
import concurrent.futures
import glob
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
INTERNET = os.path.join(HERE, "internet.py")
ACCEPT = ("application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
          "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# The instances this self-test starts keep their temporary folders in a
# folder of its own (TMPDIR), so "nothing left behind" looks only at them:
# other tests run their own loopback internets at the same time.
OWN_TMP = tempfile.mkdtemp(prefix="hybrid-selftest-internet-")
OWN_ENV = {**os.environ, "TMPDIR": OWN_TMP}
CONFIG = {
    "missing": [
        "https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe",
        "https://github.com/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-windows-amd64.tar.gz",
        "https://api.github.com/repos/containerd/containerd/releases/tags/v0.0.0",
        "https://raw.githubusercontent.com/projectcalico/calico/v3.99.0/*",
    ],
    "missing_images": ["quay.io/calico/node:v9.9.9"],
    "images": {"quay.io/calico/node-windows:v3.32.4":
               [{"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893"}],
               "registry.k8s.io/plain:1.0": {"os": "linux", "architecture": "amd64"}},
    "github_assets": {"https://api.github.com/repos/containerd/containerd/releases/tags/v2.1.4":
                      ["containerd-2.1.4-linux-amd64.tar.gz.sha256sum"]},
    "slow": {"ghcr.io": 1.0},
    "dead": ["mcr.microsoft.com"],
    "hang": ["public.ecr.aws"],
    "docker_manifest_list_hosts": ["docker.io"],
}

ENDPOINT = None


def check(cond, what, detail=""):
    if not cond:
        print(f"FAIL {what} {detail}")
        sys.exit(1)
    print(f"ok   {what}" + (f"  ({detail})" if detail else ""))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def rewrite(url):
    """hybrid's test hook: https://HOST/PATH?Q -> ENDPOINT/HOST/PATH?Q; http URLs as they are."""
    return ENDPOINT + "/" + url[len("https://"):] if url.startswith("https://") else url


def fetch(url, method="GET", headers=None, timeout=10, follow=True):
    """-> (status, headers, body, [(status, url), ...]) following redirects as nodes do."""
    chain = []
    for _ in range(10):
        req = urllib.request.Request(rewrite(url), method=method, headers=headers or {})
        try:
            r = OPENER.open(req, timeout=timeout)
            status, hdrs, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, e.headers, e.read()
        chain.append((status, url))
        if follow and status in (301, 302, 303, 307, 308):
            url = urllib.parse.urljoin(url, hdrs["Location"])
            continue
        return status, hdrs, body, chain
    raise RuntimeError("redirect loop")


def challenge(header):
    scheme, _, params = header.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', params))


def pull(image, method="GET", path_kind="manifests"):
    """The anonymous Bearer flow: -> (status, headers, body, challenge params)."""
    host, _, rest = image.partition("/")
    name, _, tag = rest.rpartition(":")
    url = f"https://{host}/v2/{name}/{path_kind}/{tag}"
    s, h, _, _ = fetch(url, method, {"Accept": ACCEPT})
    assert s == 401, (url, s)
    scheme, p = challenge(h["WWW-Authenticate"])
    assert scheme == "Bearer", scheme
    q = urllib.parse.urlencode({"service": p["service"], "scope": p["scope"]})
    s2, _, tb, _ = fetch(f"{p['realm']}?{q}")
    assert s2 == 200, s2
    token = json.loads(tb)["token"]
    s, h, b, _ = fetch(url, method, {"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    return s, h, b, p, token


def start(config):
    cfg = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(config, cfg)
    cfg.close()
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, INTERNET, cfg.name], stdout=subprocess.PIPE, text=True, env=OWN_ENV)
    line = proc.stdout.readline()
    took = time.monotonic() - t0
    os.unlink(cfg.name)
    m = re.fullmatch(r"ready (http://127\.0\.0\.1:\d+)\n", line)
    check(m is not None, "prints one ready line", f"{line.strip()!r} after {took:.3f} s")
    return proc, m.group(1), took


def children(pid):
    out = set()
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(f) as fh:
            out |= {int(x) for x in fh.read().split()}
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def main():
    global ENDPOINT
    dirs_before = set(glob.glob(os.path.join(OWN_TMP, "hybrid-internet-*")))
    proc, ENDPOINT, took = start(CONFIG)
    kids = children(proc.pid)
    check(len(kids) == 2, "two docker-registry children (token-auth + seeding)", f"pids {sorted(kids)}")

    # -- files
    url = "https://dl.k8s.io/v1.34.1/bin/linux/amd64/kubelet"
    s, h, body, _ = fetch(url)
    check(s == 200 and body == b"file:" + url.encode(), "permissive file GET", body.decode())
    s, h, hb, _ = fetch(url, "HEAD")
    check(s == 200 and hb == b"" and int(h["Content-Length"]) == len(body), "permissive file HEAD", f"Content-Length {h['Content-Length']}")
    s, _, sums, _ = fetch(url + ".sha256")
    check(s == 200 and sums.decode() == f"{hashlib.sha256(body).hexdigest()}  kubelet\n", ".sha256 matches the file", sums.decode().strip())
    s, _, sums2, _ = fetch(url + ".sha256sum")
    check(s == 200 and sums2 == sums, ".sha256sum matches too")
    s, _, _, _ = fetch("https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe")
    check(s == 404, "missing file 404")
    s, _, _, _ = fetch("https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe", "HEAD")
    check(s == 404, "missing file HEAD 404")

    # -- GitHub release asset: redirect chain
    asset = "https://github.com/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"
    s, _, abody, chain = fetch(asset)
    check(s == 200 and [c[0] for c in chain] == [302, 200]
          and chain[1][1] == "https://objects.githubusercontent.com/github-production-release-asset/containerd/containerd/releases/download/v2.1.4/containerd-2.1.4-linux-amd64.tar.gz"
          and abody == b"file:" + asset.encode(), "github release redirect chain", " -> ".join(f"{c[0]} {c[1]}" for c in chain))
    s, _, hb, chain = fetch(asset, "HEAD")
    check(s == 200 and len(chain) == 2, "github release redirect chain (HEAD)")
    s, _, _, chain = fetch(asset.replace("linux", "windows"))
    check(s == 404 and len(chain) == 1, "missing github asset: 404 at github.com")
    s, _, sums, _ = fetch(asset + ".sha256sum")
    check(s == 200 and sums.split()[0].decode() == hashlib.sha256(abody).hexdigest(), "release .sha256sum (via redirect) matches")

    # -- release JSON
    api = "https://api.github.com/repos/containerd/containerd/releases/tags/v2.1.4"
    s, h, b, _ = fetch(api, headers={"Accept": "application/vnd.github+json"})
    rel = json.loads(b)
    assets = {a["name"]: a["digest"] for a in rel["assets"]}
    check(s == 200 and rel["tag_name"] == "v2.1.4", "release JSON", f"assets {sorted(assets)}")
    check(assets.get("containerd-2.1.4-linux-amd64.tar.gz") == "sha256:" + hashlib.sha256(abody).hexdigest(),
          "release asset digest = sha256 of the downloaded body", assets.get("containerd-2.1.4-linux-amd64.tar.gz"))
    check("containerd-2.1.4-linux-amd64.tar.gz.sha256sum" in assets and "containerd-2.1.4-windows-amd64.tar.gz" not in assets,
          "configured github_assets listed, missing asset left out")
    s, _, b, _ = fetch("https://api.github.com/repos/containerd/containerd/releases/tags/v9.9.9")
    check(s == 200 and json.loads(b)["assets"] == [], "unasked tag: release with no assets")
    s, _, _, _ = fetch("https://api.github.com/repos/containerd/containerd/releases/tags/v0.0.0")
    check(s == 404, "missing release tag 404")

    # -- contents API (git blob sha)
    contents = "https://api.github.com/repos/projectcalico/calico/contents/manifests/operator-crds.yaml?ref=v3.32.4"
    raw = "https://raw.githubusercontent.com/projectcalico/calico/v3.32.4/manifests/operator-crds.yaml"
    s, _, rb, _ = fetch(raw)
    s2, _, b, _ = fetch(contents, headers={"Accept": "application/vnd.github.object+json"})
    blob = hashlib.sha1(b"blob %d\0" % len(rb) + rb).hexdigest()
    check(s == 200 and s2 == 200 and json.loads(b)["sha"] == blob, "contents API sha = git blob sha1 of the raw file", blob)
    s, _, b, _ = fetch(contents, headers={"Accept": "application/vnd.github+json"})
    check(s == 403 and json.loads(b)["errors"][0]["code"] == "too_large", "contents API without object media type: 403 too_large")
    s, _, _, _ = fetch(contents.replace("v3.32.4", "v3.99.0"), headers={"Accept": "application/vnd.github.object+json"})
    check(s == 404, "contents API for a missing file 404")

    # -- registry: full anonymous token flow
    s, h, _, _ = fetch("https://registry.k8s.io/v2/")
    check(s == 401 and h["WWW-Authenticate"] == f'Bearer realm="{ENDPOINT}/_token",service="registry.k8s.io"',
          "GET /v2/ -> 401 bare challenge", h["WWW-Authenticate"])
    t0 = time.monotonic()
    s, h, b, p, token = pull("registry.k8s.io/pause:3.10.1")
    first_pull = time.monotonic() - t0
    check(p["scope"] == "repository:pause:pull" and p["realm"] == f"{ENDPOINT}/_token" and p["service"] == "registry.k8s.io",
          "manifest 401 challenge names the repo as the client sees it", str(p))
    idx = json.loads(b)
    plats = [m["platform"] for m in idx.get("manifests", [])]
    want = [{"os": "linux", "architecture": "amd64"},
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893"},
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.20348.3207"},
            {"os": "windows", "architecture": "amd64", "os.version": "10.0.26100.3194"}]
    check(s == 200 and h["Content-Type"] == OCI_INDEX and plats == want, "registry.k8s.io/pause:3.10.1 -> OCI index with 4 variants",
          f"{first_pull:.3f} s incl. seeding; " + ", ".join(f"{x['os']}/{x['architecture']} {x.get('os.version', '')}".strip() for x in plats))
    digest = "sha256:" + hashlib.sha256(b).hexdigest()
    check(h["Docker-Content-Digest"] == digest, "Docker-Content-Digest = sha256 of the index", digest)
    auth = {"Accept": ACCEPT, "Authorization": f"Bearer {token}"}
    s, h, hb, _ = fetch("https://registry.k8s.io/v2/pause/manifests/3.10.1", "HEAD", auth)
    check(s == 200 and hb == b"" and h["Docker-Content-Digest"] == digest and int(h["Content-Length"]) == len(b),
          "HEAD manifest with token: 200, digest, Content-Length")
    win = idx["manifests"][2]
    s, _, mb, _ = fetch(f"https://registry.k8s.io/v2/pause/manifests/{win['digest']}", headers=auth)
    man = json.loads(mb)
    s2, _, cb, _ = fetch(f"https://registry.k8s.io/v2/pause/blobs/{man['config']['digest']}", headers=auth)
    conf = json.loads(cb)
    check(s == 200 and s2 == 200 and conf["os"] == "windows" and conf["os.version"] == "10.0.20348.3207",
          "child manifest and its config blob by digest", f"config os.version {conf['os.version']}")
    s, h, _, _ = fetch("https://registry.k8s.io/v2/pause/manifests/3.10.1", headers={"Accept": ACCEPT, "Authorization": "Bearer garbage"})
    check(s == 401 and 'error="invalid_token"' in h["WWW-Authenticate"], "bad token -> 401 invalid_token")
    s, h, _, _ = fetch("https://registry.k8s.io/v2/kube-proxy/manifests/v1.34.1", headers=auth)
    check(s == 401 and 'scope="repository:kube-proxy:pull"' in h["WWW-Authenticate"] and "insufficient_scope" in h["WWW-Authenticate"],
          "token for another repo -> 401 insufficient_scope")
    s, h, _, _ = fetch("https://registry.k8s.io/v2/pause/blobs/uploads/", "POST", {"Authorization": f"Bearer {token}"})
    check(s == 401, "anonymous push refused", h["WWW-Authenticate"])

    # -- images override, missing image, Docker manifest list, other hosts
    s, h, b, _, _ = pull("quay.io/calico/node-windows:v3.32.4")
    plats = [m["platform"] for m in json.loads(b)["manifests"]]
    check(s == 200 and plats == [{"os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893"}],
          "images override: only windows 10.0.17763.6893", str(plats))
    s, h, b, _, _ = pull("registry.k8s.io/plain:1.0")
    check(s == 200 and h["Content-Type"] == "application/vnd.oci.image.manifest.v1+json" and "layers" in json.loads(b),
          "images override with one dict: a plain image manifest, no index", h["Content-Type"])
    s, h, b, p, _ = pull("quay.io/calico/node:v9.9.9")
    err = json.loads(b)["errors"][0]
    check(s == 404 and err["code"] == "MANIFEST_UNKNOWN" and p["scope"] == "repository:calico/node:pull",
          "missing_images tag -> 404 MANIFEST_UNKNOWN after the token flow", json.dumps(err))
    s, h, b, _ = fetch("https://quay.io/v2/calico/node/manifests/v9.9.9", "HEAD", {"Accept": ACCEPT})
    check(s == 401, "missing image, no token -> still 401 first (as registries do)")
    s, h, b, p, _ = pull("registry-1.docker.io/library/busybox:1.36")
    check(s == 200 and h["Content-Type"] == DOCKER_LIST and len(json.loads(b)["manifests"]) == 4
          and p["scope"] == "repository:library/busybox:pull", "docker_manifest_list_hosts: Docker manifest list", h["Content-Type"])
    s, h, b, p, _ = pull("quay.io/calico/node:v3.32.4", "HEAD")
    check(s == 200 and h["Content-Type"] == OCI_INDEX and b == b"", "HEAD-first pull seeds too")

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: pull("registry.k8s.io/kube-proxy:v1.34.1"), range(8)))
    digests = {r[1]["Docker-Content-Digest"] for r in results}
    check(all(r[0] == 200 for r in results) and len(digests) == 1, "8 concurrent first pulls of one image agree", digests.pop())

    # -- faults
    t0 = time.monotonic()
    s, _, _, _ = fetch("https://ghcr.io/v2/")
    dt = time.monotonic() - t0
    check(s == 401 and 1.0 <= dt < 2.0, "slow host answers late", f"ghcr.io {dt:.2f} s")
    t0 = time.monotonic()
    try:
        fetch("https://mcr.microsoft.com/v2/oss/kubernetes/pause/manifests/3.10.1")
        check(False, "dead host")
    except (urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError) as e:
        check(time.monotonic() - t0 < 0.5, "dead host: connection closed without an answer", f"{type(e).__name__}: {e}")
    t0 = time.monotonic()
    try:
        fetch("https://public.ecr.aws/v2/", timeout=1.0)
        check(False, "hang host")
    except (urllib.error.URLError, socket.timeout, TimeoutError) as e:
        check(0.9 < time.monotonic() - t0 < 2.0, "hang host: no answer until the client gives up", f"{type(e).__name__} after {time.monotonic() - t0:.2f} s")

    # -- request log
    s, _, b, _ = fetch(f"{ENDPOINT}/_log")
    log = json.loads(b)
    check(s == 200 and ["GET", "https://dl.k8s.io/v1.34.1/bin/windows/amd64/kubelet.exe", 404] in log
          and ["GET", asset, 302] in log and ["HEAD", "https://registry.k8s.io/v2/pause/manifests/3.10.1", 200] in log
          and ["GET", "https://mcr.microsoft.com/v2/oss/kubernetes/pause/manifests/3.10.1", 0] in log,
          "/_log lists [method, url, status]", f"{len(log)} entries, {sum(1 for e in log if '/_token' in e[1])} token requests")
    hosts = sorted({urllib.parse.urlsplit(e[1]).hostname for e in log})
    print("     hosts in log:", " ".join(hosts))

    # -- shutdown: SIGTERM
    time.sleep(0.3)  # let the hanging handler notice the client left
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = proc.wait(timeout=10)
    time.sleep(0.1)
    left = set(glob.glob(os.path.join(OWN_TMP, "hybrid-internet-*"))) - dirs_before
    check(rc == 0 and not any(alive(k) for k in kids) and not left, "SIGTERM: exits, registries gone, temp dir removed",
          f"{time.monotonic() - t0:.2f} s")

    # -- shutdown: parent dies
    launcher = subprocess.run([sys.executable, "-c",
                               "import subprocess, sys; p = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE, text=True);"
                               " p.stdout.readline(); print(p.pid)", INTERNET], capture_output=True, text=True, timeout=30, env=OWN_ENV)
    orphan = int(launcher.stdout)
    orphan_kids = children(orphan)
    t0 = time.monotonic()
    while alive(orphan) and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    time.sleep(0.2)
    left = set(glob.glob(os.path.join(OWN_TMP, "hybrid-internet-*"))) - dirs_before
    check(not alive(orphan) and not any(alive(k) for k in orphan_kids) and not left,
          "parent died: exits, registries gone, temp dir removed", f"{time.monotonic() - t0:.2f} s")
    os.rmdir(OWN_TMP)
    print(f"all checks passed; startup {took:.3f} s")


if __name__ == "__main__":
    main()
