"""Real Ray processes on loopback for the cluster tests: `ray start --head` and worker nodes.

Each node is started with `--block` in a process group of its own, so a test stops exactly the
processes it started (never `ray stop`, which would stop every Ray on the machine).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict:
    # RAY_ADDRESS / RAY_API_SERVER_ADDRESS would override every --address given to `ray job ...`
    # (and RAY_ADDRESS=local picks whichever Ray of this machine it finds, or fails with several)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    return {**env, "RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1",
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0"}


class LocalRayCluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.nodes: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.tmp / log_name, "w")
        # every node's agents on ports of their own: two nodes on one machine (and any other Ray
        # here) would otherwise race for the fixed defaults
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                 f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
        proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1",
                                 "--disable-usage-stats", *ports, *args], env=ray_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def start_head(self, num_cpus: int, resources: str = "{}") -> None:
        self._start(["--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
                     "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--num-cpus={num_cpus}", f"--resources={resources}",
                     f"--ray-client-server-port={free_port()}"], "head.log")
        self.wait_for_nodes(1)

    def add_worker(self, num_cpus: int, resources: str = "{}") -> subprocess.Popen:
        n = len(self.nodes)
        proc = self._start([f"--address={self.address}", f"--num-cpus={num_cpus}",
                            f"--resources={resources}"], f"worker{n}.log")
        self.wait_for_nodes(n + 1)
        return proc

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run([RAY, "status", f"--address={self.address}"], env=ray_env(),
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.count("node_") >= n:
                # the dashboard (job server) answers a little after the node is up
                try:
                    with socket.create_connection(("127.0.0.1", self.dashboard_port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(1)
        raise TimeoutError(f"Ray did not come up with {n} node(s): see {self.tmp}")

    def kill_node(self, proc: subprocess.Popen) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def submit(self, *job_args: str, timeout: float = 600, wait: bool = True,
               submission_id: str | None = None) -> subprocess.CompletedProcess:
        """`ray job submit` of jobs/vidclust_job.py with this repo as the working dir."""
        root = Path(__file__).resolve().parents[1]
        runtime_env = ('{"excludes": [".venv", ".git", "out", "examples", "bench/results", '
                       '"**/__pycache__"]}')
        extra = ([] if wait else ["--no-wait"]) + ([f"--submission-id={submission_id}"] if submission_id else [])
        deadline = time.time() + 120
        while True:  # the head's job agent can take a while after the node is up
            out = subprocess.run(
                [RAY, "job", "submit", f"--address={self.dashboard}", f"--working-dir={root}",
                 f"--runtime-env-json={runtime_env}", *extra, "--", sys.executable,
                 "jobs/vidclust_job.py", *job_args], env=ray_env(), capture_output=True, text=True,
                timeout=timeout)
            # the message comes on stderr or stdout, depending on where the CLI failed
            if "No available agent" not in out.stdout + out.stderr or time.time() > deadline:
                return out
            time.sleep(2)

    def job_status(self, submission_id: str) -> str:
        """The job's JobStatus name (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED), or UNKNOWN when
        the job server does not answer. Asked through the job SDK: `ray job status` prints the
        status word only while the job is not finished ("Job 'x' succeeded" / "failed", the latter
        on stderr), so its output cannot tell a finished job from one that never answered."""
        query = ("import sys; from ray.job_submission import JobSubmissionClient; "
                 "print(JobSubmissionClient(sys.argv[1]).get_job_status(sys.argv[2]).value)")
        out = subprocess.run([sys.executable, "-c", query, self.dashboard, submission_id],
                             env=ray_env(), capture_output=True, text=True)
        words = out.stdout.split()
        status = words[-1] if out.returncode == 0 and words else ""
        return status if status in ("SUCCEEDED", "FAILED", "STOPPED", "RUNNING", "PENDING") else "UNKNOWN"

    def wait_job(self, submission_id: str, timeout: float = 600) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.job_status(submission_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        raise TimeoutError(f"job {submission_id} still running after {timeout} s")

    def stop_job(self, submission_id: str) -> None:
        subprocess.run([RAY, "job", "stop", f"--address={self.dashboard}", submission_id],
                       env=ray_env(), capture_output=True, text=True, timeout=120)
        try:
            self.wait_job(submission_id, timeout=60)
        except TimeoutError:
            pass

    def job_logs(self, submission_id: str) -> str:
        return subprocess.run([RAY, "job", "logs", f"--address={self.dashboard}", submission_id],
                              env=ray_env(), capture_output=True, text=True).stdout

    def stop(self) -> None:
        for proc in reversed(self.nodes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.nodes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
