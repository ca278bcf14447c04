"""A fault-injecting HTTP proxy for tests: sits between hybrid and moto
(loopback only) and knows which AWS operation each request is (EC2 and IAM
send `Action=` in a form body, SSM an `X-Amz-Target` header).

Two ways to inject faults:

- random, seeded: a share RATE of requests gets one of throttle, internal,
  drop-before, drop-after;
- exact rules, set by a test through the proxy's own API, each firing once
  at the Nth request of one operation (counted from when the rule is set):

    POST /_proxy/rules  [{"op": "CreateVpc", "nth": 1, "fault": "drop-after"}]
    POST /_proxy/rules  [{"op": "RunInstances", "nth": 2, "fault": "kill-after",
                          "pid_file": "/tmp/x/pid"}]
    POST /_proxy/rules  [{"op": "RunInstances", "match": "InstanceType=m6i.xlarge",
                          "always": true, "fault": "no-capacity"}]
    GET  /_proxy/log    -> [["CreateVpc", "drop-after"], ["DescribeVpcs", "pass"], ...]
    GET  /_proxy/stats  -> {"max_in_flight": 7}  (most requests in their LATENCY
                           delay at once: with a delay, the client's calls in flight)
    POST /_proxy/reset  -> forget rules and log

A rule with "match" counts only requests whose body contains that text;
"always" fires on every such request instead of the Nth; "times" fires on
that many requests from the Nth on; "seconds" fires on every such request
for that long from the Nth on (AWS's eventual consistency is a time, not a
count: a new instance profile is refused for tens of seconds); "every": K
fires on every Kth such request; "once_each" fires on the first request
of each distinct call (operation and body) and lets its retries through:
every call throttled once, deterministically. op "*" matches every
operation.

Faults: throttle, internal, no-capacity (InsufficientInstanceCapacity) and
denied (UnauthorizedOperation for EC2, AccessDeniedException for SSM, as an
IAM policy without that action gives; all answered here, never forwarded); drop-before
(the connection closes, nothing reaches moto); drop-after (moto does it, the
answer is lost: the nastiest case); garbage-after (moto does it, the answer
is cut off mid-body); kill-before / kill-after (SIGKILL to the pid in
pid_file before or after forwarding, then the connection closes: a crash at
that exact call); image-pending (moto does it, and every image in the
answer reads as still `pending`, as a real CreateImage stays for minutes:
moto makes images available at once).

What real AWS answers and moto never does (messages as AWS words them):
profile-not-ready (RunInstances: InvalidParameterValue "Value (...) for
parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile
name", while IAM propagates a new profile); dependency (DependencyViolation,
while network interfaces of terminated instances detach); unsupported
(Unsupported: the instance type is not offered in the subnet's zone);
iam-not-visible (IAM NoSuchEntity for a role made a moment ago);
spot-capacity (InsufficientInstanceCapacity "There is no Spot capacity
available that matches your request."); shutting-down (moto does it, and
every instance the answer calls terminated is still shutting-down); empty
(moto does it, and the answer's item set is empty: a just-made resource not
yet visible to Describe).

usage: fault_proxy.py LISTEN_PORT TARGET_URL SEED RATE [LATENCY]
LATENCY seconds are added to every request (to make runs slow enough to
interrupt).
"""
import http.client
import http.server
import json
import os
import random
import re
import signal
import sys
import threading
import time
import urllib.parse

listen_port, target, seed, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
latency = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
target = urllib.parse.urlparse(target)
# FAULT_PROXY_TRACE=FILE: one line per call (seconds since start, operation,
# fault), to see which calls of a run wait for which (the latency bench).
trace = open(os.environ["FAULT_PROXY_TRACE"], "a") if os.environ.get("FAULT_PROXY_TRACE") else None
started = time.monotonic()
rng = random.Random(seed)
lock = threading.Lock()
rules = []  # dicts: op, nth, fault, pid_file, seen
log = []
in_flight = {"now": 0, "max": 0}


def ec2_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
            f'<Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>').encode()


EC2_THROTTLE = ec2_error("RequestLimitExceeded", "Request limit exceeded.")
EC2_INTERNAL = ec2_error("InternalError", "An internal error has occurred.")
EC2_NO_CAPACITY = ec2_error("InsufficientInstanceCapacity",
                            "We currently do not have sufficient capacity in the Availability Zone you requested.")
EC2_DENIED = ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation.")


EC2_ERRORS = {
    "profile-not-ready": ec2_error("InvalidParameterValue", "Value (hybrid-profile) for parameter iamInstanceProfile.name is invalid. "
                                   "Invalid IAM Instance Profile name"),
    "dependency": ec2_error("DependencyViolation", "resource has a dependent object"),
    "unsupported": ec2_error("Unsupported", "Your requested instance type is not supported in your requested Availability Zone. "
                             "Please retry your request by not specifying an Availability Zone or choosing another one."),
    "spot-capacity": ec2_error("InsufficientInstanceCapacity", "There is no Spot capacity available that matches your request."),
}
# IAM (the awsQuery protocol) words its errors in an ErrorResponse.
def iam_error(status, code, message):
    return status, (f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
                    f'<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>').encode()


IAM_ERRORS = {
    # IAM is eventually consistent: a role made a moment ago can be unknown
    # to the next call (hashicorp/terraform-provider-aws#6079).
    "iam-not-visible": iam_error(404, "NoSuchEntity", "The role with name hybrid-node cannot be found."),
}
# The item sets of the Describe answers hybrid reads, for the `empty` fault.
ITEM_SETS = re.compile(rb"<(reservationSet|vpcSet|subnetSet|internetGatewaySet|securityGroupInfo|routeTableSet|imagesSet)>.*?</\1>", re.S)



