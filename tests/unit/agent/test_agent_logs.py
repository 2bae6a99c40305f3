"""The command's local log: a full disk never blocks the command, and the local copy stays bounded."""

from __future__ import annotations

import errno
import io
import os
import sys
import threading

from agent_support import FillingDisk

from spottrain.agent import runner
from spottrain.agent.logs import OutputLog


class RecordingStore:
    def __init__(self, works: bool = True):
        self.works = works
        self.objects = {}

    def upload(self, path, key, metadata=None):
        if self.works:
            self.objects[key] = path.read_bytes()
        return self.works


def run_in_thread(**kwargs):
    """runner.run in a thread: a blocked command must fail the test, not hang the suite."""
    results = []
    thread = threading.Thread(target=lambda: results.append(runner.run(**kwargs)), daemon=True)
    thread.start()
    thread.join(120)  # a detector for a hang, not a measurement: the run takes well under a second
    assert results, "the command blocked on its output pipe"
    return results[0]


def test_given_a_full_disk_when_the_command_keeps_printing_then_its_output_is_drained_and_it_finishes(tmp_path):
    output = OutputLog(tmp_path, 1, 1 << 30, opener=lambda path: FillingDisk(room=4096))
    # 4 MiB: far more than a pipe holds, so an undrained pipe blocks the command for good.
    command = [sys.executable, "-c", "import sys\nfor i in range(65536): print('x' * 63)\nprint('last words')"]

    result = run_in_thread(command=command, cwd=tmp_path, env=dict(os.environ), output=output, should_stop=lambda: None)

    assert result.exit_code == 0
    assert output.disk_full and output.write_error.errno == errno.ENOSPC
    assert output.tail()[-1] == "last words"  # what the marker and the email quote still comes through


def test_given_a_full_disk_when_a_stop_is_wired_to_it_then_the_command_is_stopped_at_once(tmp_path):
    output = OutputLog(tmp_path, 1, 1 << 30, opener=lambda path: FillingDisk(room=10))
    stop = runner.StopRequest("disk_full", 60)

    result = run_in_thread(
        command="echo a long first line; sleep 600",
        cwd=tmp_path,
        env=dict(os.environ),
        output=output,
        should_stop=lambda: stop if output.disk_full else None,
    )

    assert result.stop is stop and result.exit_code == 128 + 15


def test_given_a_write_error_that_is_not_a_full_disk_then_it_is_recorded_but_not_called_disk_full(tmp_path):
    class Broken(io.BytesIO):
        def write(self, data):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    output = OutputLog(tmp_path, 1, 1 << 20, opener=lambda path: Broken())
    output.write(b"epoch 1\n")

    assert output.write_error.errno == errno.EIO and not output.disk_full and output.tail() == ["epoch 1"]


def test_given_a_long_run_when_parts_are_uploaded_then_the_local_log_keeps_only_the_newest_bytes(tmp_path):
    output = OutputLog(tmp_path, 1, part_bytes=1000, keep_bytes=3000)
    store = RecordingStore()
    lines = [b"line %05d %s\n" % (i, b"y" * 88) for i in range(500)]  # 50 kB, 50 parts

    for line in lines:
        output.write(line)
        output.upload(store)

    local = sorted(tmp_path.glob("output-*.log"))
    assert sum(path.stat().st_size for path in local) <= 3000 + 1000  # the cap plus the part being written
    assert b"".join(store.objects[key] for key in sorted(store.objects)) == b"".join(lines)  # S3 has it all


def test_given_uploads_failing_when_the_log_grows_then_no_part_is_deleted_locally(tmp_path):
    output = OutputLog(tmp_path, 1, part_bytes=1000, keep_bytes=3000)

    for i in range(100):
        output.write(b"%099d\n" % i)
        assert output.upload(RecordingStore(works=False)) is False

    assert sum(path.stat().st_size for path in tmp_path.glob("output-*.log")) == 100 * 100


class StoreWritingDuringUpload(RecordingStore):
    """The command prints while a part uploads: the write fills the current part and rotates it away."""

    def __init__(self, output: OutputLog, line: bytes):
        super().__init__()
        self.output, self.line, self.armed = output, line, True

    def upload(self, path, key, metadata=None):
        uploaded = super().upload(path, key, metadata)
        if self.armed:
            self.armed = False
            self.output.write(self.line)  # after the read: S3 holds the part without this line
        return uploaded


def test_given_a_part_that_rotates_while_it_uploads_when_uploading_again_then_s3_gets_its_final_bytes(tmp_path):
    # Given a current part one write from full, and a command that prints that write while the part uploads
    output = OutputLog(tmp_path, 1, part_bytes=64)
    output.write(b"a" * 40 + b"\n")
    store = StoreWritingDuringUpload(output, b"b" * 40 + b"\n")

    # When the sync uploads, the part rotates away mid-upload, and the next sync comes
    output.upload(store)
    output.upload(store)

    # Then S3's copy of the rotated part is the whole part, not what the first upload read
    first = output.part_path(1)
    assert (
        store.objects["logs/attempt-1/output-0001.log"] == first.read_bytes() == b"a" * 40 + b"\n" + b"b" * 40 + b"\n"
    )
