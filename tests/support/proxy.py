#!/usr/bin/env python3
"""A loopback forward proxy that counts what goes through it.

It speaks the two ways clients use a proxy: CONNECT host:port (a tunnel, for
https:// targets; what kube and the AWS SDK do for TLS endpoints) and
absolute-form requests (GET http://host:port/path, for http:// targets;
what the AWS SDK does for a plain-HTTP endpoint such as moto). It forwards
only to loopback: a test must never reach anything else.

Usage: proxy.py PORT [HOST] — listens on HOST (default 127.0.0.1; another
loopback address such as 127.0.0.2 lets NO_PROXY tell the proxy from the
servers) and prints "ready" once listening.
`GET /_stats` in origin form (to the proxy itself) answers
{"tunnels": {"host:port": n}, "forwarded": {"host:port": n}}.
"""

import json
import socket
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

LOCK = threading.Lock()
TUNNELS = Counter()
FORWARDED = Counter()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        if host.strip("[]") not in LOOPBACK:
            self.send_error(403, "this proxy reaches loopback only")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        with LOCK:
            TUNNELS[self.path] += 1
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        upstream.settimeout(None)
        t = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        t.start()
        pump(self.connection, upstream)
        t.join()
        upstream.close()
        self.close_connection = True

    def forward(self):
        if self.path == "/_stats":
            with LOCK:
                body = json.dumps({"tunnels": dict(TUNNELS), "forwarded": dict(FORWARDED)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        url = urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in LOOPBACK:
            self.send_error(403, "this proxy forwards http://loopback only")
            return
        target = f"{url.hostname}:{url.port or 80}"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = url.path + (f"?{url.query}" if url.query else "")
        headers = "".join(
            f"{k}: {v}\r\n" for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection", "keep-alive")
        )
        request = f"{self.command} {path or '/'} HTTP/1.0\r\n{headers}Connection: close\r\n\r\n".encode() + body
        try:
            with socket.create_connection((url.hostname, url.port or 80), timeout=60) as upstream:
                upstream.sendall(request)
                chunks = []
                while True:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except OSError:
            self.send_error(502)
            return
        with LOCK:
            FORWARDED[target] += 1
        raw = b"".join(chunks)
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        self.send_response(int(status[1]), status[2] if len(status) > 2 else "")
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(k, v.strip())
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        self.wfile.write(rest)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward


def main():
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    server = ThreadingHTTPServer((host, int(sys.argv[1])), Proxy)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
