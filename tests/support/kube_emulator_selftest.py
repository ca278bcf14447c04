"""Self-test of kube_emulator.py's opt-in behaviours, with plain HTTP(S)
requests against the emulator as the Rust tests start it:

- --rbac with --token-auth-file and --iam-sts (a moto_server on loopback
  plays STS and IAM): 401 without a valid identity, the bootstrap roles
  (view, edit, admin, system:discovery), exact 403 Status bodies, the Node
  authorizer and NodeRestriction, /_test/whoami;
- aws-iam-authenticator's token checks, signature included, and the
  kube-system/aws-auth mapping (mapUsers, mapRoles with {{SessionName}});
- the same over HTTPS with client certificates (--tls);
- --immutable, --dead-nodes, POST /_test/race and resourceVersion
  preconditions;
- --calico 3.32 (the schemas made from the 3.32.1 CRDs, their defaults).

usage: .venv/bin/python tests/support/kube_emulator_selftest.py
Prints one line per check and exits non-zero if any failed.
"""
import base64
import datetime
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
EMULATOR = os.path.join(HERE, "kube_emulator.py")
PKI = os.path.join(ROOT, "tests", "fixtures", "pki")
CLUSTER_ID = "selftest-cluster"
REGION = "eu-west-1"
ACCOUNT = "123456789012"

failures = []
children = []


def check(what, cond, detail=""):
    print(("ok     " if cond else "FAILED ") + what + ("" if cond else f"\n         {detail}"), flush=True)
    if not cond:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(*flags):
    port = free_port()
    proc = subprocess.Popen([sys.executable, EMULATOR, str(port), *flags], stdout=subprocess.PIPE, text=True)
    children.append(proc)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise SystemExit(f"the emulator did not start with {flags}")
    return port


def start_moto():
    port = free_port()
    log = open(os.path.join(tempfile.mkdtemp(), "moto.log"), "w")
    proc = subprocess.Popen([os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    children.append(proc)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


class Api:
    """One emulator; `who` is a bearer token, or (cert, key) paths for TLS."""

    def __init__(self, port, tls=False):
        self.port, self.tls = port, tls

    def call(self, method, path, body=None, who=None, ctype="application/json"):
        headers = {}
        if isinstance(who, str):
            headers["Authorization"] = f"Bearer {who}"
        if self.tls:
            ctx = ssl.create_default_context(cafile=os.path.join(PKI, "ca.crt"))
            ctx.check_hostname = False  # the server certificate names the node IP, not 127.0.0.1
            if isinstance(who, tuple):
                ctx.load_cert_chain(*who)
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=20)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = ctype
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read().decode()
        conn.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


# --------------------------------------------------------------------------
# AWS side: identities in moto, tokens as `aws eks get-token` makes them
# --------------------------------------------------------------------------


def aws_identities(moto_url):
    import boto3

    kw = dict(endpoint_url=moto_url, region_name=REGION, aws_access_key_id="AKIAADMINSETUP000000", aws_secret_access_key="setup")
    iam, sts = boto3.client("iam", **kw), boto3.client("sts", **kw)
    out = {}
    for user, path in (("alice", "/team/"), ("mallory", "/")):
        arn = iam.create_user(UserName=user, Path=path)["User"]["Arn"]
        key = iam.create_access_key(UserName=user)["AccessKey"]
        out[user] = {"arn": arn, "akid": key["AccessKeyId"], "secret": key["SecretAccessKey"], "token": None}
    for role, path in (("deployer", "/ci/"), ("pathed", "/ops/")):
        role_arn = iam.create_role(RoleName=role, Path=path, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="bob@example.com")["Credentials"]
        out[role] = {"arn": role_arn, "akid": creds["AccessKeyId"], "secret": creds["SecretAccessKey"], "token": creds["SessionToken"]}
    return out


def presigned_url(ident, cluster_id=CLUSTER_ID, at=None, host=None, region=REGION):
    """The presigned GetCallerIdentity URL aws-cli's `eks get-token` makes
    (botocore SigV4QueryAuth, X-Amz-Expires=60, x-k8s-aws-id signed)."""
    import botocore.auth
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = host or f"sts.{region}.amazonaws.com"
    req = AWSRequest(method="GET", url=f"https://{host}/?Action=GetCallerIdentity&Version=2011-06-15", headers={"x-k8s-aws-id": cluster_id})
    real_now = botocore.auth.get_current_datetime
    if at is not None:
        botocore.auth.get_current_datetime = lambda remove_tzinfo=True: at
    try:
        SigV4QueryAuth(Credentials(ident["akid"], ident["secret"], ident["token"]), "sts", region, expires=60).add_auth(req)
    finally:
        botocore.auth.get_current_datetime = real_now
    return req.url


def token_of(url):
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def with_query(url, edit):
    """The URL with its query pairs passed through edit(list) -> list."""
    parts = urllib.parse.urlsplit(url)
    pairs = edit(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe="")))


