"""Start, stop and inspect the local Kafka broker and schema registry."""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from exchange.config import ExchangeSettings
from exchange.config.settings import KafkaSettings
from exchange.devplatform import processes, secure
from exchange.devplatform.fetch import fetch_apicurio, fetch_kafka, java_major, require_tool
from exchange.devplatform.secure import Endpoints
from exchange.errors import ExchangeError
from exchange.files import write_private
from exchange.kafka.admin import Admin

COMPONENTS = ("kafka", "registry")
MIN_JAVA = 17
Progress = Callable[[str], None]


class PlatformError(ExchangeError):
    pass


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # "running" | "stopped" | "not answering"
    pid: int | None
    address: str
    log: Path


#: The platform's own folders under its state folder (broker data, registry, keys, logs, pids),
#: made private at every start.
PRIVATE_FOLDERS = ("kafka", "registry", "secure", "secrets", "logs", "run")


class LocalPlatform:
    def __init__(self, settings: ExchangeSettings) -> None:
        self.settings = settings
        self.dev = settings.dev
        self.state = settings.resolve(self.dev.state_dir)
        self.cache = settings.resolve(self.dev.cache_dir)
        self.kafka_data = self.state / "kafka" / "data"
        self.secure_files = secure.SecureFiles(self.state / "secure")

    @property
    def secure(self) -> bool:
        """Whether the broker's storage was created in secure mode (decided at the first up)."""
        return self._mode_file.exists() and self._mode_file.read_text().strip() == "secure"

    @property
    def _mode_file(self) -> Path:
        return self.state / "kafka" / "mode"

    # -- paths -------------------------------------------------------------------------------
    def log_file(self, component: str) -> Path:
        return self.state / "logs" / f"{component}.log"

    def _pid_file(self, component: str) -> Path:
        return self.state / "run" / f"{component}.pid"

    def _marker(self) -> str:
        # Every process we start has the state folder in its command line: read_pid checks it.
        return str(self.state)

    @property
    def bootstrap(self) -> str:
        return f"localhost:{self.dev.kafka_port}"

    @property
    def registry_url(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://localhost:{self.dev.registry_port}/apis/ccompat/v7"

    def env_file(self, principal: str) -> Path:
        """Secure mode: the environment file that makes `exchange` act as ``principal``."""
        return self.secure_files.env_file(principal)

    # -- commands ----------------------------------------------------------------------------
    def up(
        self, progress: Progress = lambda _m: None, secure_mode: bool = False
    ) -> list[ComponentStatus]:
        """Start what is not running; ``secure_mode`` counts when the storage is first created."""
        java = require_tool("java", "run Kafka and the schema registry")
        if (major := java_major(java)) < MIN_JAVA:
            raise PlatformError(f"Java {MIN_JAVA}+ is needed, found Java {major}", code="OLD_JAVA")
        secure_mode = self._check_mode(secure_mode, progress)
        libs = fetch_kafka(self.cache, self.dev.kafka_version, self.dev.log4j_version, progress)
        registry_jar = fetch_apicurio(self.cache, self.dev.apicurio_version, progress)
        if secure_mode:
            progress("preparing certificates and the platform's credentials")
            secure.prepare(self.secure_files)
            secure.env_files(self.secure_files, self.endpoints)
        # After prepare: the folders it made (with this process' umask) become private too.
        for own in PRIVATE_FOLDERS:  # not the whole state folder: drop folders live there too
            processes.private_tree(self.state / own)
        self._up_kafka(java, libs, progress, secure_mode)
        self._up_registry(java, registry_jar, progress)
        return self.status()

    def _check_mode(self, want_secure: bool, progress: Progress) -> bool:
        """The mode to start in: the one the data was created in (secure stays secure)."""
        if not (self.kafka_data / "meta.properties").exists():
            return want_secure
        if want_secure and not self.secure:
            raise PlatformError(
                f"the local platform in {self.state} was created in open mode; to start it in "
                "secure mode, first run `exchange dev down --purge` (deletes its data)",
                code="MODE_MISMATCH",
            )
        if self.secure and not want_secure:
            progress(f"the platform in {self.state} was created in secure mode: starting it so")
        return self.secure

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.local(self.dev)

    def down(self, purge: bool = False, progress: Progress = lambda _m: None) -> list[str]:
        """Stop what we started (registry first: it writes to Kafka). Returns what was stopped."""
        stopped = []
        for component in reversed(COMPONENTS):
            pid = processes.read_pid(self._pid_file(component), self._marker())
            if pid is not None:
                progress(f"stopping {component} (pid {pid})")
                killed = processes.stop(pid)
                stopped.append(f"{component} (pid {pid}{', killed' if killed else ''})")
            self._pid_file(component).unlink(missing_ok=True)
        if purge:
            progress(f"deleting {self.state}")
            shutil.rmtree(self.state, ignore_errors=True)
        return stopped

    def status(self) -> list[ComponentStatus]:
        return [self._status("kafka"), self._status("registry")]

    # -- kafka -------------------------------------------------------------------------------
    def _up_kafka(self, java: str, libs: Path, progress: Progress, secure_mode: bool) -> None:
        pid_file = self._pid_file("kafka")
        if processes.read_pid(pid_file, self._marker()) is not None:
            progress("kafka is already running")
            self._wait_kafka(pid_file)
            return
        self._check_free(self.dev.kafka_port, self.dev.controller_port)
        props = self._write_kafka_config(secure_mode)
        classpath = f"{libs}/*"
        if not (self.kafka_data / "meta.properties").exists():
            progress("formatting KRaft storage" + (" (secure mode)" if secure_mode else ""))
            cluster_id = str(uuid.uuid4())  # StorageTool takes any UUID; it is stored once
            # SCRAM users must exist before the first login: the tool writes them into the
            # initial metadata.
            scram = secure.scram_format_args(self.secure_files) if secure_mode else []
            self._run_java(
                [
                    java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    cluster_id_arg(cluster_id),
                    "-c",
                    str(props),
                    *scram,
                ],
                "format KRaft storage",
            )
            self._mode_file.write_text("secure\n" if secure_mode else "open\n")
        progress(f"starting kafka on {self.bootstrap}")
        heap = f"-Xmx{self.dev.kafka_heap_mb}m"
        processes.start(
            [
                java,
                heap,
                f"-Xms{self.dev.kafka_heap_mb}m",
                f"-Dlog4j2.configurationFile={self.state / 'kafka' / 'log4j2.yaml'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ],
            self.log_file("kafka"),
            pid_file,
        )
        self._wait_kafka(pid_file)

    def _write_kafka_config(self, secure_mode: bool) -> Path:
        home = self.state / "kafka"
        home.mkdir(parents=True, exist_ok=True)
        d = self.dev
        props = home / "server.properties"
        if secure_mode:
            listeners = secure.kafka_properties(self.endpoints, self.secure_files)
        else:
            listeners = [
                f"listeners=PLAINTEXT://localhost:{d.kafka_port},"
                f"CONTROLLER://localhost:{d.controller_port}",
                f"advertised.listeners=PLAINTEXT://localhost:{d.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        # Secure mode puts passwords in it: only the owner may read it.
        text = secure.server_properties(self.endpoints, listeners, str(self.kafka_data))
        write_private(
            props, ("# Written by `exchange dev up`; edits are overwritten.\n" + text).encode()
        )
        log_config = resources.files("exchange.devplatform").joinpath("resources/log4j2.yaml")
        (home / "log4j2.yaml").write_text(log_config.read_text())
        return props

    def _kafka_settings(self) -> KafkaSettings:
        """How the platform itself reaches its broker: in secure mode as ``broker``, the only
        principal created when the storage is formatted."""
        if not self.secure:
            return KafkaSettings(bootstrap_servers=self.bootstrap)
        return secure.broker_settings(self.bootstrap, self.secure_files)

    def _wait_kafka(self, pid_file: Path) -> None:
        quiet = logging.getLogger("exchange.devplatform.probe")
        quiet.setLevel(logging.CRITICAL)  # librdkafka logs every refused connection otherwise
        kafka = self._kafka_settings()
        admin = AdminClient(kafka.client_config(logger=quiet))

        def ready() -> bool:
            try:
                admin.list_topics(timeout=2)
            except KafkaException:
                return False
            return True

        self._wait("kafka", pid_file, ready)
        if self.secure:
            secure.create_principals(Admin(kafka), self.secure_files)

    # -- registry ----------------------------------------------------------------------------
    def _up_registry(self, java: str, jar: Path, progress: Progress) -> None:
        pid_file = self._pid_file("registry")
        if processes.read_pid(pid_file, self._marker()) is not None:
            progress("registry is already running")
        else:
            self._check_free(self.dev.registry_port)
            progress(f"starting the schema registry on port {self.dev.registry_port}")
            # Apicurio (Quarkus) reads config/application.properties from its working folder:
            # secure mode writes it there (it holds passwords), open mode removes it.
            home = self.state / "registry"
            settings_file = home / "config" / "application.properties"
            settings_file.unlink(missing_ok=True)
            port = f"-Dquarkus.http.port={self.dev.registry_port}"
            if self.secure:
                text = secure.registry_properties(self.endpoints, self.secure_files)
                write_private(settings_file, text.encode())
                port = "-Dquarkus.http.port=0"  # HTTPS only; see the settings file
            home.mkdir(parents=True, exist_ok=True)
            processes.start(
                [
                    java,
                    f"-Xmx{self.dev.registry_heap_mb}m",
                    f"-Dexchange.dev.state={self.state}",
                    port,
                    "-Dquarkus.http.host=127.0.0.1",
                    # Schemas live in a Kafka topic, so they survive a restart of the registry.
                    "-Dapicurio.storage.kind=kafkasql",
                    f"-Dapicurio.kafkasql.bootstrap.servers={self.bootstrap}",
                    "-jar",
                    str(jar),
                ],
                self.log_file("registry"),
                pid_file,
                cwd=home,
            )

        # With kafkasql storage the API answers before the journal is replayed; the readiness
        # probe turns UP only once it is (a restarted registry would otherwise look empty).
        scheme = "https" if self.secure else "http"
        health = f"{scheme}://localhost:{self.dev.registry_port}/health/ready"
        context = (
            ssl.create_default_context(cafile=str(self.secure_files.tls.ca_cert))
            if self.secure
            else None
        )

        headers = {}
        if self.secure:  # reading needs a login: the read-only one
            login = f"{secure.REGISTRY_READER}:{self.secure_files.password(secure.REGISTRY_READER)}"
            headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()

        def ready() -> bool:
            try:
                for url in (health, f"{self.registry_url}/subjects"):
                    request = urllib.request.Request(url, headers=headers)
                    with urllib.request.urlopen(request, timeout=2, context=context) as resp:
                        if resp.status != 200:
                            return False
                return True
            except (urllib.error.URLError, OSError):
                return False

        self._wait("registry", pid_file, ready)

    # -- shared ------------------------------------------------------------------------------
    def _wait(self, component: str, pid_file: Path, ready: Callable[[], bool]) -> None:
        # Liveness by the pid alone: while the JVM launcher re-execs, its cmdline can be empty.
        pid = int(pid_file.read_text())
        deadline = time.monotonic() + self.dev.start_timeout_s
        while time.monotonic() < deadline:
            if not processes.alive(pid):
                raise PlatformError(
                    f"{component} exited while starting; "
                    f"last lines of {self.log_file(component)}:\n"
                    + "\n".join(processes.tail(self.log_file(component), 20)),
                    code="START_FAILED",
                )
            if ready():
                return
            time.sleep(0.5)
        raise PlatformError(
            f"{component} did not answer within {self.dev.start_timeout_s:.0f} s; "
            f"see {self.log_file(component)}",
            code="START_TIMEOUT",
        )

    def _check_free(self, *ports: int) -> None:
        for port in ports:
            if processes.port_open("127.0.0.1", port):
                raise PlatformError(
                    f"port {port} is taken by a process `exchange dev` did not start; stop it, "
                    f"or choose other ports under dev: in config/exchange.yaml",
                    code="PORT_TAKEN",
                )

    def _run_java(self, argv: list[str], what: str) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PlatformError(
                f"cannot {what}: {(proc.stdout + proc.stderr).strip()[-2000:]}", code="START_FAILED"
            )

    def _status(self, component: str) -> ComponentStatus:
        pid = processes.read_pid(self._pid_file(component), self._marker())
        if component == "kafka":
            address, port = self.bootstrap, self.dev.kafka_port
        else:
            address, port = self.registry_url, self.dev.registry_port
        if pid is None:
            state = "stopped"
        elif processes.port_open("127.0.0.1", port):
            state = "running"
        else:
            state = "not answering"
        return ComponentStatus(component, state, pid, address, self.log_file(component))


def cluster_id_arg(value: str) -> str:
    """StorageTool's cluster id option as one argument: the id is base64 and may begin with
    "-", which the tool's parser takes for an option when the id is a separate argument (one
    format in 64 failed that way)."""
    return f"--cluster-id={kafka_uuid(value)}"


def kafka_uuid(value: str) -> str:
    """Kafka cluster ids are 16 bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.UUID(value).bytes).decode().rstrip("=")
