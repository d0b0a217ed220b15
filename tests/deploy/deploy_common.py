"""Helpers the deployment checks share: a free loopback port, one HTTP request."""

import http.client
import os
import sys

# One free_port for every test: the integration harness's (standard library only).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import free_port, terminate  # noqa: E402,F401  (re-exported for the deployment checks)


def http_request(method, port, path, body=None, headers=None, timeout=5):
    """@return (status, {lower-case header: value}, body bytes) of one request to 127.0.0.1."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()
