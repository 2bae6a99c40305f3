"""The SNS topic every job email goes through, with the optional email subscription."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class Notifications(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, email: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="spottrain",
            # The AWS-managed key needs no key resource or key policy: only Lambdas in this account publish.
            master_key=kms.Alias.from_alias_name(self, "SnsManagedKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        if email:
            # AWS sends a confirmation mail first; nothing is delivered until the user confirms.
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
