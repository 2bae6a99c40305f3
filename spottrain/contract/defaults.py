"""The stack's default configuration, by CDK context key: the one copy of every default.

The CDK app starts from these (`cdk.json`'s context, then `-c key=value`, override them), the Lambda
settings' defaults are these, and the CLI checks a spec against them before anything is deployed.
docs/CONFIGURATION.md explains each key.
"""

from __future__ import annotations

from typing import Any, Dict

STACK_DEFAULTS: Dict[str, Any] = {
    "notificationEmail": "",
    "allowedInstanceTypes": ["g5.xlarge", "g6.xlarge", "g4dn.xlarge", "g5.2xlarge", "g6.2xlarge"],
    "defaultInstanceTypes": ["g5.xlarge", "g6.xlarge", "g4dn.xlarge"],
    "amiSsmParameter": "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
    "instanceUser": "ubuntu",
    "vpcId": "",
    "subnetIds": [],
    "dataBuckets": [],  # S3 buckets every job's instance may read (its data_get_command's sources)
    "bucketPrefix": "",
    "maxSpotPrice": "",
    "maxCostUsd": "",  # the most a job's limits.max_cost_usd may be, and its default; "" = no cap
    "rootVolumeGb": 100,
    "bidWaitSeconds": 15,
    "bidMaxChecks": 8,
    "heartbeatLostSeconds": 300,  # the callback wait's HeartbeatSeconds: 10 agent heartbeats
    "maxRuntimeMinutes": 1440,
    "maxAttempts": 3,
    "defaultKeepAliveMinutes": 0,
    "maxKeepAliveMinutes": 60,
    # the debug door: the most a job's on_failure.keep_alive_minutes may ask for; 0 = no door, no SSM permissions
    "maxFailureKeepAliveMinutes": 30,
    "onDemandFallback": True,
    "capacityWaitMinutes": 30,  # how long a job waits for spot capacity before giving up (or going on-demand)
    "maxCapacityWaitMinutes": 240,  # the most a job's capacity_wait_minutes may ask for
    "jobTimeoutHours": 96,
    # A sweep's variants (child executions) and how many run at once (its Map state's MaxConcurrency).
    "maxSweepVariants": 100,
    "maxSweepParallel": 10,
    "logRetentionDays": 30,
    # known_hosts lines vouching for the ssh hosts deploy keys clone from, for jobs that give none
    "sshKnownHosts": "",
}
