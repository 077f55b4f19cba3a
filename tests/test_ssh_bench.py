"""`kd-edge bench --device ssh:...` end to end against a real sshd started on 127.0.0.1 by the test
(temporary host key and authorized_keys, running as the current user, remote python = this interpreter)."""
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kd_edge.benchmarks import harness, schema
from kd_edge.benchmarks.ssh import SSHDevice, parse_target
from kd_edge.errors import KdEdgeError

sys.path.insert(0, str(Path(__file__).parent))
from bench_artifacts import converted_artifacts, make_artifacts  # noqa: E402

SIZE = 32


def _sshd():
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    exe = _sshd()
    if not exe or not shutil.which("ssh-keygen") or not shutil.which("ssh") or not shutil.which("scp"):
        pytest.skip("OpenSSH server/client not installed (.ci/run installs openssh-server when it runs as root)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = _free_port()
    config = d / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password",
        "AllowTcpForwarding no", "X11Forwarding no", "PrintMotd no", "Subsystem sftp internal-sftp", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege-separation directory sshd requires as root
    proc = subprocess.Popen([exe, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {proc.stdout.read().decode()[-1000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("sshd did not start listening")
    opts = ["StrictHostKeyChecking=no", f"UserKnownHostsFile={d / 'known_hosts'}", "ConnectTimeout=10", "LogLevel=ERROR"]
    yield {"target": f"{getpass.getuser()}@127.0.0.1:{port}", "identity": str(d / "client_key"), "ssh_options": opts}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    arts = make_artifacts(tmp_path_factory.mktemp("ssh-arts"), size=SIZE)
    # A hostile file name: spaces, quotes and a command substitution must reach no shell.
    evil = arts["fp32"].with_name("we ird '$(touch INJECTED)' ; x.tflite")
    shutil.copy(arts["fp32"], evil)
    arts["evil"] = evil
    return arts


@pytest.mark.slow
def test_ssh_loopback_end_to_end(sshd, arts, tmp_path):
    doc = harness.bench([str(arts["fp32"]), str(arts["evil"]), str(arts["onnx"])], threads=[1, 2], sizes=[SIZE],
                        runs=10, warmup=2, device="ssh:" + sshd["target"], remote_python=sys.executable,
                        identity=sshd["identity"], ssh_options=sshd["ssh_options"])
    schema.validate(doc)
    assert doc["device"] == {"kind": "ssh", "target": sshd["target"], "remote_python": sys.executable,
                             "benchmark_model": None}
    assert doc["controller"]["cpu_model"] and doc["host"]["runtimes"]["onnxruntime"]
    assert len(doc["results"]) == 6
    for r in doc["results"]:
        assert r["status"] == "ok", r
        lat = r["latency_ms"]
        assert lat["min"] <= lat["p50"] <= lat["max"] and r["runs"] == 10 and r["peak_rss_mb"] > 0
    assert {r["artifact"] for r in doc["results"]} == {str(arts["fp32"]), str(arts["evil"]), str(arts["onnx"])}
    # no shell ever saw the file name; the remote temp dir is removed afterwards
    assert not list(Path.home().glob("INJECTED")) and not list(Path.cwd().glob("INJECTED"))
    assert not list(Path("/tmp").glob("kd-edge-bench.*"))


@pytest.mark.slow
def test_cli_over_ssh_writes_the_json(sshd, arts, tmp_path, kd_edge_exe):
    out = tmp_path / "ssh.json"
    cmd = [kd_edge_exe, "bench", str(arts["int8"]), "--device", "ssh:" + sshd["target"], "--remote-python",
           sys.executable, "--identity", sshd["identity"], "--threads", "1", "--size", str(SIZE), "--runs", "5",
           "--warmup", "1", "--json", str(out)]
    for o in sshd["ssh_options"]:
        cmd += ["--ssh-option", o]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    doc = schema.read_results(out)
    assert doc["results"][0]["status"] == "ok" and doc["results"][0]["input_dtype"] == "int8"
    assert "no roofline peak for the remote host" in " ".join(doc["notes"])


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converted_artifacts(tmp_path_factory.mktemp("ssh-parity"), size=SIZE, targets=("tflite-fp32", "onnx-int8"))


@pytest.mark.slow
def test_ssh_measures_parity_on_the_board_and_fails_a_mismatch(sshd, converted):
    paths = [str(converted["onnx-int8"]), str(converted["mismatch"])]
    doc = harness.bench(paths, threads=[1], sizes=[SIZE], runs=3, warmup=1, device="ssh:" + sshd["target"],
                        remote_python=sys.executable, identity=sshd["identity"], ssh_options=sshd["ssh_options"])
    schema.validate(doc)
    good, bad = doc["results"]
    assert doc["host"]["isa_flags"] and doc["controller"]["isa_flags"]  # CPU flags of the board and of the controller
    assert good["status"] == "ok" and good["parity"]["measured"] and good["parity"]["passed"]
    assert good["parity"]["psnr_db"] >= 30 and good["parity"]["probe_shape"] == [SIZE, SIZE, 3]
    assert bad["status"] == "failed" and bad["parity"]["passed"] is False and "< gate 60 dB on this host" in bad["reason"]
    assert not list(Path("/tmp").glob("kd-edge-bench.*"))


def test_ssh_failures_are_clear(sshd, arts):
    with pytest.raises(KdEdgeError, match="running /no/such/python on the remote host"):
        harness.bench([str(arts["fp32"])], threads=[1], sizes=[SIZE], runs=2, warmup=0,
                      device="ssh:" + sshd["target"], remote_python="/no/such/python",
                      identity=sshd["identity"], ssh_options=sshd["ssh_options"])
    port = _free_port()
    with pytest.raises(KdEdgeError, match="connecting failed"):
        harness.bench([str(arts["fp32"])], threads=[1], sizes=[SIZE], runs=2, warmup=0,
                      device=f"ssh:nobody@127.0.0.1:{port}", identity=sshd["identity"], ssh_options=sshd["ssh_options"])


def test_ssh_commands_are_argument_lists():
    if not shutil.which("ssh"):
        pytest.skip("no ssh client")
    assert parse_target("ubuntu@jetson.local:2222") == ("ubuntu", "jetson.local", 2222)
    assert parse_target("jetson") == (None, "jetson", None)
    for bad in ("a b", "u@h;rm -rf /", "", "u@h:port"):
        with pytest.raises(KdEdgeError, match="bad ssh target"):
            parse_target(bad)
    dev = SSHDevice("me@board:22", remote_python="/opt/py 3/bin/python", ssh_options=["ConnectTimeout=5"])
    cmd = dev.ssh_command(["/opt/py 3/bin/python", "runner.py", "a b.tflite"])
    assert cmd[0].endswith("ssh") and "-p" in cmd and cmd[cmd.index("-p") + 1] == "22"
    assert cmd[-2:] == ["--", "'/opt/py 3/bin/python' runner.py 'a b.tflite'"]
    scp = dev.scp_command(["/x/my model.tflite"], "me@board:/tmp/kd-edge-bench.1/artifact-0.tflite")
    assert "-P" in scp and scp[-2] == "/x/my model.tflite"
