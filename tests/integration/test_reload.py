"""Configuration reload: SIGHUP and POST /-/reload put a new configuration in effect between
requests, or keep the running one (and say so) when the new one is bad."""

import os
import re
import signal
import time
import unittest

from harness import Service, ServiceTestCase, dumps, free_port, make_temp_dir, matching_event

KEY_A = "reload-key-aaaaaaaaaaaaaaaa"
KEY_B = "reload-key-bbbbbbbbbbbbbbbb"


def gauge(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


class ReloadTest(ServiceTestCase):
    def setUp(self):
        self.dir = make_temp_dir(self)
        self.path = os.path.join(self.dir, "trailhook.yml")

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def post(self, svc, key):
        return svc.request("POST", "/events", body=dumps(matching_event()), auth=False,
                           headers={"Content-Type": "application/json", "X-Api-Key": key})

    def metrics(self, svc, key, port=None):
        saved = svc.port
        svc.port = port or saved
        try:
            r = svc.request("GET", "/metrics", auth=False, headers={"X-Api-Key": key})
        finally:
            svc.port = saved
        self.assertEqual(r.status, 200)
        return r.body.decode()

    def wait_log(self, svc, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in svc.stderr_text():
                return
            time.sleep(0.05)
        self.fail("no %r in the log:\n%s" % (needle, svc.stderr_text()))

    def test_sighup_puts_new_credentials_in_effect(self):
        self.write("api_keys: [%s]\n" % KEY_A)
        svc = Service(self, auth=False, config=self.path).start()
        self.assertEqual(self.post(svc, KEY_A).status, 202)
        before = gauge(self.metrics(svc, KEY_A),
                       "trailhook_config_last_reload_success_timestamp_seconds")
        time.sleep(0.05)
        self.write("api_keys: [%s]\n" % KEY_B)
        svc.proc.send_signal(signal.SIGHUP)
        self.wait_log(svc, "configuration reloaded")
        self.assertEqual(self.post(svc, KEY_A).status, 401)
        self.assertEqual(self.post(svc, KEY_B).status, 202)
        text = self.metrics(svc, KEY_B)
        self.assertEqual(gauge(text, "trailhook_config_last_reload_successful"), 1)
        self.assertGreater(
            gauge(text, "trailhook_config_last_reload_success_timestamp_seconds"), before)

    def test_a_bad_file_keeps_the_running_configuration(self):
        self.write("api_keys: [%s]\n" % KEY_A)
        svc = Service(self, auth=False, config=self.path).start()
        self.write("api_keys: [%s]\nmax_body_bytes: lots\n" % KEY_B)
        svc.proc.send_signal(signal.SIGHUP)
        self.wait_log(svc, "keeping the running one")
        self.assertIn("max_body_bytes", svc.stderr_text())
        self.assertEqual(self.post(svc, KEY_A).status, 202)
        self.assertEqual(self.post(svc, KEY_B).status, 401)
        self.assertEqual(
            gauge(self.metrics(svc, KEY_A), "trailhook_config_last_reload_successful"), 0)
        self.assertIsNone(svc.proc.poll(), "the service stopped")

    def test_post_reload_on_the_admin_listener(self):
        admin = free_port()
        self.write("api_keys: [%s]\nadmin_listen: 127.0.0.1:%d\n" % (KEY_A, admin))
        svc = Service(self, auth=False, config=self.path).start()
        self.write("api_keys: [%s]\nadmin_listen: 127.0.0.1:%d\n" % (KEY_B, admin))
        # Not on the ingest listener.
        r = svc.request("POST", "/-/reload", auth=False, headers={"X-Api-Key": KEY_A})
        self.assertEqual(r.status, 404)
        ingest = svc.port
        svc.port = admin
        try:
            r = svc.request("POST", "/-/reload", auth=False, headers={"X-Api-Key": "wrong"})
            self.assertEqual(r.status, 401)
            r = svc.request("POST", "/-/reload", auth=False, headers={"X-Api-Key": KEY_A})
            self.assertEqual(r.status, 202, r)
        finally:
            svc.port = ingest
        self.wait_log(svc, "configuration reloaded")
        self.assertEqual(self.post(svc, KEY_B).status, 202)

    def test_restart_only_settings_keep_their_running_values(self):
        self.write("api_keys: [%s]\nworkers: 2\n" % KEY_A)
        svc = Service(self, auth=False, config=self.path).start()
        self.write("api_keys: [%s]\nworkers: 3\nlisten: 127.0.0.1:%d\n" % (KEY_A, free_port()))
        svc.proc.send_signal(signal.SIGHUP)
        self.wait_log(svc, "configuration reloaded")
        self.assertIn("only after a restart", svc.stderr_text())
        self.assertEqual(self.post(svc, KEY_A).status, 202)


if __name__ == "__main__":
    unittest.main()
