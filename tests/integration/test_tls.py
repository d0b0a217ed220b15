"""TLS ingest: EventBridge API destinations only call HTTPS endpoints.

A self-signed certificate is made for each test run (openssl); the service serves it from
tls_cert_file / tls_key_file, and real TLS clients that trust (or do not trust) it talk to it.
"""

import http.client
import os
import signal
import ssl
import subprocess
import time
import unittest

import harness
from harness import API_KEY, Service, ServiceTestCase, dumps, make_temp_dir, matching_event


def make_certificate(directory):
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


class TlsTest(ServiceTestCase):
    def setUp(self):
        self.dir = make_temp_dir(self)
        self.cert, self.key = make_certificate(self.dir)

    def https(self, svc, cafile, method, path, body=None, headers=None):
        ctx = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection("127.0.0.1", svc.port, context=ctx, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def start_tls(self, key=None):
        svc = Service(self, env={"TRAILHOOK_TLS_CERT_FILE": self.cert,
                                 "TRAILHOOK_TLS_KEY_FILE": key or self.key})
        svc.spawn()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if svc.proc.poll() is not None:
                return svc
            try:
                if self.https(svc, self.cert, "GET", "/healthz")[0] == 200:
                    return svc
            except OSError:
                time.sleep(0.05)
        self.fail("the TLS listener never answered:\n" + svc.stderr_text())

    def test_ingest_over_https_with_a_trusted_certificate(self):
        svc = self.start_tls()
        status, body = self.https(svc, self.cert, "POST", "/events", dumps(matching_event()),
                                  {"Content-Type": "application/json", "X-Api-Key": API_KEY})
        self.assertEqual(status, 202, body)
        self.assertIn(b'"matched":1', body)

    def test_a_client_that_does_not_trust_it_fails_the_handshake(self):
        svc = self.start_tls()
        ctx = ssl.create_default_context()  # the system CAs only
        conn = http.client.HTTPSConnection("127.0.0.1", svc.port, context=ctx, timeout=10)
        with self.assertRaises(ssl.SSLCertVerificationError):
            conn.request("GET", "/healthz")
        conn.close()

    def test_plain_http_gets_no_answer(self):
        svc = self.start_tls()
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
        with self.assertRaises((http.client.HTTPException, OSError)):
            conn.request("GET", "/healthz")
            conn.getresponse()
        conn.close()

    def test_healthcheck_follows_the_tls_listener(self):
        svc = self.start_tls()
        r = harness.run_cli(["healthcheck"], env=svc.env())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_sighup_serves_a_renewed_certificate(self):
        svc = self.start_tls()
        old_cert = os.path.join(self.dir, "old-cert.pem")
        with open(self.cert, "rb") as f, open(old_cert, "wb") as g:
            g.write(f.read())
        renewed = make_temp_dir(self)
        cert2, key2 = make_certificate(renewed)
        # Renewal in place, as cert-manager or a secret mount does it.
        for src, dst in ((cert2, self.cert), (key2, self.key)):
            with open(src, "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
        svc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "TLS certificate reloaded" not in svc.stderr_text():
            self.assertLess(time.monotonic(), deadline, svc.stderr_text())
            time.sleep(0.05)
        self.assertEqual(self.https(svc, self.cert, "GET", "/healthz")[0], 200)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.https(svc, old_cert, "GET", "/healthz")
        status, _ = self.https(svc, self.cert, "POST", "/events", dumps(matching_event()),
                               {"Content-Type": "application/json", "X-Api-Key": API_KEY})
        self.assertEqual(status, 202)

    def test_a_key_that_is_not_pem_stops_the_start(self):
        bad = os.path.join(self.dir, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a key\n")
        svc = self.start_tls(key=bad)
        self.assertEqual(svc.proc.wait(10), 2)
        svc.join_readers()
        self.assertIn("tls_key_file", svc.stderr_text())


if __name__ == "__main__":
    unittest.main()
