"""A store whose disk fills up or turns read-only: ingest answers 503 (never a 2xx that was not
committed), /readyz fails, and the service recovers by itself when the disk does.

The state directory lives on a small tmpfs mounted for the test, so the errors are the real
ones SQLite gets from the kernel (ENOSPC, EROFS). Mounting needs root (CI runs as root); without
it the tests are skipped, saying why.
"""

import os
import subprocess
import tempfile
import time
import unittest

from harness import Service, ServiceTestCase, dumps, matching_event, unique, unique_image_id

MOUNT_SIZE = "3m"


def try_mount(directory):
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + MOUNT_SIZE, "tmpfs", directory],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return None if r.returncode == 0 else "mount -t tmpfs failed: %s" % r.stderr.decode().strip()


def fill(directory):
    """Writes a file until the file system is full. @return its path."""
    path = os.path.join(directory, "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    # The last partial block may still fit; make sure not even a page is left.
    try:
        with open(path, "ab") as f:
            while True:
                f.write(b"\0" * 512)
                f.flush()
    except OSError:
        pass
    return path


class DiskFaultTest(ServiceTestCase):
    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="trailhook-disk-")
        why = try_mount(self.mnt)
        if why is not None:
            os.rmdir(self.mnt)
            self.skipTest(why)
        self.addCleanup(os.rmdir, self.mnt)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mnt])
        self.state = os.path.join(self.mnt, "state")
        # No destination: console. A short housekeeping probe is not configurable; waits below
        # allow for its 5 s period.
        self.svc = Service(self, state_dir=self.state).start()

    def post_match(self, image):
        return self.svc.post_events(dumps(matching_event(image_id=image, event_id=unique())))

    def wait_ready(self, want, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.svc.request("GET", "/readyz", auth=False)
            if (r.status == 200) == want:
                return r
            time.sleep(0.2)
        self.fail("/readyz did not become %s within %ss" % ("ready" if want else "unready",
                                                            timeout))

    def assert_refused_and_unready(self, images, reason):
        for image in images:
            r = self.post_match(image)
            self.assertEqual(r.status, 503, r.body)
            self.assertEqual(r.json["error"],
                             "the store cannot take writes now; nothing was applied")
            self.assertTrue(r.header("Retry-After"))
        # The failed commit makes /readyz fail at once, not at the next probe.
        r = self.svc.request("GET", "/readyz", auth=False)
        self.assertEqual(r.status, 503)
        self.assertIn(reason, r.json["reasons"])
        self.assertEqual(self.svc.request("GET", "/healthz", auth=False).status, 200)

    def assert_recovered(self, refused):
        self.wait_ready(True)
        # What was refused was not applied; sent again (as EventBridge retries), it is.
        recent = {a["dedup_key"].rsplit(":", 1)[1] for a in self.svc.alerts(1000)}
        self.assertFalse(recent & set(refused), "a refused request left an alert behind")
        for image in refused:
            r = self.post_match(image)
            self.assertAccepted(r, 1, 1)
        recent = {a["dedup_key"].rsplit(":", 1)[1] for a in self.svc.alerts(1000)}
        self.assertLessEqual(set(refused), recent)
        # Each alert was announced once: the refused attempts sent nothing.
        for image in refused:
            self.svc.settle_console()
            self.assertEqual(len([a for a in self.svc.console_alerts()
                                  if image in a["dedup_key"]]), 1)

    def test_full_disk_gets_503_then_recovers_when_space_returns(self):
        first = unique_image_id()
        self.assertAccepted(self.post_match(first), 1, 1)
        filler = fill(self.mnt)
        refused = [unique_image_id() for _ in range(5)]
        self.assert_refused_and_unready(refused, "the store is not writable")
        # Still full a probe later: still unready, still 503.
        time.sleep(6)
        self.assertEqual(self.svc.request("GET", "/readyz", auth=False).status, 503)
        self.assertEqual(self.post_match(unique_image_id()).status, 503)
        os.unlink(filler)
        self.assert_recovered(refused)
        # The alert committed before the disk filled is intact; a restart reads everything.
        self.assertEqual(self.svc.stop(), 0)
        self.svc.start()
        keys = {a["dedup_key"].rsplit(":", 1)[1] for a in self.svc.alerts(1000)}
        self.assertLessEqual({first} | set(refused), keys)

    def test_a_read_only_state_dir_stops_the_start_with_a_clear_message(self):
        # A file system cannot be remounted read-only under a process that writes to it, so
        # this is the start on one (as after an ext4 errors=remount-ro and a restart).
        self.assertAccepted(self.post_match(unique_image_id()), 1, 1)
        self.assertEqual(self.svc.stop(), 0)
        subprocess.run(["mount", "-o", "remount,ro", self.mnt], check=True)
        try:
            svc = Service(self, state_dir=self.state)
            svc.spawn()
            self.assertEqual(svc.wait_exit(15), 2)
            self.assertIn("read-only", svc.stderr_text())
        finally:
            subprocess.run(["mount", "-o", "remount,rw", self.mnt], check=True)
        self.svc.start()
        self.assertAccepted(self.post_match(unique_image_id()), 1, 1)

    def test_the_probe_notices_a_full_disk_without_any_request(self):
        self.wait_ready(True)
        filler = fill(self.mnt)
        self.wait_ready(False)
        os.unlink(filler)
        self.wait_ready(True)
        self.assertAccepted(self.post_match(unique_image_id()), 1, 1)


if __name__ == "__main__":
    unittest.main()
