#!/usr/bin/env python3
"""HTTP receiver on 127.0.0.1 for the plugin tests: records each request, verifies shop signatures.

  http_sink.py --port P --out STATE/requests.jsonl [--hmac-secret S] [--max-skew-s 300]

Each request becomes one JSON line: method, path, query, headers (lower-case), body, and
"signature_ok" (true/false, or null when no --hmac-secret). Answers:
  /redirect?to=URL     302 to URL
  /slow?ms=N           sleeps N ms, then 200
  /big?bytes=N         200 with an N-byte body
  /headers?count=N&bytes=M  200 with N extra headers of M bytes each, and a short body
  /status/NNN          status NNN with a JSON error body {"code": ..., "message": ...}
  /sms/twilio/...      201 with a Twilio-style JSON body {"sid": "SM...", "status": "queued"}
  anything else        200 {"id": "msg-<n>"} -- except that with --hmac-secret a POST
                       whose X-Rekindle-Signature does not verify gets 401.
Shop signature: hex(HMAC-SHA256(secret, "<X-Rekindle-Timestamp>.<raw body>")) in
X-Rekindle-Signature as "sha256=<hex>"; the timestamp (Unix seconds) must be within
--max-skew-s of now.
"""
import argparse
import hashlib
import hmac
import itertools
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hmac-secret")
    ap.add_argument("--max-skew-s", type=int, default=300)
    ap.add_argument("--quiet", action="store_true", help="do not record requests (benchmarks)")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("refusing to bind to a non-loopback address")
    out = open(a.out, "a", buffering=1)
    lock = threading.Lock()
    counter = itertools.count(1)
    secret = a.hmac_secret.encode() if a.hmac_secret else None

    def verify(headers, body):
        if secret is None:
            return None
        ts = headers.get("x-rekindle-timestamp", "")
        sig = headers.get("x-rekindle-signature", "")
        try:
            if abs(time.time() - int(ts)) > a.max_skew_s:
                return False
        except ValueError:
            return False
        want = "sha256=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, sig)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY the separate header and body writes meet Nagle's
        # algorithm and delayed ACK: ~40 ms per keep-alive request on loopback.
        disable_nagle_algorithm = True

        def reply(self, status, body, content_type="application/json", extra=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            headers = {k.lower(): v for k, v in self.headers.items()}
            signature_ok = verify(headers, body) if self.command == "POST" else None
            n = next(counter)
            if not a.quiet:
                record = {"n": n, "ts": time.time(), "method": self.command, "path": url.path,
                          "query": query, "headers": headers,
                          "body": body.decode("utf-8", "replace"), "signature_ok": signature_ok}
                with lock:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if url.path == "/redirect":
                return self.reply(302, b"", extra=[("Location", query.get("to", "/"))])
            if url.path == "/slow":
                time.sleep(int(query.get("ms", "1000")) / 1000)
                return self.reply(200, b'{"slow": true}')
            if url.path == "/big":
                return self.reply(200, b"x" * int(query.get("bytes", "0")), "text/plain")
            if url.path == "/headers":
                pad = "x" * int(query.get("bytes", "100"))
                extra = [("X-Pad-%d" % i, pad) for i in range(int(query.get("count", "10")))]
                return self.reply(200, b"short", "text/plain", extra)
            if url.path.startswith("/status/"):
                code = int(url.path.rsplit("/", 1)[1])
                return self.reply(code, json.dumps({"code": code, "message": "forced by test"}).encode())
            if url.path.startswith("/sms/twilio/"):
                return self.reply(201, json.dumps({"sid": "SM%032x" % n, "status": "queued"}).encode())
            if signature_ok is False:
                return self.reply(401, b'{"code": "invalid_signature", "message": "signature check failed"}')
            return self.reply(200, json.dumps({"id": "msg-%d" % n}).encode())

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    print("READY %d" % a.port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    main()