# --------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------


def deployment(name, app):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}},
    }


def node(name, ready):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown", "reason": "KubeletReady" if ready else "NodeStatusUnknown"}]}}


def pod(name, node_name, grace=30):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": grace, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


def aws_auth(ids):
    role_arn_pathless = f"arn:aws:iam::{ACCOUNT}:role/deployer"
    return {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "aws-auth", "namespace": "kube-system"},
        "data": {
            "mapUsers": f"- userarn: {ids['alice']['arn']}\n  username: alice\n  groups:\n  - viewers\n",
            # Role ARNs as hybrid writes them: without their path; one with
            # its path, which the ConfigMap mapper never matches.
            "mapRoles": f"- rolearn: {role_arn_pathless.replace('deployer', 'DEPLOYER')}\n  username: deployer:{{{{SessionName}}}}\n  groups:\n  - editors\n"
                        f"- roleARN: {ids['pathed']['arn']}\n  username: pathed\n  groups: [editors]\n",
        },
    }


def main():
    print("starting moto_server and the emulators", flush=True)
    moto = start_moto()
    ids = aws_identities(moto)
    tmp = tempfile.mkdtemp()
    tokens = os.path.join(tmp, "tokens.csv")
    with open(tokens, "w") as f:
        f.write('admin-token,kubernetes-admin,1,"system:masters"\n')
        f.write('nobody-token,nobody,2\n')
        f.write('node1-token,system:node:n1,3,"system:nodes"\n')
    port = start_emulator("--rbac", "--token-auth-file", tokens, "--iam-sts", moto, "--iam-cluster-id", CLUSTER_ID,
                          "--immutable", "--dead-nodes", "--grace-scale", "0.02")
    api = Api(port)
    ADMIN = "admin-token"

    # ---- authentication -------------------------------------------------
    status, body = api.call("GET", "/api/v1/namespaces/default/pods")
    check("no credentials: 401 Unauthorized Status", status == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, body)
    status, body = api.call("GET", "/_test/whoami", who=ADMIN)
    check("whoami (token file): user and groups", status == 200 and body["user"] == "kubernetes-admin" and body["groups"] == ["system:masters", "system:authenticated"], body)
    status, body = api.call("GET", "/api/v1/namespaces/default/pods", who="no-such-token")
    check("unknown bearer token: 401", status == 401, body)

    status, body = api.call("POST", "/api/v1/namespaces/kube-system/configmaps", aws_auth(ids), who=ADMIN)
    check("admin (system:masters) writes kube-system/aws-auth", status == 201, body)
    for name, role, subjects, ns in (
        ("viewers", "view", [{"kind": "Group", "name": "viewers"}], None),
        ("editors", "edit", [{"kind": "Group", "name": "editors"}], "default"),
    ):
        kind = "RoleBinding" if ns else "ClusterRoleBinding"
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings" if ns else "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        status, body = api.call("POST", path, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects}, who=ADMIN)
        check(f"admin binds {subjects[0]['name']} to {role}", status == 201, body)

    alice = token_of(presigned_url(ids["alice"]))
    status, body = api.call("GET", "/_test/whoami", who=alice)
    check("IAM user token (mapUsers, ARN with path): whoami", status == 200 and body.get("user") == "alice" and body.get("groups") == ["viewers", "system:authenticated"] and body.get("extra", {}).get("arn") == [ids["alice"]["arn"]], body)
    deployer = token_of(presigned_url(ids["deployer"]))
    status, body = api.call("GET", "/_test/whoami", who=deployer)
    check("assumed-role token (mapRoles, path-less ARN, other case, {{SessionName}} with @ -> -)", status == 200 and body.get("user") == "deployer:bob-example.com" and body.get("groups") == ["editors", "system:authenticated"], body)
    status, body = api.call("GET", "/_test/whoami", who=token_of(presigned_url(ids["pathed"])))
    check("role mapped with its path (arn:...:role/ops/pathed): never matches the canonical ARN, 401", status == 401 and "ARN is not mapped" in api.call("GET", "/_test/authlog")[1][-1]["reason"], body)
    status, body = api.call("GET", "/_test/whoami", who=token_of(presigned_url(ids["mallory"])))
    check("unmapped IAM user: 401", status == 401 and "ARN is not mapped" in api.call("GET", "/_test/authlog")[1][-1]["reason"], body)
    old = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=16)
    status, body = api.call("GET", "/_test/whoami", who=token_of(presigned_url(ids["alice"], at=old)))
    check("token signed 16 minutes ago: expired, 401", status == 401 and "is expired" in api.call("GET", "/_test/authlog")[1][-1]["reason"], body)
    recent = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=14)
    status, body = api.call("GET", "/_test/whoami", who=token_of(presigned_url(ids["alice"], at=recent)))
    check("token signed 14 minutes ago: still valid", status == 200, body)

    url = presigned_url(ids["alice"])
    bad = {
        # what: (token, what the authenticator says)
        "wrong prefix": ("k8s-aws-v2." + alice[len("k8s-aws-v1."):], "missing expected"),
        "padded base64": (alice + "==", "illegal base64"),
        "too large": (token_of(with_query(url, lambda p: p + [("X-Amz-Security-Token", "x" * 4000)])), "token is too large"),
        "http scheme": (token_of(url.replace("https://", "http://", 1)), 'unexpected scheme "http"'),
        "other host": (token_of(url.replace(f"sts.{REGION}.amazonaws.com", "sts.example.com", 1)), 'unexpected hostname "sts.example.com"'),
        "path /x": (token_of(url.replace(".amazonaws.com/?", ".amazonaws.com/x?", 1)), "unexpected path"),
        "duplicate parameter (Action, action)": (token_of(with_query(url, lambda p: p + [("action", "GetCallerIdentity")])), "duplicate query parameter"),
        "parameter not allowed": (token_of(with_query(url, lambda p: p + [("X-Amz-Foo", "1")])), 'non-whitelisted query parameter "X-Amz-Foo"'),
        "other action": (token_of(with_query(url, lambda p: [(k, "GetSessionToken" if k == "Action" else v) for k, v in p])), "unexpected action"),
        "x-k8s-aws-id not signed": (token_of(with_query(url, lambda p: [(k, "host" if k == "X-Amz-SignedHeaders" else v) for k, v in p])), "did not sign the x-k8s-aws-id header"),
        "X-Amz-Expires 901": (token_of(with_query(url, lambda p: [(k, "901" if k == "X-Amz-Expires" else v) for k, v in p])), "invalid X-Amz-Expires"),
        "signed for another cluster ID": (token_of(presigned_url(ids["alice"], cluster_id="other-cluster")), "SignatureDoesNotMatch"),
        "signature altered": (token_of(with_query(url, lambda p: [(k, ("0" * 64) if k == "X-Amz-Signature" else v) for k, v in p])), "SignatureDoesNotMatch"),
        "wrong secret key": (token_of(presigned_url(dict(ids["alice"], secret="not-the-secret"))), "SignatureDoesNotMatch"),
        "session credentials without their session token": (token_of(presigned_url(dict(ids["deployer"], token=None))), "session token"),
        "access key moto never issued": (token_of(presigned_url({"akid": "AKIAUNKNOWN000000000", "secret": "x", "token": None})), "InvalidClientTokenId"),
        "credential scoped to another region": (token_of(presigned_url(ids["alice"]).replace(f"%2F{REGION}%2F", "%2Fus-west-2%2F")), "scoped to a valid region"),
    }
    for what, (tok, why) in bad.items():
        status, body = api.call("GET", "/api/v1/namespaces/default/pods", who=tok)
        reason = api.call("GET", "/_test/authlog")[1][-1]["reason"]
        check(f"IAM token, {what}: 401 ({why})", status == 401 and why in reason, (status, body, reason))
    global_url = presigned_url(ids["alice"], host="sts.amazonaws.com", region="us-east-1")
    status, body = api.call("GET", "/_test/whoami", who=token_of(global_url))
    check("global endpoint sts.amazonaws.com (us-east-1 scope): valid", status == 200, body)

    # ---- RBAC: view, edit, admin ------------------------------------------
    status, body = api.call("GET", "/api/v1/namespaces/default/pods", who=alice)
    check("viewer lists pods", status == 200, body)
    status, body = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("web", "web"), who=alice)
    expected = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": 'deployments.apps is forbidden: User "alice" cannot create resource "deployments" in API group "apps" in the namespace "default"',
                "reason": "Forbidden", "details": {"group": "apps", "kind": "deployments"}, "code": 403}
    check("viewer cannot create a deployment: the real 403 body", status == 403 and body == expected, body)
    status, body = api.call("GET", "/api/v1/namespaces/kube-system/secrets/aws-auth", who=alice)
    check("viewer cannot read secrets (named object in the message and details)", status == 403 and body["message"] == 'secrets "aws-auth" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "kube-system"' and body["details"] == {"name": "aws-auth", "kind": "secrets"}, body)
    status, body = api.call("GET", "/api/v1/nodes", who=alice)
    check("viewer cannot list nodes (cluster scope message)", status == 403 and body["message"].endswith('cannot list resource "nodes" in API group "" at the cluster scope'), body)
    status, body = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", deployment("web", "web"), who=deployer)
    check("editor (RoleBinding in default) creates a deployment", status == 201, body)
    status, body = api.call("POST", "/apis/apps/v1/namespaces/kube-system/deployments", deployment("web", "web"), who=deployer)
    check("editor cannot create one in another namespace", status == 403, body)
    rb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "sneaky"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}, "subjects": [{"kind": "Group", "name": "editors"}]}
    status, body = api.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", rb, who=deployer)
    check("editor cannot create a rolebinding: exact message", status == 403 and body["message"] == 'rolebindings.rbac.authorization.k8s.io is forbidden: User "deployer:bob-example.com" cannot create resource "rolebindings" in API group "rbac.authorization.k8s.io" in the namespace "default"', body)
    status, body = api.call("GET", "/api/v1/namespaces/default/secrets", who=deployer)
    check("editor reads secrets", status == 200, body)
    status, body = api.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
                            dict(rb, metadata={"name": "admins"}, subjects=[{"kind": "User", "name": "alice"}]), who=ADMIN)
    check("admin binds alice to ClusterRole admin in default", status == 201, body)
    status, body = api.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["only-this"], "verbs": ["get"]}]}, who=alice)
    check("namespace admin creates a Role", status == 201, body)
    status, body = api.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "nobody-r"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "nobody"}]}, who=alice)
    check("namespace admin binds it", status == 201, body)
    status, _ = api.call("GET", "/api/v1/namespaces/default/configmaps/only-this", who="nobody-token")
    status2, _ = api.call("GET", "/api/v1/namespaces/default/configmaps/other", who="nobody-token")
    check("resourceNames: get only-this allowed (404: absent), other forbidden", status == 404 and status2 == 403, (status, status2))
    status, body = api.call("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "dangling"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"}, "subjects": [{"kind": "User", "name": "nobody"}]}, who=ADMIN)
    status, body = api.call("GET", "/api/v1/namespaces/default/configmaps/other", who="nobody-token")
    check("a binding to a missing Role: the RBAC error in the reason", status == 403 and body["message"].endswith(': RBAC: role.rbac.authorization.k8s.io "gone" not found'), body)
    status, body = api.call("GET", "/version", who="nobody-token")
    check("system:discovery: any authenticated user gets /version", status == 200, body)
    status, body = api.call("GET", "/healthz", who="nobody-token")
    check("... and /healthz", status == 200, body)
    status, body = api.call("GET", "/metrics", who="nobody-token")
    check("non-resource URL outside discovery: 403 'forbidden: ... path', details {}", status == 403 and body["message"] == 'forbidden: User "nobody" cannot get path "/metrics"' and body["details"] == {}, body)
    status, body = api.call("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", who=ADMIN)
    check("seeded ClusterRole view: aggregated rules, no secrets", status == 200 and body.get("aggregationRule") and any("pods" in r.get("resources", []) for r in body["rules"]) and not any("secrets" in r.get("resources", []) for r in body["rules"]), body)
    status, body = api.call("GET", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins", who=ADMIN)
    check("seeded kubeadm:cluster-admins binding", status == 200 and body["roleRef"]["name"] == "cluster-admin", body)

    # ---- the Node authorizer and NodeRestriction --------------------------
    for name in ("n1", "n2"):
        api.call("POST", "/api/v1/nodes", node(name, True), who=ADMIN)
    status, body = api.call("PATCH", "/api/v1/nodes/n1/status", {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}, who="node1-token", ctype="application/merge-patch+json")
    check("node n1 patches its own nodes/status", status == 200, body)
    status, body = api.call("PATCH", "/api/v1/nodes/n2/status", {"status": {"conditions": []}}, who="node1-token", ctype="application/merge-patch+json")
    check("node n1 cannot patch n2's status (NodeRestriction)", status == 403 and body["message"] == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"', body)
    status, body = api.call("GET", "/api/v1/nodes/n2", who="node1-token")
    check("node n1 cannot read Node n2", status == 403, body)
    status, body = api.call("GET", "/api/v1/namespaces/kube-system/secrets/x", who="node1-token")
    check("node: secrets need a pod relationship (not emulated): 403", status == 403 and "no relationship found between node 'n1'" in body["message"], body)

    # ---- immutable fields ----------------------------------------------------
    changed = deployment("web", "web")
    changed["spec"]["selector"]["matchLabels"]["tier"] = "x"
    changed["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    status, body = api.call("PUT", "/apis/apps/v1/namespaces/default/deployments/web", changed, who=ADMIN)
    check("PUT changing a Deployment's selector: 422 field is immutable", status == 422 and body["reason"] == "Invalid" and body["message"].startswith('Deployment.apps "web" is invalid: spec.selector: Invalid value: ') and body["message"].endswith(": field is immutable") and body["details"]["causes"][0]["field"] == "spec.selector", body)
    status, body = api.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=t", {"spec": {"selector": {"matchLabels": {"app": "other"}}}}, who=ADMIN, ctype="application/merge-patch+json")
    check("merge patch changing it: 422", status == 422 and "field is immutable" in body["message"], body)
    status, body = api.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=t&force=true", changed, who=ADMIN, ctype="application/apply-patch+yaml")
    check("apply changing it: 422", status == 422 and "field is immutable" in body["message"], body)
    status, body = api.call("PATCH", "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=t", {"spec": {"replicas": 3}}, who=ADMIN, ctype="application/merge-patch+json")
    check("changing replicas is fine", status == 200, body)
    status, body = api.call("PATCH", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/viewers", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}}, who=ADMIN, ctype="application/merge-patch+json")
    check("ClusterRoleBinding roleRef: 422 cannot change roleRef", status == 422 and body["message"].startswith('ClusterRoleBinding.rbac.authorization.k8s.io "viewers" is invalid: roleRef: Invalid value: ') and body["message"].endswith("cannot change roleRef"), body)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"}, "immutable": True, "data": {"a": "1"}}
    api.call("POST", "/api/v1/namespaces/default/configmaps", cm, who=ADMIN)
    status, body = api.call("PATCH", "/api/v1/namespaces/default/configmaps/frozen", {"data": {"a": "2"}}, who=ADMIN, ctype="application/merge-patch+json")
    check("immutable ConfigMap: data change 422", status == 422 and body["message"] == 'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set', body)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}
    api.call("POST", "/api/v1/namespaces/default/services", svc, who=ADMIN)
    status, body = api.call("PATCH", "/api/v1/namespaces/default/services/s", {"spec": {"clusterIP": "10.96.0.21"}}, who=ADMIN, ctype="application/merge-patch+json")
    check("Service clusterIP change: 422 may not change once set", status == 422 and "spec.clusterIPs[0]" in body["message"] and "may not change once set" in body["message"], body)
    svc2 = json.loads(json.dumps(svc))
    del svc2["spec"]["clusterIP"]
    status, body = api.call("PUT", "/api/v1/namespaces/default/services/s", svc2, who=ADMIN)
    check("PUT without clusterIP keeps the allocated one", status == 200 and body["spec"].get("clusterIP") == "10.96.0.20", body)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"selector": {"matchLabels": {"j": "1"}}, "manualSelector": True, "template": {"metadata": {"labels": {"j": "1"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}}
    api.call("POST", "/apis/batch/v1/namespaces/default/jobs", job, who=ADMIN)
    status, body = api.call("PATCH", "/apis/batch/v1/namespaces/default/jobs/j", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}, who=ADMIN, ctype="application/merge-patch+json")
    check("Job template change: 422 spec.template field is immutable", status == 422 and "spec.template: Invalid value" in body["message"] and body["message"].endswith("field is immutable"), body)

    # ---- dead nodes ---------------------------------------------------------
    api.call("POST", "/api/v1/nodes", node("dead", False), who=ADMIN)
    api.call("POST", "/api/v1/nodes", node("alive", True), who=ADMIN)
    api.call("POST", "/api/v1/namespaces/default/pods", pod("on-dead", "dead", grace=5), who=ADMIN)
    api.call("POST", "/api/v1/namespaces/default/pods", pod("on-alive", "alive", grace=5), who=ADMIN)
    api.call("POST", "/api/v1/namespaces/default/pods", pod("idle-on-dead", "dead"), who=ADMIN)
    api.call("DELETE", "/api/v1/namespaces/default/pods/on-dead", who=ADMIN)
    status, body = api.call("POST", "/api/v1/namespaces/default/pods/on-alive/eviction", {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-alive", "namespace": "default"}}, who=ADMIN)
    time.sleep(1.0)  # 10x the scaled grace period (5 s x 0.02)
    status, body = api.call("GET", "/api/v1/namespaces/default/pods/on-dead", who=ADMIN)
    check("pod deleted on a NotReady node stays Terminating", status == 200 and "deletionTimestamp" in body["metadata"], body)
    status, _ = api.call("GET", "/api/v1/namespaces/default/pods/on-alive", who=ADMIN)
    check("pod evicted on a Ready node is gone after its grace period", status == 404, status)
    api.call("DELETE", "/api/v1/nodes/dead", who=ADMIN)
    time.sleep(40 * 0.02 + 0.5)
    status, _ = api.call("GET", "/api/v1/namespaces/default/pods/on-dead", who=ADMIN)
    status2, _ = api.call("GET", "/api/v1/namespaces/default/pods/idle-on-dead", who=ADMIN)
    check("deleting the Node: PodGC removes its pods (terminating or not)", status == 404 and status2 == 404, (status, status2))

    # ---- concurrent writers and preconditions -------------------------------
    status, body = api.call("POST", "/_test/race", {"path": "/api/v1/nodes/n2", "merge": {"metadata": {"labels": {"other": "1"}}}, "times": 1})
    check("race registered", status == 200 and body["races"][0]["times"] == 1, body)
    _, read = api.call("GET", "/api/v1/nodes/n2", who=ADMIN)
    stale_rv = read["metadata"]["resourceVersion"]
    status, body = api.call("PATCH", "/api/v1/nodes/n2", {"metadata": {"resourceVersion": stale_rv, "labels": {"mine": "1"}}}, who=ADMIN, ctype="application/merge-patch+json")
    check("merge patch with the stale resourceVersion: 409 Conflict, exact message", status == 409 and body["reason"] == "Conflict" and body["message"] == 'Operation cannot be fulfilled on nodes "n2": the object has been modified; please apply your changes to the latest version and try again' and body["details"] == {"name": "n2", "kind": "nodes"}, body)
    _, fresh = api.call("GET", "/api/v1/nodes/n2", who=ADMIN)
    check("the other controller's write is there (manager other-controller), the race is spent", fresh["metadata"]["labels"].get("other") == "1" and any(m["manager"] == "other-controller" for m in fresh["metadata"].get("managedFields", [])) and api.call("GET", "/_test/race")[1]["races"] == [], fresh["metadata"])
    status, body = api.call("PATCH", "/api/v1/nodes/n2", {"metadata": {"resourceVersion": fresh["metadata"]["resourceVersion"], "labels": {"mine": "1"}}}, who=ADMIN, ctype="application/merge-patch+json")
    check("retry on the fresh read: 200", status == 200 and body["metadata"]["labels"] == {"other": "1", "mine": "1"}, body)
    api.call("POST", "/_test/race", {"path": "/api/v1/nodes/n1", "merge": {"spec": {"unschedulable": True}}, "times": 1})
    _, listed = api.call("GET", "/api/v1/nodes", who=ADMIN)
    item = next(i for i in listed["items"] if i["metadata"]["name"] == "n1")
    item.setdefault("spec", {})["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    status, body = api.call("PUT", "/api/v1/nodes/n1", item, who=ADMIN)
    check("a LIST triggers the race too; PUT from the list's copy: 409", status == 409, body)
    dep = deployment("web", "web")
    dep["metadata"]["resourceVersion"] = "1"
    status, body = api.call("PUT", "/apis/apps/v1/namespaces/default/deployments/web", dep, who=ADMIN)
    check("conflict message names group-qualified resources", status == 409 and body["message"].startswith('Operation cannot be fulfilled on deployments.apps "web"') and body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}, body)

    # ---- TLS: client certificates and tokens on one port --------------------
    tls_port = start_emulator("--tls", os.path.join(PKI, "ca.crt"), os.path.join(PKI, "ca.key"), "10.42.0.10", "--rbac", "--iam-sts", moto, "--iam-cluster-id", CLUSTER_ID)
    tls = Api(tls_port, tls=True)
    admin_cert = mint_cert(tmp, "hybrid-admin", ["kubeadm:cluster-admins"])
    other_cert = mint_cert(tmp, "carol", ["developers", "qa"])
    status, body = tls.call("GET", "/_test/whoami", who=admin_cert)
    check("TLS whoami: CN is the user, O values the groups", status == 200 and body == {"user": "hybrid-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"], "authenticator": "x509"}, body)
    status, body = tls.call("POST", "/api/v1/namespaces/kube-system/configmaps", aws_auth(ids), who=admin_cert)
    check("kubeadm:cluster-admins (seeded binding to cluster-admin) writes", status == 201, body)
    status, body = tls.call("GET", "/api/v1/namespaces/default/pods", who=other_cert)
    check("a certificate of other groups: 403 with the real message", status == 403 and body["message"] == 'pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "default"', body)
    status, body = tls.call("GET", "/_test/whoami", who=token_of(presigned_url(ids["deployer"])))
    check("HTTPS without a client certificate, with an IAM token", status == 200 and body["user"] == "deployer:bob-example.com", body)
    status, body = tls.call("GET", "/api/v1/namespaces/default/pods")
    check("HTTPS with neither: 401", status == 401, body)

    # ---- Calico 3.32 ------------------------------------------------------------
    v3 = Api(start_emulator("--calico", "3.32", "--calico-v3", "--operator"))
    status, body = v3.call("PATCH", "/apis/projectcalico.org/v3/ipamconfigurations/default?fieldManager=hybrid", {"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration", "metadata": {"name": "default"}, "spec": {"strictAffinity": True}}, ctype="application/apply-patch+yaml")
    check("3.32 projectcalico.org/v3 IPAMConfiguration: structural defaults autoAllocateBlocks=true, maxBlocksPerHost=0", status == 201 and body["spec"] == {"autoAllocateBlocks": True, "maxBlocksPerHost": 0, "strictAffinity": True}, body)
    status, body = v3.call("PATCH", "/apis/projectcalico.org/v3/ipamconfigurations/default?fieldManager=hybrid", {"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration", "metadata": {"name": "default"}, "spec": {"strictAffinity": True, "noSuchField": 1}}, ctype="application/apply-patch+yaml")
    check("3.32: an undeclared field is refused", status == 422 and "noSuchField" in body["message"], body)
    status, body = v3.call("PATCH", "/apis/projectcalico.org/v3/felixconfigurations/default?fieldManager=hybrid", {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": "default"}}, ctype="application/apply-patch+yaml")
    check("3.32 v3 FelixConfiguration: spec is required", status == 422 and "spec: Required value" in body["message"], body)
    status, body = v3.call("PATCH", "/apis/operator.tigera.io/v1/installations/default?fieldManager=hybrid", {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}, "spec": {"calicoNetwork": {"ipPools": [{"cidr": "10.244.0.0/16"}]}, "cni": {"type": "Calico", "binDir": "/opt/cni/bin"}}}, ctype="application/apply-patch+yaml")
    check("3.32 Installation: fields new in 3.32 (cni.binDir) accepted, defaults filled", status == 201 and body["spec"]["calicoNetwork"]["ipPools"][0]["disableBGPExport"] is False, body)
    time.sleep(0.3)
    status, body = v3.call("GET", "/apis/operator.tigera.io/v1/installations/default")
    check("3.32 Installation: the operator's write-back passes the full schema", status == 200 and body["spec"].get("variant") == "Calico", body)
    v1 = Api(start_emulator("--calico", "3.32"))
    status, body = v1.call("POST", "/apis/crd.projectcalico.org/v1/ipamconfigs", {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMConfig", "metadata": {"name": "default"}, "spec": {"strictAffinity": True}})
    check("3.32 crd.projectcalico.org/v1 IPAMConfig: autoAllocateBlocks required, no default", status == 422 and "spec.autoAllocateBlocks: Required value" in body["message"], body)

    print(f"\n{len(failures)} failed" if failures else "\nall passed", flush=True)
    return 1 if failures else 0


def mint_cert(tmp, cn, groups):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(PKI, "ca.crt"), "rb").read())
    ca_key = serialization.load_pem_private_key(open(os.path.join(PKI, "ca.key"), "rb").read(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    t = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups] + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(t - datetime.timedelta(minutes=5)).not_valid_after(t + datetime.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = os.path.join(tmp, f"{cn}.crt"), os.path.join(tmp, f"{cn}.key")
    open(cert_path, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
    open(key_path, "wb").write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
    sys.exit(code)
