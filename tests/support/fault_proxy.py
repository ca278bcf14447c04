"""A fault-injecting HTTP proxy for tests: sits between hybrid and moto and,
with seeded randomness, answers some requests itself with throttling or
server errors, drops connections before forwarding, or forwards and then
drops the response (the nastiest case: the call happened, the client does
not know). Loopback only.

usage: fault_proxy.py LISTEN_PORT TARGET_URL SEED RATE [LATENCY]
RATE is the probability (0..1) that a request gets a fault; LATENCY seconds
are added to every request (to make runs slow enough to interrupt).
"""
import http.client
import http.server
import random
import sys
import threading
import time
import urllib.parse

listen_port, target, seed, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
latency = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
target = urllib.parse.urlparse(target)
rng = random.Random(seed)
lock = threading.Lock()
counts = {}

EC2_THROTTLE = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                b'<Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>')
EC2_INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>InternalError</Code>'
                b'<Message>An internal error has occurred.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>')


def pick():
    with lock:
        if rng.random() >= rate:
            return "pass"
        return rng.choice(["throttle", "internal", "drop-before", "drop-after"])


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.forward()

    def do_POST(self):
        self.forward()

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if latency:
            time.sleep(latency)
        fault = pick() if not self.path.startswith("/moto-api") else "pass"
        with lock:
            counts[fault] = counts.get(fault, 0) + 1
        is_ssm = "AmazonSSM" in (self.headers.get("X-Amz-Target") or "")
        if fault == "drop-before":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault in ("throttle", "internal"):
            if is_ssm:
                kind = "ThrottlingException" if fault == "throttle" else "InternalServerError"
                payload = ('{"__type":"%s","message":"injected"}' % kind).encode()
                status, ctype = (400 if fault == "throttle" else 500), "application/x-amz-json-1.1"
            else:
                payload = EC2_THROTTLE if fault == "throttle" else EC2_INTERNAL
                status, ctype = 503 if fault == "throttle" else 500, "text/xml"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if fault == "drop-after":
            self.close_connection = True
            self.connection.shutdown(2)
            return
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
