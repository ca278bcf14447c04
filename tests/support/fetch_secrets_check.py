"""Runs the control plane's rendered fetch-secrets.py the way a boot would,
on loopback: an IMDSv2 stand-in serves a session token and role
credentials, moto serves SSM. Also checks the script's SigV4 signature
against botocore's signer (the reference implementation) for the same
request, since moto does not verify signatures.

usage: fetch_secrets_check.py SCRIPT SSM_ENDPOINT PARAMETER OUT_DIR [--join-token | --ecr-password]
(--join-token: the worker's mode, a plain token parameter; --ecr-password: a
bake's ECR login, asked of SSM_ENDPOINT as ECR.) Prints a JSON report.
"""
import datetime
import http.server
import importlib.util
import json
import os
import subprocess
import sys
import threading

import botocore.auth
import botocore.awsrequest
import botocore.credentials

script, ssm_endpoint, parameter, out_dir = sys.argv[1:5]
join_token = sys.argv[5:] == ["--join-token"]
ecr = sys.argv[5:] == ["--ecr-password"]
CREDS = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "Token": "session-token-1"}
ROLE = "hybrid-test-control-plane"
seen = []


class Imds(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self):
        seen.append(("PUT", self.path, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, b"imds-session")
        self.reply(400, b"")

    def do_GET(self):
        seen.append(("GET", self.path, self.headers.get("X-aws-ec2-metadata-token")))
        # IMDSv2 only: no session token, no answer (what hybrid's launch sets).
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session":
            return self.reply(401, b"")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self.reply(200, ROLE.encode())
        if self.path == base + ROLE:
            return self.reply(200, json.dumps(dict(CREDS, Code="Success")).encode())
        self.reply(404, b"")


imds = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Imds)
threading.Thread(target=imds.serve_forever, daemon=True).start()

env = dict(os.environ, HYBRID_IMDS="http://127.0.0.1:%d" % imds.server_address[1], HYBRID_SSM_ENDPOINT=ssm_endpoint,
           HYBRID_ECR_ENDPOINT=ssm_endpoint)
pki = os.path.join(out_dir, "pki")
token_file = os.path.join(out_dir, "token")
if ecr:
    argv = [sys.executable, script, "--ecr-password", "us-east-1", "https://api.ecr.us-east-1.amazonaws.com"]
elif join_token:
    argv = [sys.executable, script, "--join-token", parameter, "us-east-1", "https://ssm.us-east-1.amazonaws.com", token_file]
else:
    argv = [sys.executable, script, parameter, "us-east-1", "https://ssm.us-east-1.amazonaws.com", pki, token_file]
run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)

# The signature, against botocore for the same request and time.
spec = importlib.util.spec_from_file_location("fetch_secrets", script)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
now = datetime.datetime(2026, 12, 1, 12, 30, 45, tzinfo=datetime.timezone.utc)
body = json.dumps({"Name": parameter, "WithDecryption": True}).encode()
ours = mod.signed_headers("ssm.us-east-1.amazonaws.com", "us-east-1", "ssm", "AmazonSSM.GetParameter", body,
                          (CREDS["AccessKeyId"], CREDS["SecretAccessKey"], CREDS["Token"]), now)
request = botocore.awsrequest.AWSRequest(method="POST", url="https://ssm.us-east-1.amazonaws.com/", data=body,
                                         headers={"Content-Type": "application/x-amz-json-1.1",
                                                  "X-Amz-Target": "AmazonSSM.GetParameter"})
signer = botocore.auth.SigV4Auth(botocore.credentials.Credentials(CREDS["AccessKeyId"], CREDS["SecretAccessKey"], CREDS["Token"]),
                                 "ssm", "us-east-1")
signer._get_current_timestamp = lambda: now.strftime("%Y%m%dT%H%M%SZ")


class FixedTime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return now.replace(tzinfo=None)

    @classmethod
    def now(cls, tz=None):
        return now if tz else now.replace(tzinfo=None)


botocore.auth.datetime.datetime = FixedTime
signer.add_auth(request)


def mode(path):
    return oct(os.stat(path).st_mode & 0o777) if os.path.exists(path) else None


def read(path):
    return open(path).read() if os.path.exists(path) else None


print(json.dumps({
    "exit": run.returncode,
    "stdout": run.stdout,
    "stderr": run.stderr[-2000:],
    "ca_crt": read(os.path.join(pki, "ca.crt")),
    "ca_key": read(os.path.join(pki, "ca.key")),
    "token": read(token_file),
    "modes": {"ca.crt": mode(os.path.join(pki, "ca.crt")), "ca.key": mode(os.path.join(pki, "ca.key")), "token": mode(token_file)},
    "imds": seen,
    "ours": ours["authorization"],
    "botocore": request.headers["Authorization"],
}))
