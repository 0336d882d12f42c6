import subprocess
import sys
import time
from pathlib import Path

from exchange.devplatform import processes
from exchange.devplatform.fetch import java_major
from exchange.devplatform.platform import kafka_uuid


def test_start_read_and_stop_by_pid(tmp_path: Path) -> None:
    marker = str(tmp_path / "state")
    pid_file = tmp_path / "run" / "sleep.pid"
    pid = processes.start(
        [sys.executable, "-c", "import time; time.sleep(60)", marker], tmp_path / "log", pid_file
    )
    assert processes.read_pid(pid_file, marker) == pid
    # Another checkout's marker does not match: we never signal a process that is not ours.
    assert processes.read_pid(pid_file, str(tmp_path / "elsewhere")) is None
    assert processes.stop(pid, timeout_s=5) is False
    assert not processes.alive(pid)
    assert processes.read_pid(pid_file, marker) is None


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(str(proc.pid))
    assert processes.read_pid(pid_file, "anything") is None
    pid_file.write_text("garbage")
    assert processes.read_pid(pid_file, "anything") is None


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert processes.tail(log, 2) == ["line 98", "line 99"]
    assert processes.tail(tmp_path / "missing", 2) == []


def test_java_major_parses_both_styles(tmp_path: Path) -> None:
    for text, major in [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
    ]:
        fake = tmp_path / "java"
        fake.write_text(f"#!/bin/sh\necho '{text}' >&2\n")
        fake.chmod(0o755)
        assert java_major(str(fake)) == major


def test_kafka_cluster_id_format() -> None:
    cid = kafka_uuid("6f1c5b0e-8a0e-4c35-9f0e-2b7f5d9c1a11")
    assert len(cid) == 22 and "=" not in cid


def test_started_processes_may_open_as_many_files_as_allowed(tmp_path: Path) -> None:
    import resource

    out = tmp_path / "limit"
    code = (
        "import resource, sys; "
        "open(sys.argv[1], 'w').write(str(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))"
    )
    pid = processes.start(
        [sys.executable, "-c", code, str(out)], tmp_path / "log", tmp_path / "limit.pid"
    )
    while processes.alive(pid):
        time.sleep(0.01)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # At least the hard limit (more when run as root, who may raise it).
    assert int(out.read_text()) >= hard


def test_what_started_processes_write_is_the_owners_only(tmp_path: Path) -> None:
    # Broker data holds names and grant salts: no other local account may read it.
    made = tmp_path / "data" / "segment.log"
    script = f"import os; os.mkdir({str(made.parent)!r}); open({str(made)!r}, 'w').close()"
    pid = processes.start([sys.executable, "-c", script], tmp_path / "log", tmp_path / "x.pid")
    deadline = time.monotonic() + 10
    while processes.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert made.stat().st_mode & 0o777 == 0o600
    assert made.parent.stat().st_mode & 0o777 == 0o700


def test_an_existing_state_folder_is_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "kafka" / "data").mkdir(parents=True, mode=0o755)
    segment = state / "kafka" / "data" / "00000.log"
    segment.write_text("names and salts")
    segment.chmod(0o644)
    processes.private_tree(state)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "kafka" / "data").stat().st_mode & 0o777 == 0o700
    assert segment.stat().st_mode & 0o777 == 0o600


def test_links_out_of_the_state_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir(mode=0o755)
    (outside / "shared.txt").write_text("not ours to close")
    (outside / "shared.txt").chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / "link").symlink_to(outside)
    processes.private_tree(state)
    assert outside.stat().st_mode & 0o777 == 0o755
    assert (outside / "shared.txt").stat().st_mode & 0o777 == 0o644
