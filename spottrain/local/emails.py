"""The stack's emails, as they would arrive: an SQS queue subscribed to the topic, read as it fills.

moto's CloudFormation skips SNS subscriptions, but SNS -> SQS delivery is real, so a queue stands in
for the user's inbox.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

INBOX_QUEUE = "spottrain-local-inbox"


class EmailWatcher:
    def __init__(self, sqs: Any, sns: Any, topic_arn: str, on_email: Callable[[dict], None] | None = None):
        self.sqs = sqs
        self.sns = sns
        self.topic_arn = topic_arn
        self.on_email = on_email
        self.emails: list[dict] = []
        self._queue_url = ""
        self._stop = threading.Event()
        self._reading = threading.Lock()  # drain() and the watcher must not reorder emails
        self._thread = threading.Thread(target=self._run, name="emails", daemon=True)

    def start(self) -> "EmailWatcher":
        self._queue_url = self.sqs.create_queue(QueueName=INBOX_QUEUE)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.drain()

    def drain(self) -> None:
        """Read everything queued now (the watcher does this continuously)."""
        while self._receive_batch(wait_seconds=0):
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._receive_batch(wait_seconds=1)
            except Exception:  # noqa: BLE001 - a hiccup must not silence every later email
                log.exception("reading the inbox queue failed")
                self._stop.wait(1)

    def _receive_batch(self, wait_seconds: int) -> int:
        with self._reading:
            messages = self.sqs.receive_message(
                QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            ).get("Messages", [])
            for message in sorted(messages, key=lambda m: json.loads(m["Body"]).get("Timestamp") or ""):
                self._deliver(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
            return len(messages)

    def _deliver(self, envelope: dict) -> None:
        email = {
            "subject": envelope.get("Subject") or "",
            "body": envelope.get("Message") or "",
            "timestamp": envelope.get("Timestamp"),
            "attributes": {
                name: value.get("Value") for name, value in (envelope.get("MessageAttributes") or {}).items()
            },
        }
        self.emails.append(email)
        if self.on_email is not None:
            self.on_email(email)
