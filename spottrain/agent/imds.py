"""Instance metadata (IMDSv2): the instance id and the spot interruption notice.

The endpoint comes from AWS_EC2_METADATA_SERVICE_ENDPOINT, as botocore reads it, so the emulator's
local IMDS works unchanged. Every call is short and never raises: a missing IMDS must not stop
the training, it only means no notice can be seen.

Hand-written, not botocore's IMDSFetcher: that one is private API, reads no spot notice, and retries
for seconds where a poll every few seconds wants one short try.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.error
import urllib.request
from typing import Mapping, Optional

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 21600
UNKNOWN_INSTANCE = "unknown"
# Timeouts of 2, 4, 8 and 16 s: an IMDS slow to answer (the emulator's, on a loaded machine), not a missing one.
INSTANCE_ID_TRIES = 4

log = logging.getLogger(__name__)


class Imds:
    def __init__(self, endpoint: Optional[str] = None, timeout: float = 2.0):
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self._token: Optional[str] = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Imds":
        return cls(env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT"))

    def instance_id(self) -> str:
        """The instance's id, or UNKNOWN_INSTANCE where no IMDS listens (not an EC2 instance).

        The workflow addresses everything to this id (the attempt's task token, access to the job bucket),
        so an IMDS that does not answer in time is asked again, with twice the timeout each time, for
        INSTANCE_ID_TRIES tries; a refused connection (nothing listening) is final at once.
        """
        timeout = self.timeout
        for _ in range(INSTANCE_ID_TRIES):
            try:
                text = self._get("/latest/meta-data/instance-id", timeout=timeout, patient=True)
            except socket.timeout:
                log.warning("IMDS did not answer within %.0f s; asking again", timeout)
                timeout *= 2
                continue
            return text.strip() if text else UNKNOWN_INSTANCE
        return UNKNOWN_INSTANCE

    def spot_notice(self) -> Optional[dict]:
        """{"action": "terminate"|"stop"|"hibernate", "time": ISO-8601} once AWS reclaims the instance."""
        text = self._get("/latest/meta-data/spot/instance-action")
        if not text:
            return None
        try:
            notice = json.loads(text)
        except ValueError:
            log.warning("unreadable spot notice %r; treating it as a terminate notice", text[:200])
            return {"action": "terminate", "time": None}
        return notice if isinstance(notice, dict) else {"action": "terminate", "time": None}

    def _get(self, path: str, timeout: Optional[float] = None, patient: bool = False) -> Optional[str]:
        """Body of a metadata path, None when absent (404) or IMDS is unreachable.

        patient: raise socket.timeout when IMDS did not answer in time, for the caller to ask again.
        """
        timeout = timeout or self.timeout
        for _ in range(2):  # a second try with a fresh token when the old one expired (401)
            token = self._token or self._fetch_token(timeout, patient)
            if token is None:
                return None
            request = urllib.request.Request(self.endpoint + path, headers={"X-aws-ec2-metadata-token": token})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    return response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as error:
                if error.code != 401:
                    return None
                self._token = None
            except (OSError, ValueError) as error:
                if patient and _timed_out(error):
                    raise socket.timeout(str(error)) from None
                log.debug("IMDS %s unreachable: %s", path, error)
                return None
        return None

    def _fetch_token(self, timeout: float, patient: bool) -> Optional[str]:
        request = urllib.request.Request(
            self.endpoint + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                self._token = response.read().decode().strip()
        except (OSError, ValueError) as error:
            if patient and _timed_out(error):
                raise socket.timeout(str(error)) from None
            log.debug("IMDS token unavailable at %s: %s", self.endpoint, error)
            return None
        return self._token


def _timed_out(error: Exception) -> bool:
    """urllib's timeouts: socket.timeout itself while reading, wrapped in URLError while connecting."""
    return isinstance(error, socket.timeout) or isinstance(getattr(error, "reason", None), socket.timeout)
