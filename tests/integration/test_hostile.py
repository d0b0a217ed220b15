"""Hostile clients: idle and trickling connections by the thousand, clients that hang up
mid-body, oversized headers and strings. Real requests must still be answered promptly, and
nothing half-received may be applied.

The slowloris scenario prints the latency of the real requests; the 50 ms p99 goal is read
from that line (timings on a shared machine are reported, not asserted tightly: the assertion
only catches real blocking, which shows as seconds, refusals or timeouts).
"""

import re
import resource
import socket
import statistics
import threading
import time
import unittest
import zlib

from harness import (API_KEY, Service, ServiceTestCase, dumps, matching_event,
                     non_matching_event, unique, unique_image_id, write_config)

HOSTILE = 1000
REAL = 200


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= need


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Trickler(threading.Thread):
    """Keeps hostile connections open: some idle, some sending a header byte at a time, some a
    body byte at a time (slowloris and its slow-POST cousin)."""

    def __init__(self, port, n):
        super().__init__(daemon=True)
        self.port = port
        self.socks = []
        self.stop = threading.Event()
        for i in range(n):
            s = connect(self.port)
            kind = i % 3
            if kind == 1:
                s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
            elif kind == 2:
                s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() +
                          b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            self.socks.append((kind, s))

    def run(self):
        while not self.stop.wait(0.5):
            for kind, s in self.socks:
                try:
                    if kind == 1:
                        s.send(b"X")  # a header that never ends
                    elif kind == 2:
                        s.send(b" ")  # a body that never ends
                except OSError:
                    pass

    def open_count(self):
        """Connections the service has not closed (a closed one reads EOF or fails)."""
        n = 0
        for _, s in self.socks:
            s.setblocking(False)
            try:
                n += 0 if s.recv(1) == b"" else 1
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self):
        self.stop.set()
        for _, s in self.socks:
            s.close()


class SlowlorisTest(ServiceTestCase):
    def test_real_requests_are_answered_while_1000_hostile_connections_are_open(self):
        if not raise_fd_limit(HOSTILE + 256):
            self.skipTest("this process cannot open %d descriptors" % (HOSTILE + 256))
        svc = Service(self).start()
        hostile = Trickler(svc.port, HOSTILE)
        self.addCleanup(hostile.close)
        hostile.start()
        time.sleep(1.0)
        self.assertEqual(hostile.open_count(), HOSTILE, "hostile connections were refused")
        latencies = []
        for i in range(REAL):
            doc = (matching_event(image_id=unique_image_id(), event_id=unique()) if i % 10 == 0
                   else non_matching_event(unique()))
            t0 = time.monotonic()
            r = svc.post_events(dumps(doc), timeout=10)
            latencies.append(time.monotonic() - t0)
            self.assertEqual(r.status, 202, r.body)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print("\nslowloris: %d real requests with %d hostile connections open: p50 %.1f ms, "
              "p99 %.1f ms, max %.1f ms" % (REAL, HOSTILE, p50 * 1e3, p99 * 1e3,
                                            latencies[-1] * 1e3))
        self.assertLess(p99, 1.0, "real requests waited behind hostile connections")
        # The hostile ones are still open (they were never refused), and the service is fine.
        self.assertGreater(hostile.open_count(), HOSTILE * 0.9)
        self.assertEqual(svc.request("GET", "/readyz", auth=False).status, 200)

    def test_silent_connections_are_closed_after_the_timeout(self):
        svc = Service(self, env={"TRAILHOOK_CONNECTION_TIMEOUT_SECONDS": "2"}).start()
        idle = [connect(svc.port) for _ in range(20)]
        half = connect(svc.port)
        half.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")
        deadline = time.monotonic() + 10
        for s in idle + [half]:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            self.assertEqual(s.recv(1024), b"", "a silent connection was kept past its timeout")
            s.close()
        self.assertEqual(svc.post_events(dumps(non_matching_event(unique()))).status, 202)

    def test_over_the_connection_limit_new_ones_wait_their_turn(self):
        svc = Service(self, env={"TRAILHOOK_MAX_CONNECTIONS": "16",
                                 "TRAILHOOK_CONNECTION_TIMEOUT_SECONDS": "2"}).start()
        hogs = [connect(svc.port) for _ in range(16)]
        self.addCleanup(lambda: [s.close() for s in hogs])
        time.sleep(0.3)
        # The 17th is not served while the 16 hold their slots...
        with self.assertRaises(OSError):
            svc.post_events(dumps(non_matching_event(unique())), timeout=1)
        # ...and is once the silent ones time out.
        time.sleep(2.5)
        self.assertEqual(svc.post_events(dumps(non_matching_event(unique()))).status, 202)


