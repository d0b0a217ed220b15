"""A loopback stand-in for a Slack incoming webhook, in its own process.

  python3 slack_receiver.py PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE once it accepts connections), answers
every POST with 200 "ok" as Slack does, and keeps for each message the CLOCK_MONOTONIC time it
had fully arrived and the AMI IDs it names. GET /messages returns them as JSON:
{"messages": [[arrived, ["ami-…", …]], …]}.

Why a process rather than a thread of the benchmark: in one interpreter the receiver and the
client that times the 2xx take turns on the GIL, which shifts both timestamps."""

import http.server
import json
import os
import re
import sys
import threading
import time

AMI_ID = re.compile(rb"ami-[0-9A-Za-z]+")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

messages = []
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each answer goes out as one segment with Nagle off: headers and body written apart would
    # wait for the sender's delayed ACK, adding 40 ms to every delivery.
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        arrived = time.monotonic()
        ids = sorted({m.decode() for m in AMI_ID.findall(body)})
        with lock:
            messages.append((arrived, ids))
        self.wfile.write(OK)

    def do_GET(self):
        with lock:
            doc = json.dumps({"messages": messages}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(doc)))
        self.end_headers()
        self.wfile.write(doc)

    def log_message(self, *args):
        pass


def main(port_file):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, port_file)  # whole, or not there yet
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
