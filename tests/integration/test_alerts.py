"""Alerts as users see them: dedup, the console line, durability, the new-account set."""

import copy
import json
import re
import time
import unittest

import harness
from harness import (RULE_ID, RULE_TITLE, Service, ServiceTestCase, dumps, iso_utc, load_fixture,
                     matching_event, run_cli, unique, unique_image_id, with_ids)

ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


class DedupTest(ServiceTestCase):
    def setUp(self):
        self.svc = Service(self).start()

    def post_one(self, ev, matched=1):
        body = self.assertAccepted(self.svc.post_events(dumps(ev)), 1, matched)
        self.assertEqual(len(body["alerts"]), matched, body)
        return body["alerts"][0] if matched else None

    def test_same_event_twice_counts_once(self):
        ev = matching_event()
        first = self.post_one(ev)
        self.assertEqual(len(self.svc.wait_console(first)), 1, "no console line for the alert")
        again = self.post_one(ev)  # an EventBridge retry: same eventID
        self.assertEqual(again, first)
        self.svc.settle_console()
        self.assertEqual(len(self.svc.console_alerts(first)), 1, "a retry notified again")
        alert = self.svc.alert(first)
        self.assertIsNotNone(alert)
        self.assertEqual(alert["event_count"], 1, alert)

    def test_same_event_twice_in_one_request_counts_once(self):
        ev = matching_event()
        body = self.assertAccepted(self.svc.post_events(dumps([ev, ev])), 2, 2)
        self.assertEqual(len(body["alerts"]), 1, body)
        self.svc.settle_console()
        self.assertEqual(len(self.svc.console_alerts(body["alerts"][0])), 1)
        self.assertEqual(self.svc.alert(body["alerts"][0])["event_count"], 1)

    def test_second_event_for_the_same_image_joins_the_alert(self):
        image = unique_image_id()
        first = self.post_one(matching_event(image_id=image))
        self.svc.wait_console(first)
        second = self.post_one(matching_event(image_id=image))
        self.assertEqual(second, first)
        self.svc.settle_console()
        self.assertEqual(len(self.svc.console_alerts(first)), 1, "the second event paged again")
        alert = self.svc.alert(first)
        self.assertEqual(alert["event_count"], 2, alert)
        same_image = [a for a in self.svc.alerts(1000) if image in json.dumps(a)]
        self.assertEqual(len(same_image), 1, same_image)

    def test_different_image_is_a_second_alert(self):
        a = self.post_one(matching_event())
        b = self.post_one(matching_event())
        self.assertNotEqual(a, b)
        self.assertEqual(len(self.svc.wait_console(a)), 1)
        self.assertEqual(len(self.svc.wait_console(b)), 1)
        self.svc.settle_console()
        self.assertEqual(len(self.svc.console_alerts(a)), 1)
        self.assertEqual(len(self.svc.console_alerts(b)), 1)
        for alert_id in (a, b):
            self.assertEqual(self.svc.alert(alert_id)["event_count"], 1)

    def test_same_image_in_another_region_is_a_second_alert(self):
        image = unique_image_id()
        a = self.post_one(matching_event(image_id=image))
        ev = matching_event(image_id=image)
        ev["awsRegion"] = "eu-west-1"
        b = self.post_one(ev)
        self.assertNotEqual(a, b)

    def test_console_line(self):
        ev = matching_event()
        image = ev["requestParameters"]["imageId"]
        alert_id = self.post_one(ev)
        lines = self.svc.wait_console(alert_id)
        self.assertEqual(len(lines), 1, self.svc.stdout_lines)
        line = lines[0]
        self.assertEqual(line["id"], alert_id)
        self.assertEqual(line["rule"], RULE_ID)
        self.assertEqual(line["title"], RULE_TITLE)
        self.assertEqual(line["severity"], "Medium")
        self.assertIn("was modified to allow it to be launched by anyone", line["description"])
        self.assertIn("Determine if the AMI is intended to be publicly accessible",
                      line["runbook"])
        self.assertEqual(line["reference"],
                         "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/sharingamis-intro.html")
        ctx = line["context"]
        for key in ("eventName", "eventSource", "awsRegion", "recipientAccountId",
                    "sourceIPAddress", "userAgent", "userIdentity"):
            self.assertEqual(ctx.get(key), ev[key], "context.%s" % key)
        summary = line["summary_attributes"]
        self.assertEqual(summary.get("userAgent"), ev["userAgent"])
        self.assertEqual(summary.get("sourceIpAddress"), "111.111.111.111")
        self.assertEqual(summary.get("recipientAccountId"), "123456789012")
        self.assertEqual(summary.get("p_any_aws_arns"), [
            "arn:aws:iam::123456789012:role/example-role",
            "arn:aws:sts::123456789012:assumed-role/example-role/example-user"])
        self.assertEqual(line["event_count"], 1)
        self.assertRegex(line["first_seen"], ISO_TIME)
        self.assertRegex(line["last_seen"], ISO_TIME)
        remediation = line["remediation"]
        self.assertIsInstance(remediation, list)
        self.assertGreaterEqual(len(remediation), 1)
        commands = [r["command"] if isinstance(r, dict) else r for r in remediation]
        for c in commands:
            self.assertIsInstance(c, str)
            self.assertTrue(c.startswith("aws "), c)
            self.assertIn(image, c)
            self.assertIn("us-west-2", c)
        self.assertTrue(any("modify-image-attribute" in c or "reset-image-attribute" in c
                            for c in commands), commands)
        # GET /alerts shows the same alert.
        stored = self.svc.alert(alert_id)
        for key in ("rule", "title", "severity", "event_count", "remediation", "context"):
            self.assertEqual(stored.get(key), line[key], key)

    def test_console_line_of_an_eventbridge_event(self):
        env = with_ids(load_fixture("eventbridge_ami_made_public.json"), event_id=unique(),
                       image_id=unique_image_id())
        detail = env["detail"]
        alert_id = self.post_one(env)
        line = self.svc.wait_console(alert_id)[0]
        ctx = line["context"]
        self.assertEqual(ctx["eventName"], "ModifyImageAttribute")
        self.assertEqual(ctx["eventSource"], "ec2.amazonaws.com")
        self.assertEqual(ctx["awsRegion"], "us-east-1")
        self.assertEqual(ctx["sourceIPAddress"], "172.58.139.66")
        self.assertEqual(ctx["userAgent"], "signin.amazonaws.com")
        self.assertEqual(ctx["userIdentity"], detail["userIdentity"])
        # This real capture has no recipientAccountId: Panther's placeholder.
        self.assertEqual(ctx["recipientAccountId"], "<MISSING_ACCOUNT_ID>")
        commands = [r["command"] if isinstance(r, dict) else r for r in line["remediation"]]
        self.assertTrue(all(detail["requestParameters"]["imageId"] in c for c in commands))
        self.assertTrue(all("us-east-1" in c for c in commands))