def operation(headers, body):
    amz_target = headers.get("X-Amz-Target") or ""
    if amz_target:
        return amz_target.rsplit(".", 1)[-1]
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return form.get("Action", ["?"])[0]


def pick(op, body):
    """The fault for this request of `op`: an exact rule first, else random."""
    with lock:
        # Every rule of this operation counts the request, fired or not.
        firing = None
        for r in rules:
            if r["op"] in (op, "*") and not r.get("done") and (r["match"] or "") in body:
                r["seen"] += 1
                if r["once_each"]:
                    key = (op, body)
                    fires = key not in r["calls"]
                    r["calls"].add(key)
                elif r["seconds"] is not None:
                    if r["seen"] >= r["nth"] and r["since"] is None:
                        r["since"] = time.monotonic()
                    fires = r["since"] is not None and time.monotonic() - r["since"] < r["seconds"]
                    r["done"] = r["since"] is not None and not fires
                elif r["every"]:
                    fires = r["seen"] % r["every"] == 0
                else:
                    last = r["nth"] + r["times"] - 1
                    fires = r["always"] or r["nth"] <= r["seen"] <= last
                    r["done"] = not r["always"] and r["seen"] == last
                if firing is None and fires:
                    firing = r
        if firing:
            return firing["fault"], firing.get("pid_file")
        if rate and rng.random() < rate:
            return rng.choice(["throttle", "internal", "drop-before", "drop-after"]), None
        return "pass", None


def kill(pid_file):
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
    except (OSError, ValueError) as e:
        print(f"fault proxy: could not kill from {pid_file}: {e}", file=sys.stderr, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/_proxy/log":
            with lock:
                return self.reply(200, json.dumps(log).encode())
        if self.path == "/_proxy/stats":
            with lock:
                return self.reply(200, json.dumps({"max_in_flight": in_flight["max"]}).encode())
        self.forward()

    def do_POST(self):
        if self.path == "/_proxy/rules":
            new = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"[]")
            with lock:
                for r in new:
                    rules.append({"op": r["op"], "nth": int(r.get("nth", 1)), "fault": r["fault"],
                                  "pid_file": r.get("pid_file"), "match": r.get("match"),
                                  "always": bool(r.get("always")), "times": int(r.get("times", 1)), "seen": 0,
                                  "seconds": r.get("seconds"), "since": None, "every": int(r.get("every", 0)),
                                  "once_each": bool(r.get("once_each")), "calls": set()})
            return self.reply(200, b"{}")
        if self.path == "/_proxy/reset":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                rules.clear()
                log.clear()
                in_flight["max"] = in_flight["now"]
            return self.reply(200, b"{}")
        self.forward()

    def reply(self, status, payload, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def hang_up(self):
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if latency:
            # In flight: counted while the client surely still waits (the
            # delay), not while an answer already sent is being closed.
            with lock:
                in_flight["now"] += 1
                in_flight["max"] = max(in_flight["max"], in_flight["now"])
            time.sleep(latency)
            with lock:
                in_flight["now"] -= 1
        op = operation(self.headers, body)
        fault, pid_file = ("pass", None) if self.path.startswith("/moto-api") else pick(op, body.decode("utf-8", "replace"))
        with lock:
            log.append([op, fault])
            if trace:
                trace.write(f"{time.monotonic() - started:8.3f} {op} {fault}\n")
                trace.flush()
        is_json = bool(self.headers.get("X-Amz-Target"))
        if fault == "kill-before":
            kill(pid_file)
            return self.hang_up()
        if fault == "drop-before":
            return self.hang_up()
        if fault == "no-capacity":
            return self.reply(500, EC2_NO_CAPACITY, "text/xml")
        if fault in EC2_ERRORS:
            return self.reply(400, EC2_ERRORS[fault], "text/xml")
        if fault in IAM_ERRORS:
            return self.reply(*IAM_ERRORS[fault], "text/xml")
        if fault == "denied":
            if is_json:
                payload = ('{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/tester '
                           'is not authorized to perform: ssm:%s"}' % op).encode()
                return self.reply(400, payload, "application/x-amz-json-1.1")
            return self.reply(403, EC2_DENIED, "text/xml")
        if fault in ("throttle", "internal"):
            if is_json:
                kind = "ThrottlingException" if fault == "throttle" else "InternalServerError"
                payload = ('{"__type":"%s","message":"injected"}' % kind).encode()
                return self.reply(400 if fault == "throttle" else 500, payload, "application/x-amz-json-1.1")
            payload = EC2_THROTTLE if fault == "throttle" else EC2_INTERNAL
            return self.reply(503 if fault == "throttle" else 500, payload, "text/xml")
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if fault == "kill-after":
            kill(pid_file)
            return self.hang_up()
        if fault == "drop-after":
            return self.hang_up()
        if fault == "shutting-down":
            data = re.sub(rb"(<instanceState>\s*<code>)48(</code>\s*<name>)terminated(</name>)", rb"\g<1>32\g<2>shutting-down\g<3>", data)
        if fault == "empty":
            data = ITEM_SETS.sub(lambda m: b"<" + m.group(1) + b"/>", data)
        if fault == "image-pending":
            data = data.replace(b"<imageState>available</imageState>", b"<imageState>pending</imageState>")
        if fault == "garbage-after":
            # A complete HTTP answer whose body is cut in half: the SDK
            # cannot parse it, though the call happened.
            data = data[: max(1, len(data) // 2)]
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", listen_port), Handler)
print("ready", flush=True)
server.serve_forever()
