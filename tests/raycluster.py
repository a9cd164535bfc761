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


_given: set[int] = set()


def free_port() -> int:
    """A free port on loopback, never one given before in this process (a port freed by one call
    is often handed out again by the next, and two Ray components on one port fail to start)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port


def ray_env() -> dict:
    # RAY_ADDRESS / RAY_API_SERVER_ADDRESS would override every --address given to `ray job ...`
    # (and RAY_ADDRESS=local picks whichever Ray of this machine it finds, or fails with several)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    return {**env, "RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1",
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "RAY_USAGE_STATS_ENABLED": "0",
            # a node stopped by a test goes at once (Ray 2.60 drains for 30 s on SIGTERM)
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


def active_nodes(status: str) -> int:
    """The number of active nodes `ray status` reports: the counts in its "Active:" section
    (" 1 node_<id>", or " 1 ray.head.default" under an autoscaler of node types)."""
    import re

    section = status.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in status else ""
    return sum(int(m) for m in re.findall(r"^\s*(\d+)\s+\S", section, flags=re.M))


class LocalRayCluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.nodes: list[subprocess.Popen] = []  # the node processes started and not killed
        self.n_started = 0  # every node started, for the log names
        # `ray start` with token auth needs a token on disk (~/.ray/auth_token); a local ray.init()
        # makes one, so a cluster test run alone on a fresh machine found none
        subprocess.run([RAY, "get-auth-token", "--generate"], env=ray_env(), capture_output=True, check=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, args: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        self.n_started += 1
        log = open(self.tmp / log_name, "w")
        # every node's agents on ports of their own: two nodes on one machine (and any other Ray
        # here) would otherwise race for the fixed defaults
        ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                 f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                 f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}"]
        proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1",
                                 "--disable-usage-stats", *ports, *args], env={**ray_env(), **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def start_head(self, num_cpus: int, resources: str = "{}", autoscaling_config: Path | None = None) -> None:
        """The head node; with `autoscaling_config` (a fake_multinode cluster config), its
        autoscaler starts and stops worker nodes of the config's types on this machine.

        A head that exits or does not answer is started once more on fresh ports: a port that
        was free when picked can be taken by another process before Ray binds it (CI saw a head
        that never came up, once in ~360 cluster starts)."""
        extra, env = [], {}
        if autoscaling_config is not None:
            extra = [f"--autoscaling-config={autoscaling_config}"]
            env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        for attempt in (1, 2):
            head = self._start(["--head", f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}",
                                "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                                f"--num-cpus={num_cpus}", f"--resources={resources}",
                                f"--ray-client-server-port={free_port()}", *extra], f"head{attempt}.log", env)
            try:
                self.wait_for_nodes(1, timeout=90)
                return
            except TimeoutError:
                if attempt == 2:
                    raise
                self.kill_node(head)
                self.gcs_port, self.dashboard_port = free_port(), free_port()
                if autoscaling_config is not None:  # its provider names the head's address
                    import json

                    config = json.loads(Path(autoscaling_config).read_text())
                    Path(autoscaling_config).write_text(json.dumps(self._aimed_at_head(config)))

    def fake_autoscaling_config(self, head_cpus: int, worker_types: dict) -> Path:
        """A `fake_multinode` autoscaler config (the provider Ray's own AutoscalingCluster uses,
        without its `ray stop --force`): worker nodes are real raylets on this machine, joined to
        this head, with the logical resources their type declares (GPUs without hardware)."""
        import json

        config = {
            "max_workers": 8,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "available_node_types": {"ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {},
                                                          "max_workers": 0}, **worker_types},
            "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
            "idle_timeout_minutes": 0.2, "docker": {}, "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
            "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": []}
        path = self.tmp / "autoscaling.json"
        path.write_text(json.dumps(self._aimed_at_head(config)))
        return path

    def _aimed_at_head(self, config: dict) -> dict:
        """An autoscaler config naming this cluster's head (its address, a cluster name of its port)."""
        return {**config, "cluster_name": f"fake-{self.gcs_port}",
                "provider": {**config["provider"], "gcs_address": self.address}}

    def alive_nodes(self) -> list[dict]:
        """The cluster's alive nodes: NodeID and Resources of each."""
        import json

        query = ("import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(json.dumps([{'NodeID': n['NodeID'], 'Resources': n['Resources']} "
                 "for n in ray.nodes() if n['Alive']]))")
        out = subprocess.run([sys.executable, "-c", query, self.address], env=ray_env(),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        # the last line that is the list: an autoscaling cluster's events ("(autoscaler +2s) Adding
        # 1 node(s) of type ...") reach a driver's stdout too
        return json.loads(next(line for line in reversed(out.stdout.splitlines()) if line.startswith("[")))

    def add_worker(self, num_cpus: int, resources: str = "{}") -> subprocess.Popen:
        proc = self._start([f"--address={self.address}", f"--num-cpus={num_cpus}",
                            f"--resources={resources}"], f"worker{self.n_started}.log")
        self.wait_for_nodes(len(self.nodes))
        return proc

    def wait_for_nodes(self, n: int, timeout: float = 120) -> None:
        """Until `ray status` counts n active nodes and the dashboard answers; a node process that
        exits meanwhile, or the deadline, ends the wait with a TimeoutError that quotes the last
        lines of every node's log (a CI machine keeps nothing else)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(proc.poll() is not None for proc in self.nodes):
                break
            try:
                out = subprocess.run([RAY, "status", f"--address={self.address}"], env=ray_env(),
                                     capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                continue
            if out.returncode == 0 and active_nodes(out.stdout) >= n:
                # the dashboard (job server) answers a little after the node is up
                try:
                    with socket.create_connection(("127.0.0.1", self.dashboard_port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(1)
        exited = [f"node {i}: exit {proc.returncode}"
                  for i, proc in enumerate(self.nodes) if proc.poll() is not None]
        logs = "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                         for log in sorted(self.tmp.glob("*.log")))
        raise TimeoutError(f"Ray did not come up with {n} node(s) (exited: {exited or 'none'}): "
                           f"see {self.tmp}\n{logs}")

    def kill_node(self, proc: subprocess.Popen) -> None:
        """SIGKILL a node's process group; it leaves `nodes`, so a later wait neither counts it nor
        takes its exit for a node that failed to start."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.nodes.remove(proc)

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
