#!/usr/bin/env python3
"""A local HTTP sink for trying responder's http.request actions (make sink).

Answers 200 to every request on 127.0.0.1:9999 (or the port given) and prints what it received.
"""
import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode(errors="replace")
        print(f"{self.command} {self.path} Idempotency-Key={self.headers.get('Idempotency-Key')} {body}", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = _handle

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9999
print(f"sink listening on 127.0.0.1:{port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
