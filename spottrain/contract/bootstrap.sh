#!/bin/bash
# spottrain bootstrap: fetch the instance agent from its S3 asset and start it for one job attempt.
# Rendered by spottrain/contract/userdata.py. It carries no secrets: the instance profile grants S3 access.
# The emulator and prepared AMIs may set SPOTTRAIN_ROOT, SPOTTRAIN_PYTHON, SPOTTRAIN_SHUTDOWN_COMMAND,
# and SPOTTRAIN_RUN_AS / SPOTTRAIN_RUN_AS_HOME (the account the commands run as, and its home).
set -euo pipefail

BUCKET={{bucket}}
ATTEMPT={{attempt}}
REGION={{region}}
AGENT_BUCKET={{agent_bucket}}
AGENT_KEY={{agent_key}}
RUN_AS={{run_as}}

ROOT="${SPOTTRAIN_ROOT:-/opt/spottrain}"
# The emulator has no such account: it names its own user, and the simulated AMI's home.
RUN_AS="${SPOTTRAIN_RUN_AS:-$RUN_AS}"
SHUTDOWN_COMMAND="${SPOTTRAIN_SHUTDOWN_COMMAND:-shutdown -h now}"
LOG="$ROOT/bootstrap.log"
export AWS_DEFAULT_REGION="$REGION"
# cloud-init may run us without HOME, which pip and git both expect.
export HOME="${HOME:-$ROOT/home}"
mkdir -p "$ROOT" "$HOME"

# stderr reaches the instance console output, the only trace left if we die before the agent runs.
log() { printf 'spottrain bootstrap: %s\n' "$*" | tee -a "$LOG" >&2; }

on_error() {
  log "FAILED (exit $1) at line $2: $3 -- job s3://$BUCKET attempt $ATTEMPT never started; see $LOG"
  # A paid GPU must not idle waiting for the workflow to notice: stop the instance now.
  log "running shutdown command: $SHUTDOWN_COMMAND"
  bash -c "$SHUTDOWN_COMMAND" || true
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

log "job s3://$BUCKET attempt $ATTEMPT: fetching agent s3://$AGENT_BUCKET/$AGENT_KEY"
aws s3 cp --only-show-errors "s3://$AGENT_BUCKET/$AGENT_KEY" "$ROOT/agent.zip" >>"$LOG" 2>&1

if [ -n "${SPOTTRAIN_PYTHON:-}" ]; then
  PY="$SPOTTRAIN_PYTHON"
else
  # Own venv: the agent's boto3 must not fight the AMI's frameworks, nor the training's packages.
  log "creating the agent's Python environment in $ROOT/venv"
  python3 -m venv "$ROOT/venv" >>"$LOG" 2>&1
  "$ROOT/venv/bin/python" -m pip install --quiet --disable-pip-version-check boto3 >>"$LOG" 2>&1
  PY="$ROOT/venv/bin/python"
fi

rm -rf "$ROOT/agent"
# Python's zipfile rather than unzip(1), which not every AMI has.
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$ROOT/agent.zip" "$ROOT/agent"

log "starting the agent"
trap - ERR
export PYTHONPATH="$ROOT/agent${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m spottrain.agent --bucket "$BUCKET" --attempt "$ATTEMPT" --region "$REGION" \
  --workdir "$ROOT/work" --shutdown-command "$SHUTDOWN_COMMAND" \
  --run-as "$RUN_AS" ${SPOTTRAIN_RUN_AS_HOME:+--home "$SPOTTRAIN_RUN_AS_HOME"}
