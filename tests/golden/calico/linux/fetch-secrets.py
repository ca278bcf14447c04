#!/usr/bin/env python3
# hybrid: fetch the cluster secrets (CA certificate, CA key, init token) on
# the control plane, or the join token on a worker, from SSM Parameter Store
# with the node's instance profile, so no secret travels in user data
# (which DescribeInstanceAttribute and every host-network pod can read).
#
# Standard library only: Ubuntu and Amazon Linux images have python3 but not
# always the AWS CLI. Credentials come from IMDSv2; requests are signed with
# Signature Version 4 as AWS documents it ("Create a signed AWS API request",
# IAM user guide). A fresh instance profile can take a while to show up in
# instance metadata, so every step is retried for a few minutes.
#
# usage: fetch-secrets.py PARAMETER REGION SSM_ENDPOINT PKI_DIR TOKEN_FILE
#        fetch-secrets.py --join-token PARAMETER REGION SSM_ENDPOINT TOKEN_FILE
#        fetch-secrets.py --ecr-password REGION ECR_ENDPOINT   (prints it; a bake's private pulls)
# Environment (for tests): HYBRID_IMDS (metadata base URL), HYBRID_SSM_ENDPOINT.
import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.parse
import urllib.request

IMDS = os.environ.get("HYBRID_IMDS", "http://169.254.169.254")


def imds_token():
    req = urllib.request.Request(IMDS + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    return urllib.request.urlopen(req, timeout=5).read().decode()


def imds_get(path, token):
    req = urllib.request.Request(IMDS + path, headers={"X-aws-ec2-metadata-token": token})
    return urllib.request.urlopen(req, timeout=5).read().decode()


def credentials():
    """(access key, secret key, session token) of the instance profile's role."""
    token = imds_token()
    base = "/latest/meta-data/iam/security-credentials/"
    role = imds_get(base, token).split("\n")[0].strip()
    if not role:
        raise RuntimeError("the instance has no instance profile role yet")
    c = json.loads(imds_get(base + role, token))
    return c["AccessKeyId"], c["SecretAccessKey"], c.get("Token", "")


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(host, region, service, target, body, creds, now):
    """The headers of a SigV4-signed POST / with a JSON body."""
    access, secret, session = creds
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-target": target,
    }
    if session:
        headers["x-amz-security-token"] = session
    names = sorted(headers)
    canonical = "\n".join([
        "POST",
        "/",
        "",
        "".join(name + ":" + headers[name].strip() + "\n" for name in names),
        ";".join(names),
        hashlib.sha256(body).hexdigest(),
    ])
    scope = "/".join([day, region, service, "aws4_request"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access, scope, ";".join(names), signature)
    return headers


def call(service, target, payload, region, endpoint, creds):
    """One AWS JSON-protocol call (SSM, ECR): the parsed answer."""
    host = urllib.parse.urlparse(endpoint).netloc
    body = json.dumps(payload).encode()
    now = datetime.datetime.now(datetime.timezone.utc)
    headers = signed_headers(host, region, service, target, body, creds, now)
    req = urllib.request.Request(endpoint.rstrip("/") + "/", data=body, method="POST", headers=headers)
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def get_parameter(name, region, endpoint, creds):
    endpoint = os.environ.get("HYBRID_SSM_ENDPOINT") or endpoint
    return call("ssm", "AmazonSSM.GetParameter", {"Name": name, "WithDecryption": True}, region, endpoint, creds)["Parameter"]["Value"]


def ecr_password(region, endpoint, creds):
    """The password of ECR's registry login in `region` (user AWS)."""
    endpoint = os.environ.get("HYBRID_ECR_ENDPOINT") or endpoint
    answer = call("ecr", "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken", {}, region, endpoint, creds)
    user, _, password = base64.b64decode(answer["authorizationData"][0]["authorizationToken"]).decode().partition(":")
    if user != "AWS" or not password:
        raise RuntimeError("ECR answered an unexpected login")
    return password


def write_private(path, text, mode):
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path + ".tmp", mode)
    os.replace(path + ".tmp", path)


def retried(what, ask):
    """`ask(credentials)`, retried for about ten minutes; None on failure."""
    last = None
    for attempt in range(60):
        try:
            return ask(credentials())
        except Exception as e:  # any failure: IMDS, IAM propagation, network
            last = e
            time.sleep(min(2 + attempt, 10))
    print("hybrid: could not read %s: %s" % (what, last), file=sys.stderr)
    return None


def fetch(parameter, region, endpoint):
    """The parameter's value."""
    return retried(parameter, lambda creds: get_parameter(parameter, region, endpoint, creds))


def main(argv):
    if len(argv) == 4 and argv[1] == "--ecr-password":
        region, endpoint = argv[2:]
        password = retried("an ECR login in " + region, lambda creds: ecr_password(region, endpoint, creds))
        if password is None:
            return 1
        print(password)
        return 0
    if len(argv) == 6 and argv[1] == "--join-token":
        parameter, region, endpoint, token_file = argv[2:]
        token = fetch(parameter, region, endpoint)
        if token is None:
            return 1
        write_private(token_file, token.strip(), 0o600)
        return 0
    if len(argv) != 6:
        print("usage: fetch-secrets.py PARAMETER REGION SSM_ENDPOINT PKI_DIR TOKEN_FILE\n"
              "       fetch-secrets.py --join-token PARAMETER REGION SSM_ENDPOINT TOKEN_FILE\n"
              "       fetch-secrets.py --ecr-password REGION ECR_ENDPOINT", file=sys.stderr)
        return 64
    parameter, region, endpoint, pki_dir, token_file = argv[1:]
    value = fetch(parameter, region, endpoint)
    if value is None:
        return 1
    stored = json.loads(value)
    os.makedirs(pki_dir, mode=0o755, exist_ok=True)
    write_private(os.path.join(pki_dir, "ca.crt"), stored["ca_crt"], 0o644)
    write_private(os.path.join(pki_dir, "ca.key"), stored["ca_key"], 0o600)
    write_private(token_file, stored["token"], 0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
