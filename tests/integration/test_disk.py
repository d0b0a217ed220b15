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

from harness import (Service, ServiceTestCase, dumps, matching_event, outbox_cli, unique,
                     unique_image_id, write_config)
from receiver import Receiver, webhook_ok

MOUNT_SIZE = "16m"


def try_mount(directory):
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + MOUNT_SIZE, "tmpfs", directory],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return None if r.returncode == 0 else "mount -t tmpfs failed: %s" % r.stderr.decode().strip()


def fill(directory):
    """Writes a file until the file system is full, down to its last block. @return its path.
    Unbuffered: a buffered file would keep the last bytes that did not fit and fail on close."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
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

    def test_a_delivery_the_full_disk_cannot_record_is_not_sent_again(self):
        # Alerts wait in the outbox (receiver down), the disk fills, the receiver comes back:
        # each is delivered, the "done" cannot be written, and yet nobody is paged twice.
        hook = Receiver(default=webhook_ok(), name="hook").start()
        self.addCleanup(hook.stop)
        hook.down()
        self.svc.stop()
        config = write_config(self, {"destinations": [{
            "name": "hook", "type": "webhook", "url": hook.url("/hook"),
            "timeout_ms": 1000, "connect_timeout_ms": 500}]})
        self.svc = Service(self, state_dir=self.state, config=config).start()
        images = [unique_image_id() for _ in range(40)]
        for image in images:
            self.assertAccepted(self.post_match(image), 1, 1)
        filler = fill(self.mnt)
        # Squeeze out whatever room the database's log still had.
        for _ in range(10):
            self.post_match(unique_image_id())
        hook.up()
        hook.wait_delivered(len(images), timeout=30)
        time.sleep(3)  # lanes would re-send within milliseconds if they forgot
        refused = "mark delivered: database or disk is full" in self.svc.stderr_text()
        counts = {}
        for r in hook.delivered():
            counts[r.json["id"]] = counts.get(r.json["id"], 0) + 1
        self.assertEqual(len(counts), len(images))
        self.assertEqual(max(counts.values()), 1, "an alert was sent again while the disk was full")
        os.unlink(filler)
        try:
            self.wait_ready(True)
        except AssertionError:
            print(subprocess.run(["df", "-h", self.mnt], stdout=subprocess.PIPE).stdout.decode())
            print(subprocess.run(["ls", "-la", self.state], stdout=subprocess.PIPE).stdout.decode())
            print(self.svc.request("GET", "/readyz", auth=False).body)
            print("\n".join(self.svc.stderr_text().splitlines()[-8:]))
            raise
        # Once writable, the outcomes are recorded: a restart sends nothing again.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, rows = outbox_cli(self.state, "list", "--pending")
            if not rows:
                break
            time.sleep(0.5)
        self.assertEqual(rows, [])
        self.svc.stop()
        self.svc.start()
        time.sleep(2)
        self.assertEqual(hook.count(), len(images), hook.all())
        if not refused:
            self.skipTest("the database's log had room for every outcome: nothing was refused")

    def test_the_probe_notices_a_full_disk_without_any_request(self):
        self.wait_ready(True)
        filler = fill(self.mnt)
        self.wait_ready(False)
        os.unlink(filler)
        self.wait_ready(True)
        self.assertAccepted(self.post_match(unique_image_id()), 1, 1)


if __name__ == "__main__":
    unittest.main()