class DurabilityTest(ServiceTestCase):
    def test_alert_survives_kill_9(self):
        first = Service(self).start()
        ev = matching_event()
        body = self.assertAccepted(first.post_events(dumps(ev)), 1, 1)
        alert_id = body["alerts"][0]
        first.kill9()
        printed_before = len(first.console_alerts(alert_id))

        second = Service(self, state_dir=first.state_dir).start()
        if printed_before == 0:
            lines = second.wait_console(alert_id, 1, timeout=15)
            self.assertGreaterEqual(len(lines), 1,
                                    "an acknowledged alert was never printed after the restart")
        total = printed_before + len(second.console_alerts(alert_id))
        self.assertGreaterEqual(total, 1)
        stored = second.alert(alert_id)
        self.assertIsNotNone(stored, "the alert is not in the store after kill -9")
        self.assertEqual(stored["event_count"], 1)

        printed_after_restart = len(second.console_alerts(alert_id))
        again = self.assertAccepted(second.post_events(dumps(ev)), 1, 1)
        self.assertEqual(again["alerts"], [alert_id])
        second.settle_console()
        self.assertEqual(len(second.console_alerts(alert_id)), printed_after_restart,
                         "the retried event notified again")
        image = ev["requestParameters"]["imageId"]
        same = [a for a in second.alerts(1000) if image in json.dumps(a)]
        self.assertEqual([a["id"] for a in same], [alert_id])
        self.assertEqual(same[0]["event_count"], 1)

    def test_alert_survives_sigterm_restart(self):
        first = Service(self).start()
        body = self.assertAccepted(first.post_events(dumps(matching_event())), 1, 1)
        alert_id = body["alerts"][0]
        first.wait_console(alert_id)
        self.assertEqual(first.stop(), 0)
        second = Service(self, state_dir=first.state_dir).start()
        self.assertIsNotNone(second.alert(alert_id))
        second.settle_console()
        self.assertEqual(second.console_alerts(alert_id), [],
                         "an alert delivered before a clean stop was printed again")