class HalfSentTest(ServiceTestCase):
    def test_a_client_that_hangs_up_mid_body_leaves_nothing_behind(self):
        svc = Service(self).start()
        image = unique_image_id()
        body = dumps(matching_event(image_id=image, event_id=unique()))
        for cut in (1, len(body) // 2, len(body) - 1):
            s = connect(svc.port)
            s.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\nX-Api-Key: %s\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (API_KEY.encode(), len(body)) + body[:cut])
            s.close()
        time.sleep(0.5)
        self.assertFalse([a for a in svc.alerts() if image in a["dedup_key"]])
        # The same event sent whole is new: nothing of the cut ones was counted.
        self.assertAccepted(svc.post_events(body), 1, 1)
        svc.settle_console()
        self.assertEqual(len([a for a in svc.console_alerts() if image in a["dedup_key"]]), 1)


class SizeLimitTest(ServiceTestCase):
    def test_headers_over_max_header_bytes_get_431(self):
        svc = Service(self, env={"TRAILHOOK_MAX_HEADER_BYTES": "8192"}).start()
        ok = svc.post_events(dumps(non_matching_event(unique())), headers={"X-Pad": "a" * 4000})
        self.assertEqual(ok.status, 202)
        big = svc.post_events(dumps(non_matching_event(unique())), headers={"X-Pad": "a" * 9000})
        self.assertEqual(big.status, 431)
        many = svc.post_events(dumps(non_matching_event(unique())),
                               headers={"X-H%d" % i: "v" for i in range(1500)})
        self.assertEqual(many.status, 431)
        self.assertEqual(svc.post_events(dumps(non_matching_event(unique()))).status, 202)

    def test_a_string_over_max_string_bytes_gets_413_naming_its_place(self):
        config = write_config(self, {"max_string_bytes": 4096})
        svc = Service(self, config=config).start()
        doc = non_matching_event(unique())
        doc["userAgent"] = "u" * 5000
        r = svc.post_events(dumps(doc))
        self.assertEqual(r.status, 413, r.body)
        self.assertEqual(r.json["error"], "JSON string longer than 4096 bytes")
        self.assertEqual(r.json["line"], 1)
        self.assertIn("column", r.json)
        doc["userAgent"] = "u" * 3000
        self.assertEqual(svc.post_events(dumps(doc)).status, 202)


    def test_a_gzip_bomb_gets_413_without_inflating(self):
        # 1 GiB of blanks in about 1 MB: under max_body_bytes, 16 x max_inflated_bytes.
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        blanks = b" " * (1 << 20)
        bomb = b"".join([z.compress(b"[")] + [z.compress(blanks) for _ in range(1024)] +
                        [z.flush()])
        self.assertLess(len(bomb), 2 << 20)
        svc = Service(self).start()
        r = svc.post_events(bomb, headers={"Content-Encoding": "gzip"})
        self.assertEqual(r.status, 413, r.body)
        self.assertEqual(r.json["error"], "gzip body inflates to more than 67108864 bytes")
        with open("/proc/%d/status" % svc.proc.pid) as f:
            peak = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024
        # The limit's 64 MiB and their copies (more under AddressSanitizer), never the 1 GiB.
        self.assertLess(peak, 512 << 20, "the bomb was inflated further than the limit")
        self.assertEqual(svc.post_events(dumps(non_matching_event(unique()))).status, 202)


if __name__ == "__main__":
    unittest.main()
