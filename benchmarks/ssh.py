"""Benchmark on a Jetson or any Linux board over ssh: copy the standalone runner and each artifact, run the runner
there with the remote python (it needs only numpy and the runtime), bring the JSON back with scp.

Every ssh/scp call is an argument list (no local shell). The remote command line that ssh hands to the remote shell
is built with ``shlex.join`` from fixed tokens; artifacts are copied under fixed names (``artifact-<i><suffix>``)
into a ``mktemp -d`` directory, so user file names never reach a shell.
"""
import json
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from kd_edge.benchmarks.harness import RUNNER_PATH, parity_args, parse_runner_output
from kd_edge.benchmarks.host import local_host_facts
from kd_edge.errors import KdEdgeError

_TARGET = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d+))?$")


def parse_target(text):
    """'user@host[:port]' -> (user or None, host, port or None). KdEdgeError on anything else."""
    m = _TARGET.match(text or "")
    if not m:
        raise KdEdgeError(f"bad ssh target {text!r}: expected ssh:USER@HOST[:PORT]")
    port = int(m.group("port")) if m.group("port") else None
    return m.group("user"), m.group("host").strip("[]"), port


class SSHDevice:
    kind = "ssh"

    def __init__(self, target, *, remote_python="python3", identity=None, ssh_options=(), timeout=1800,
                 ssh="ssh", scp="scp"):
        self.user, self.host, self.port = parse_target(target)
        self.target = target
        self.remote_python = remote_python
        self.identity = identity
        self.ssh_options = list(ssh_options)
        self.timeout = timeout
        self.ssh_exe = shutil.which(ssh)
        self.scp_exe = shutil.which(scp)
        if not self.ssh_exe or not self.scp_exe:
            raise KdEdgeError("ssh/scp not found on PATH: install the OpenSSH client to use --device ssh:...")
        self.workdir = None
        self._pushed = {}
        self._local_tmp = None

    # -- plumbing
    @property
    def _dest(self):
        return f"{self.user}@{self.host}" if self.user else self.host

    def _common(self):
        opts = ["-o", "BatchMode=yes"]
        for o in self.ssh_options:
            opts += ["-o", o]
        if self.identity:
            opts += ["-i", str(self.identity)]
        return opts

    def ssh_command(self, argv):
        """The local argument list that runs ``argv`` (a list) on the remote host."""
        port = ["-p", str(self.port)] if self.port else []
        return [self.ssh_exe, *self._common(), *port, self._dest, "--", shlex.join([str(a) for a in argv])]

    def scp_command(self, sources, dest, recursive=False):
        port = ["-P", str(self.port)] if self.port else []
        return [self.scp_exe, *self._common(), *port, *(["-r"] if recursive else []), *map(str, sources), str(dest)]

    def _remote(self, path):
        return f"{self._dest}:{path}"

    def _run(self, cmd, what):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise KdEdgeError(f"ssh {self.target}: {what} timed out after {self.timeout} s") from None
        return res

    def _check(self, res, what):
        if res.returncode != 0:
            msg = (res.stderr or res.stdout).strip().splitlines()
            raise KdEdgeError(f"ssh {self.target}: {what} failed (exit {res.returncode}): {msg[-1] if msg else ''}")
        return res

    # -- lifecycle
    def __enter__(self):
        res = self._check(self._run(self.ssh_command(["mktemp", "-d", "/tmp/kd-edge-bench.XXXXXX"]), "mktemp"),
                          "connecting")
        self.workdir = res.stdout.strip().splitlines()[-1]
        if not self.workdir.startswith("/tmp/kd-edge-bench."):
            raise KdEdgeError(f"ssh {self.target}: unexpected remote temp dir {self.workdir!r}")
        self._check(self._run(self.scp_command([RUNNER_PATH], self._remote(f"{self.workdir}/runner.py")),
                              "copying the runner"), "copying the runner")
        self._local_tmp = tempfile.mkdtemp(prefix="kd-edge-ssh-")
        return self

    def __exit__(self, *exc):
        if self.workdir:
            self._run(self.ssh_command(["rm", "-rf", self.workdir]), "cleanup")
        if self._local_tmp:
            shutil.rmtree(self._local_tmp, ignore_errors=True)
        return False

    def host_facts(self):
        res = self._check(self._run(self.ssh_command([self.remote_python, f"{self.workdir}/runner.py", "--host-facts"]),
                                    "host facts"), f"running {self.remote_python} on the remote host")
        try:
            return json.loads(res.stdout)
        except ValueError:
            raise KdEdgeError(f"ssh {self.target}: the runner printed no JSON for --host-facts") from None

    def controller_facts(self):
        return local_host_facts()

    def push(self, artifact, suffix=None):
        if artifact not in self._pushed:
            p = Path(str(artifact).rstrip("/"))
            remote = f"{self.workdir}/artifact-{len(self._pushed)}{suffix or p.suffix}"
            self._check(self._run(self.scp_command([p], self._remote(remote), recursive=p.is_dir()),
                                  f"copying {p.name}"), f"copying {p.name}")
            self._pushed[artifact] = remote
        return self._pushed[artifact]

    def measure(self, artifact, info, *, threads, size, runs, warmup, use_xnnpack=True):
        remote = self.push(artifact)
        probe = info["parity_probe"].get("path")
        remote_probe = self.push(probe, ".parity.npz") if probe else None
        out = f"{self.workdir}/result.json"
        argv = ["env", f"OMP_NUM_THREADS={threads}", f"OPENBLAS_NUM_THREADS={threads}", "TF_CPP_MIN_LOG_LEVEL=3",
                "TF_USE_LEGACY_KERAS=1", self.remote_python, f"{self.workdir}/runner.py", remote,
                "--threads", str(threads), "--size", str(size), "--runs", str(runs), "--warmup", str(warmup),
                "--out", out, *([] if use_xnnpack else ["--no-xnnpack"]), *parity_args(info, remote_probe)]
        res = self._run(self.ssh_command(argv), "runner")
        if res.returncode != 0:
            return parse_runner_output(res.returncode, "", res.stderr)
        local = Path(self._local_tmp) / "result.json"
        self._check(self._run(self.scp_command([self._remote(out)], local), "fetching the result"), "fetching the result")
        raw = parse_runner_output(0, local.read_text(), "")
        local.unlink()
        if raw.get("artifact") == remote:
            raw["artifact"] = str(artifact)
        return raw