def share_event(account_id, event_time=None):
    ev = with_ids(load_fixture("record_ami_shared_with_account.json"), event_id=unique("evt-"),
                  image_id=unique_image_id(), user_id=account_id,
                  event_time=event_time or iso_utc(time.time()))
    return ev


def create_account_event(account_id, event_time, as_string=False, state="SUCCEEDED"):
    ev = copy.deepcopy(load_fixture("record_create_account_result.json"))
    ev["eventID"] = unique("car-")
    ev["eventTime"] = event_time
    status = ev["serviceEventDetails"]["createAccountStatus"]
    status["accountId"] = account_id
    status["state"] = state
    if as_string:
        ev["serviceEventDetails"] = json.dumps(ev["serviceEventDetails"])
    return ev


class NewAccountsTest(ServiceTestCase):
    def accounts(self, *args, state_dir):
        return run_cli(["accounts"] + list(args) + ["--state-dir", state_dir])

    def listed(self, state_dir):
        r = self.accounts("list", state_dir=state_dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode()

    def test_operator_adds_and_removes_an_account(self):
        state = harness.make_temp_dir(self, "trailhook-state-")
        r = self.accounts("add", "012345678901", state_dir=state)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("012345678901", self.listed(state))

        svc = Service(self, state_dir=state).start()
        body = self.assertAccepted(svc.post_events(dumps(share_event("012345678901"))), 1, 1)
        self.assertEqual(len(body["alerts"]), 1)
        self.assertEqual(len(svc.wait_console(body["alerts"][0])), 1)
        # An account nobody added is not new.
        self.assertAccepted(svc.post_events(dumps(share_event("999988887777"))), 1, 0)
        self.assertEqual(svc.stop(), 0)

        r = self.accounts("remove", "012345678901", state_dir=state)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("012345678901", self.listed(state))
        r = self.accounts("remove", "012345678901", state_dir=state)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertTrue(r.stderr.strip(), "no message for removing an absent account")

        svc = Service(self, state_dir=state).start()
        self.assertAccepted(svc.post_events(dumps(share_event("012345678901"))), 1, 0)

    def test_accounts_usage_errors(self):
        state = harness.make_temp_dir(self, "trailhook-state-")
        self.assertEqual(self.accounts("frobnicate", state_dir=state).returncode, 2)
        self.assertEqual(self.accounts("add", state_dir=state).returncode, 2)

    def check_learning(self, account_id, as_string):
        svc = Service(self).start()
        t0 = 1709287200  # 2024-03-01T10:00:00Z
        within = iso_utc(t0 + 86400)
        # Not new before anything taught it.
        self.assertAccepted(svc.post_events(dumps(share_event(account_id, within))), 1, 0)
        ev = create_account_event(account_id, iso_utc(t0), as_string=as_string)
        self.assertAccepted(svc.post_events(dumps(ev)), 1, 0)
        body = self.assertAccepted(svc.post_events(dumps(share_event(account_id, within))), 1, 1)
        self.assertEqual(len(body["alerts"]), 1)
        line = svc.wait_console(body["alerts"][0])
        self.assertEqual(len(line), 1)
        just_inside = iso_utc(t0 + 3 * 86400 - 60)
        self.assertAccepted(svc.post_events(dumps(share_event(account_id, just_inside))), 1, 1)
        too_late = iso_utc(t0 + 3 * 86400 + 3600)
        self.assertAccepted(svc.post_events(dumps(share_event(account_id, too_late))), 1, 0)
        self.assertIn(account_id, self.listed(svc.state_dir))

    def test_create_account_result_teaches_a_new_account(self):
        self.check_learning("111122223333", as_string=False)

    def test_create_account_result_with_details_as_a_string(self):
        self.check_learning("444455556666", as_string=True)

    def test_failed_account_creation_teaches_nothing(self):
        svc = Service(self).start()
        t0 = 1709287200
        ev = create_account_event("555566667777", iso_utc(t0), state="FAILED")
        self.assertAccepted(svc.post_events(dumps(ev)), 1, 0)
        share = share_event("555566667777", iso_utc(t0 + 3600))
        self.assertAccepted(svc.post_events(dumps(share)), 1, 0)

    def test_learning_within_one_request(self):
        # Records are evaluated in order: the account created first is new for the share after it.
        svc = Service(self).start()
        t0 = 1709287200
        doc = {"Records": [create_account_event("666677778888", iso_utc(t0)),
                           share_event("666677778888", iso_utc(t0 + 600))]}
        self.assertAccepted(svc.post_events(dumps(doc)), 2, 1)


if __name__ == "__main__":
    unittest.main()
