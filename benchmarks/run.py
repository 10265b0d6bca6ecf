"""menda-keyring benchmark: every figure side by side in one run, on loopback.

    .venv/bin/python benchmarks/run.py [--quick] [--rounds N] [--json PATH]

Prints the machine, a table (medians with min and max, ratios, targets) and writes
``benchmarks/results/latest.json``. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.menda_cloud import FakeCloudControl  # noqa: E402

PY = Path(sys.executable)
BIN = PY.parent
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"
PYPI_URL = "https://pypi.org/simple/"
CA_URL = (
    "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/menda-plugins/simple/"
)
OWNER = "058264169513"
SKIP_DAEMON = "skipped: daemon not available"
TARGETS = {
    "2_plugin_startup": 1.05,
    "2b_plugin_startup_wheel_venv": 1.05,
    "3_warm_daemon": 1.10,
    "3b_warm_daemon_wheel_venv": 1.10,
    "4_in_process_cached_menda_token": 1.5,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- machine and environments ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    uv_version = subprocess.run(
        [str(BIN / "uv"), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "uname": " ".join(platform.uname()),
        "cpu_model": cpu,
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_executable": str(PY),
        "uv": uv_version,
    }


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def ensure_venv(name: str, packages: list[str]) -> Path:
    """benchmarks/.venvs/<name> with ``packages`` from PyPI; reused between runs."""
    venv = VENVS / name
    marker = venv / ".bench-ready"
    want = " ".join(packages)
    if marker.exists() and marker.read_text() == want:
        return venv
    log(f"creating {venv} with {want} (cached for later runs)")
    shutil.rmtree(venv, ignore_errors=True)
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", str(PY), str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *packages],
        check=True,
    )
    marker.write_text(want)
    return venv


def source_hash() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(
        [ROOT / "pyproject.toml", *ROOT.glob("menda_keyring/*.py"), *ROOT.glob("menda_credd/*.py")]
    ):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_plugin_venv() -> Path:
    """benchmarks/.venvs/plugin: keyring + menda-keyring built from this checkout as a
    wheel (not editable), as users install it; rebuilt when the sources change."""
    venv = VENVS / "plugin"
    marker = venv / ".bench-ready"
    want = "keyring + menda-keyring " + source_hash()
    if marker.exists() and marker.read_text() == want:
        return venv
    log(f"creating {venv}: keyring and menda-keyring from {ROOT} (not editable)")
    shutil.rmtree(venv, ignore_errors=True)
    uv = str(BIN / "uv")
    subprocess.run([uv, "venv", "-q", "--python", str(PY), str(venv)], check=True)
    with tempfile.TemporaryDirectory(prefix="mbench-src-") as src:
        # Build from a copy: a build in the checkout would leave build/ behind.
        shutil.copytree(
            ROOT,
            src,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "benchmarks", "tests", "*.egg-info", "__pycache__", "build"
            ),
        )
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), src],
            check=True,
        )
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")],
        check=False,
        capture_output=True,
    )
    marker.write_text(want)
    return venv


def daemon_available() -> str | None:
    """None when menda_credd is importable and menda-credd runs, else why not."""
    if importlib.util.find_spec("menda_credd") is None:
        return "menda_credd is not importable"
    exe = BIN / "menda-credd"
    if not exe.exists():
        return f"{exe} does not exist"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return f"menda-credd --help failed: {out.stderr.strip()[:200]}"
    return None


# -- the world: fake menda-cloud, index and proxy; fake AWS ------------------------------------


class Proc:
    """A helper process that prints one JSON line when ready and exits when stdin closes."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{cmd} did not start")
        self.info: dict[str, Any] = json.loads(line) if line.startswith("{") else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def cpu_ns(pid: int) -> int:
    """Time on CPU in nanoseconds (/proc/<pid>/schedstat), finer than clock ticks."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Daemon:
    """``menda-credd start`` (detached) with its own HOME and socket; ``stop`` at the end."""

    def __init__(self, home: Path, sock: Path, extra: dict[str, str] | None = None) -> None:
        self.env = {
            "HOME": str(home),
            "PATH": f"{BIN}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "MENDA_CREDD_SOCKET": str(sock),
            **(extra or {}),
        }
        self.sock = sock
        self.pid: int | None = None

    def start(self) -> Daemon:
        out = subprocess.run(
            [str(BIN / "menda-credd"), "start", "--log-level", "warning"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"menda-credd start failed: {out.stdout}{out.stderr}")
        self.pid = int(self.status()["pid"])
        return self

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [str(BIN / "menda-credd"), "status", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return json.loads(out.stdout)

    def stop(self) -> None:
        subprocess.run(
            [str(BIN / "menda-credd"), "stop"],
            env=self.env,
            capture_output=True,
            timeout=30,
            check=False,
        )


# -- statistics --------------------------------------------------------------------------------


def summary(samples: list[float], scale: float = 1000.0) -> dict[str, Any]:
    return {
        "n": len(samples),
        "median_ms": round(statistics.median(samples) * scale, 3),
        "min_ms": round(min(samples) * scale, 3),
        "max_ms": round(max(samples) * scale, 3),
    }


def ratio_stats(
    num: list[float],
    den: list[float],
    cpu_num: list[float] | None = None,
    cpu_den: list[float] | None = None,
) -> dict[str, float]:
    """Ratio of medians, min/max of the per-round paired ratios, the ratio of the minima
    (the least disturbed runs) and the ratio of median CPU times."""
    paired = [a / b for a, b in zip(num, den, strict=True)]
    out = {
        "ratio": round(statistics.median(num) / statistics.median(den), 4),
        "paired_ratio_median": round(statistics.median(paired), 4),
        "paired_ratio_min": round(min(paired), 4),
        "paired_ratio_max": round(max(paired), 4),
        "ratio_of_minima": round(min(num) / min(den), 4),
    }
    if cpu_num and cpu_den and statistics.median(cpu_den) > 0:
        out["cpu_ratio"] = round(statistics.median(cpu_num) / statistics.median(cpu_den), 4)
    return out


def timed(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Wall time of one process, and its CPU time (user + sys, from wait4): the CPU time
    hardly moves when other work competes for the machine, the wall time does."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            err.seek(0)
            text = err.read().decode(errors="replace")[-500:]
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {text}")
    return elapsed, usage.ru_utime + usage.ru_stime


# -- the benchmark -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.quick = args.quick
        self.rounds = args.rounds or (3 if self.quick else 40)
        self.tmp = Path(tempfile.mkdtemp(prefix="mbench-", dir="/tmp"))
        self.tmp.chmod(0o700)
        self.figures: dict[str, Any] = {}
        self.daemon_reason = daemon_available()
        self.stack = contextlib.ExitStack()

    # -- setup -------------------------------------------------------------------------

    def setup(self) -> None:
        self.floor = ensure_venv("floor", ["keyring"])
        self.peer = ensure_venv("codeartifact", ["keyrings.codeartifact"])
        self.plugin = ensure_plugin_venv()
        self.world = Proc(
            [
                str(PY),
                "-m",
                "tests.fakes.world",
                "--state-dir",
                str(self.tmp / "world"),
                "--exit-on-stdin-close",
            ]
        )
        self.stack.callback(self.world.stop)
        self.info = self.world.info
        self.cloud = FakeCloudControl(self.info["cloud_url"])
        self.aws = Proc([str(PY), str(HERE / "fake_codeartifact.py")])
        self.stack.callback(self.aws.stop)
        self.secret = "bench-secret-0"
        self.cloud.add_client("bench", self.secret)
        self.home = self.mkhome("home")
        self.sock = self.tmp / "credd.sock"
        self.daemon: Daemon | None = None
        if self.daemon_reason is None:
            try:
                self.daemon = Daemon(self.tmp / "daemon-home", self.sock)
                (self.tmp / "daemon-home").mkdir()
                self.daemon.start()
                self.stack.callback(self.daemon.stop)
            except (RuntimeError, OSError, ValueError, KeyError) as exc:
                self.daemon_reason = f"menda-credd did not start: {exc}"
                self.daemon = None

    def mkhome(self, name: str) -> Path:
        home = self.tmp / name
        home.mkdir(parents=True, exist_ok=True)
        return home

    def env(
        self, home: Path, bin_dir: Path = BIN, client: str = "bench", secret: str | None = None
    ) -> dict[str, str]:
        return {
            "HOME": str(home),
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "MENDA_CLIENT_ID": client,
            "MENDA_CLIENT_SECRET": secret or self.secret,
            "MENDA_HOST": self.info["cloud_url"],
            "MENDA_CREDD_SOCKET": str(self.sock),
        }

    # -- figures 1-4 and 10: one `keyring get` per process, round-robin ----------------

    def startup_figures(self) -> None:
        peer_home = self.mkhome("peer-home")
        peer_env = {
            "HOME": str(peer_home),
            "PATH": f"{self.peer / 'bin'}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL_CODEARTIFACT": self.aws.info["url"],
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        # keyrings.codeartifact reads [codeartifact] from keyring's config_root()/keyringrc.cfg
        cfg = peer_home / ".config" / "python_keyring"
        cfg.mkdir(parents=True)
        (cfg / "keyringrc.cfg").write_text("[codeartifact]\ntoken_duration = 3600\n")
        inproc_env = {**self.env(self.home), "MENDA_CREDD": "off"}
        commands: dict[str, tuple[list[str], dict[str, str], tuple[int, ...]]] = {
            "1_floor_keyring_only": (
                [str(self.floor / "bin" / "keyring"), "get", PYPI_URL, "aws"],
                self.env(self.home, self.floor / "bin"),
                (0, 1),
            ),
            "2_plugin_startup": (
                [str(BIN / "keyring"), "get", PYPI_URL, "aws"],
                self.env(self.home),
                (0, 1),
            ),
            "2b_plugin_startup_wheel_venv": (
                [str(self.plugin / "bin" / "keyring"), "get", PYPI_URL, "aws"],
                self.env(self.home, self.plugin / "bin"),
                (0, 1),
            ),
            "4_in_process_cached_menda_token": (
                [str(BIN / "keyring"), "get", CA_URL, "aws"],
                inproc_env,
                (0,),
            ),
            "10_peer_keyrings_codeartifact": (
                [str(self.peer / "bin" / "keyring"), "get", CA_URL, "aws"],
                peer_env,
                (0,),
            ),
        }
        if self.daemon is not None:
            commands["3_warm_daemon"] = (
                [str(BIN / "keyring"), "get", CA_URL, "aws"],
                self.env(self.home),
                (0,),
            )
            commands["3b_warm_daemon_wheel_venv"] = (
                [str(self.plugin / "bin" / "keyring"), "get", CA_URL, "aws"],
                self.env(self.home, self.plugin / "bin"),
                (0,),
            )
        # Warm-up: .pyc files, the disk-cached Menda token, the daemon's token.
        for cmd, env, ok in commands.values():
            for _ in range(1 if self.quick else 2):
                timed(cmd, env, ok)
        self.cloud.reset_counts()
        calls0 = self.aws_calls()
        samples: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        log(f"figures 1-4, 10: {self.rounds} interleaved rounds of {len(names)} commands")
        for r in range(self.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # rotate the start
            for name in order:
                cmd, env, ok = commands[name]
                wall, used = timed(cmd, env, ok)
                samples[name].append(wall)
                cpu[name].append(used)
        counts = self.cloud.counts()
        floor = samples["1_floor_keyring_only"]
        floor_cpu = cpu["1_floor_keyring_only"]
        for name in names:
            fig: dict[str, Any] = {"command": " ".join(commands[name][0][1:])}
            fig.update(summary(samples[name]))
            fig["cpu_median_ms"] = round(statistics.median(cpu[name]) * 1000, 3)
            if name != "1_floor_keyring_only":
                fig["vs_floor"] = ratio_stats(samples[name], floor, cpu[name], floor_cpu)
            self.figures[name] = fig
        self.figures["4_in_process_cached_menda_token"]["cloud_calls_per_run"] = {
            "oauth": counts["oauth"] / self.rounds,
            "registry": counts["registry"] / self.rounds,
        }
        peer = self.figures["10_peer_keyrings_codeartifact"]
        peer["aws_calls_per_run"] = (self.aws_calls() - calls0) / self.rounds
        peer["note"] = (
            "keyrings.codeartifact 2.x with boto3 against benchmarks/fake_codeartifact.py "
            "(AWS_ENDPOINT_URL_CODEARTIFACT); it caches nothing, so every run is a "
            "GetAuthorizationToken call"
        )
        if self.daemon is not None:
            peer["ours_warm_daemon_vs_peer"] = ratio_stats(
                samples["3_warm_daemon"],
                samples["10_peer_keyrings_codeartifact"],
                cpu["3_warm_daemon"],
                cpu["10_peer_keyrings_codeartifact"],
            )
            self.figures["3_warm_daemon"]["cloud_calls_total"] = counts["registry"]
        else:
            self.figures["3_warm_daemon"] = SKIP_DAEMON
            self.figures["3b_warm_daemon_wheel_venv"] = SKIP_DAEMON
            peer["ours_warm_daemon_vs_peer"] = SKIP_DAEMON

    def aws_calls(self) -> int:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.aws.info["url"] + "/_calls", timeout=5) as resp:
            return int(json.loads(resp.read())["calls"])

    # -- figure 5: in-process latency through the daemon vs a bare echo -----------------

    def latency(self) -> None:
        if self.daemon is None:
            self.figures["5_latency_in_process"] = SKIP_DAEMON
            return
        calls = 300 if self.quick else 2000
        echo_sock = self.tmp / "echo.sock"
        echo = subprocess.Popen(
            [str(PY), str(HERE / "echo_server.py"), str(echo_sock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert echo.stdout is not None
            echo.stdout.readline()
            log(f"figure 5: {calls} keyring.get_password calls through the daemon, and echo")
            out = subprocess.run(
                [
                    str(PY),
                    str(HERE / "latency.py"),
                    "--url",
                    CA_URL,
                    "--echo-socket",
                    str(echo_sock),
                    "--calls",
                    str(calls),
                ],
                env=self.env(self.home),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        finally:
            assert echo.stdin is not None
            echo.stdin.close()
            echo.wait(10)
        if out.returncode != 0:
            raise RuntimeError(f"latency.py failed: {out.stdout}{out.stderr[-2000:]}")
        self.figures["5_latency_in_process"] = json.loads(out.stdout)

    # -- figure 6: throughput, RSS, idle CPU ----------------------------------------------

    def loadgen(self, spec: list[tuple[str, dict[str, str]]], **kw: Any) -> dict[str, Any]:
        spec_file = self.tmp / "spec.json"
        spec_file.write_text(json.dumps(spec))
        cmd = [
            str(PY),
            str(HERE / "loadgen.py"),
            "--socket",
            str(self.sock),
            "--spec",
            str(spec_file),
        ]
        for key, value in kw.items():
            cmd += [f"--{key}", str(value)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout)

    def throughput(self) -> None:
        if self.daemon is None or self.daemon.pid is None:
            self.figures["6_throughput_rss_idle"] = SKIP_DAEMON
            return
        pid = self.daemon.pid
        fig: dict[str, Any] = {"daemon_pid": pid, "rss_mb_start": round(rss_mb(pid), 2)}
        seconds = 1.0 if self.quick else 10.0
        one = [(CA_URL, {**self.env(self.home), "MENDA_CREDD_SOCKET": ""})]
        for entry in one:
            entry[1].pop("MENDA_CREDD_SOCKET")
            entry[1].pop("PATH")
            entry[1].pop("LANG")
        log(f"figure 6: 64 connections for {seconds} s, one identity")
        cpu0 = cpu_seconds(pid)
        run = self.loadgen(one, connections=64, seconds=seconds)
        fig["hot_64_connections"] = run
        fig["hot_daemon_cpu_share"] = round((cpu_seconds(pid) - cpu0) / run["seconds"], 3)
        fig["rss_mb_after_hot"] = round(rss_mb(pid), 2)

        n_ids = 50 if self.quick else 1000
        total = 5000 if self.quick else 100_000
        log(f"figure 6: registering {n_ids} clients and domains in the fake")
        spec = []
        many_home = self.mkhome("many-home")
        for i in range(n_ids):
            client, secret, domain = f"many-{i}", f"sec-{i}", f"bench-dom-{i}"
            self.cloud.add_client(client, secret)
            self.cloud.add_domain(domain, OWNER)
            url = (
                f"https://aws@{domain}-{OWNER}.d.codeartifact.eu-west-1.amazonaws.com"
                "/pypi/menda-plugins/simple/"
            )
            env = self.env(many_home, client=client, secret=secret)
            for key in ("MENDA_CREDD_SOCKET", "PATH", "LANG"):
                env.pop(key)
            spec.append((url, env))
        self.cloud.reset_counts()
        log(f"figure 6: {total} requests over {n_ids} identities x domains, 64 connections")
        # First touch of every entry (cold: one OAuth + one registry exchange each), then
        # the rest warm; reported apart and together.
        cold = self.loadgen(spec, connections=64, requests=n_ids)
        counts = self.cloud.counts()
        warm = self.loadgen(spec, connections=64, requests=total - n_ids)
        counts_after = self.cloud.counts()
        seconds = cold["seconds"] + warm["seconds"]
        answers = cold["answers"] + warm["answers"]
        fig["many_identities"] = {
            "answers": answers,
            "errors": cold["errors"] + warm["errors"],
            "first_error": cold["first_error"] or warm["first_error"],
            "seconds": seconds,
            "answers_per_s": answers / seconds if seconds else 0.0,
            "cold_first_touch": cold,
            "warm": warm,
            "identities_and_domains": n_ids,
            "cloud_oauth": counts_after["oauth"],
            "cloud_registry": counts_after["registry"],
            "cloud_calls_during_warm": counts_after["oauth"]
            + counts_after["registry"]
            - counts["oauth"]
            - counts["registry"],
        }
        fig["rss_mb_after_many"] = round(rss_mb(pid), 2)
        status = self.daemon.status()
        fig["daemon_entries"] = len(status.get("entries", []))
        fig["daemon_counters"] = status.get("counters")
        idle = 3.0 if self.quick else 60.0
        log(f"figure 6: {idle} s idle")
        cpu0, ns0 = cpu_seconds(pid), cpu_ns(pid)
        time.sleep(idle)
        fig["idle_seconds"] = idle
        fig["idle_cpu_seconds"] = round(cpu_seconds(pid) - cpu0, 4)
        fig["idle_cpu_seconds_schedstat"] = round((cpu_ns(pid) - ns0) / 1e9, 6)
        fig["rss_mb_after_idle"] = round(rss_mb(pid), 2)
        self.figures["6_throughput_rss_idle"] = fig

    # -- figure 7: cold herd ---------------------------------------------------------------

    def herd(self) -> None:
        n = 16 if self.quick else 64
        fig: dict[str, Any] = {"processes": n}
        modes = ["without_daemon"] + (["with_daemon"] if self.daemon is not None else [])
        for mode in modes:
            client = f"herd-{mode}"
            secret = f"herd-secret-{mode}"
            self.cloud.add_client(client, secret)
            env = self.env(self.mkhome(f"herd-{mode}"), client=client, secret=secret)
            if mode == "without_daemon":
                env["MENDA_CREDD"] = "off"
            self.cloud.reset_counts()
            log(f"figure 7: {n} cold keyring get processes, {mode}")
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [str(BIN / "keyring"), "get", CA_URL, "aws"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for _ in range(n)
            ]
            codes = [p.wait(120) for p in procs]
            for p in procs:
                assert p.stderr is not None
                p.stderr.close()
            wall = time.perf_counter() - t0
            counts = self.cloud.counts()
            fig[mode] = {
                "wall_s": round(wall, 3),
                "failed": sum(1 for c in codes if c != 0),
                "oauth": counts["oauth"],
                "registry": counts["registry"],
            }
        if self.daemon is None:
            fig["with_daemon"] = SKIP_DAEMON
        self.figures["7_cold_herd"] = fig

    # -- figure 8: 16 parallel uv pip installs ------------------------------------------

    def uv_installs(self) -> None:
        n = 4 if self.quick else 16
        trials = 1 if self.quick else 3
        uv = str(BIN / "uv")
        keyring_bin = self.tmp / "keyring-only-bin"
        keyring_bin.mkdir(exist_ok=True)
        if not (keyring_bin / "keyring").exists():
            (keyring_bin / "keyring").symlink_to(BIN / "keyring")
        fig: dict[str, Any] = {"installs": n, "package": "menda-hello", "trials": trials}
        modes = ["without_daemon"] + (["with_daemon"] if self.daemon is not None else [])
        for mode in modes:
            runs = []
            for trial in range(trials):
                client = f"uv-{mode}-{trial}"
                secret = f"uv-secret-{mode}-{trial}"
                self.cloud.add_client(client, secret)
                box = self.tmp / f"uv-{mode}-{trial}"
                home = self.mkhome(f"uv-{mode}-{trial}/home")
                env = self.env(home, keyring_bin, client=client, secret=secret)
                env.update(
                    {
                        "HTTPS_PROXY": self.info["proxy_url"],
                        "HTTP_PROXY": self.info["proxy_url"],
                        "SSL_CERT_FILE": self.info["ca_pem"],
                        "UV_PYTHON_DOWNLOADS": "never",
                        "UV_NO_CACHE": "1",
                        "UV_NO_CONFIG": "1",
                        "UV_NO_PROGRESS": "1",
                        "TMPDIR": str(box),
                    }
                )
                if mode == "without_daemon":
                    env["MENDA_CREDD"] = "off"
                venvs = [box / f"venv{i}" for i in range(n)]
                for venv in venvs:
                    subprocess.run(
                        [uv, "venv", "-q", "--python", str(PY), str(venv)],
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                self.cloud.reset_counts()
                log(f"figure 8: {n} parallel uv pip install, {mode}, trial {trial + 1}")
                t0 = time.perf_counter()
                procs = [
                    subprocess.Popen(
                        [
                            uv,
                            "pip",
                            "install",
                            "-q",
                            "--python",
                            str(venv / "bin" / "python"),
                            "--keyring-provider",
                            "subprocess",
                            "--index-url",
                            self.info["index_url"],
                            "menda-hello",
                        ],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for venv in venvs
                ]
                errors = []
                for p in procs:
                    _, err = p.communicate(timeout=300)
                    if p.returncode != 0:
                        errors.append(err[-300:])
                wall = time.perf_counter() - t0
                counts = self.cloud.counts()
                runs.append(
                    {
                        "wall_s": round(wall, 3),
                        "failed": len(errors),
                        "first_error": errors[0] if errors else None,
                        "oauth": counts["oauth"],
                        "registry": counts["registry"],
                    }
                )
                shutil.rmtree(box, ignore_errors=True)
            walls = [r["wall_s"] for r in runs]
            fig[mode] = {
                "wall_s_median": round(statistics.median(walls), 3),
                "wall_s_min": min(walls),
                "wall_s_max": max(walls),
                "oauth_per_trial": [r["oauth"] for r in runs],
                "registry_per_trial": [r["registry"] for r in runs],
                "failed": sum(r["failed"] for r in runs),
                "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
            }
        if self.daemon is None:
            fig["with_daemon"] = SKIP_DAEMON
        self.figures["8_parallel_uv_installs"] = fig

    # -- figure 9: a simulated day ------------------------------------------------------

    def simday(self) -> None:
        if importlib.util.find_spec("menda_credd") is None:
            self.figures["9_simulated_day"] = SKIP_DAEMON
            return
        log("figure 9: a simulated day on a virtual clock")
        pairs = 4 if self.quick else 8
        out = subprocess.run(
            [str(PY), str(HERE / "simday.py"), "--pairs", str(pairs)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"simday.py failed: {out.stderr[-2000:]}")
        self.figures["9_simulated_day"] = json.loads(out.stdout)

    # -- all -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        result: dict[str, Any] = {
            "mode": "quick" if self.quick else "full",
            "rounds": self.rounds,
            "machine": machine(),
            "daemon": "available" if self.daemon_reason is None else self.daemon_reason,
            "loadavg_start": loadavg(),
        }
        busy = result["loadavg_start"][:1]
        if busy and busy[0] > 0.5 * (os.cpu_count() or 1):
            log(f"WARNING: the machine is busy (load {busy[0]}): wall times will be noisy")
        with self.stack:
            self.setup()
            if self.daemon_reason is not None:
                result["daemon"] = self.daemon_reason
            steps: list[tuple[str, Callable[[], None]]] = [
                ("startup", self.startup_figures),
                ("latency", self.latency),
                ("throughput", self.throughput),
                ("herd", self.herd),
                ("uv", self.uv_installs),
                ("simday", self.simday),
            ]
            for name, step in steps:
                t0 = time.perf_counter()
                try:
                    step()
                except Exception as exc:  # report, and go on with the rest
                    log(f"{name} failed: {exc!r}")
                    result.setdefault("errors", {})[name] = repr(exc)[:2000]
                result.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(self.tmp, ignore_errors=True)
        result["figures"] = self.figures
        result["targets"] = targets(self.figures)
        result["loadavg_end"] = loadavg()
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        return result


# -- targets and the table -----------------------------------------------------------------


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def targets(f: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, met: bool | None) -> None:
        rows.append({"target": name, "value": value, "goal": target, "met": met})

    for key, bound in TARGETS.items():
        ratio = _get(f, key, "vs_floor", "ratio")
        add(
            f"{key} ratio vs floor", ratio, f"<= {bound}", None if ratio is None else ratio <= bound
        )
    p50 = _get(f, "5_latency_in_process", "keyring_get_password", "p50_us")
    p99 = _get(f, "5_latency_in_process", "keyring_get_password", "p99_us")
    add("5 get_password p50 (us)", p50, "<= 200", None if p50 is None else p50 <= 200)
    add("5 get_password p99 (us)", p99, "<= 1000", None if p99 is None else p99 <= 1000)
    rate = _get(f, "6_throughput_rss_idle", "hot_64_connections", "answers_per_s")
    add("6 answers/s, 64 connections", rate, ">= 5000", None if rate is None else rate >= 5000)
    rss = [
        _get(f, "6_throughput_rss_idle", k)
        for k in ("rss_mb_after_hot", "rss_mb_after_many", "rss_mb_after_idle")
    ]
    rss_max = max((r for r in rss if r is not None), default=None)
    add("6 daemon RSS max (MB)", rss_max, "<= 50", None if rss_max is None else rss_max <= 50)
    idle = _get(f, "6_throughput_rss_idle", "idle_cpu_seconds_schedstat")
    if idle is None or idle < 0:
        idle = _get(f, "6_throughput_rss_idle", "idle_cpu_seconds")
    secs = _get(f, "6_throughput_rss_idle", "idle_seconds")
    add(f"6 idle CPU s over {secs} s", idle, "< 0.1 per 60 s", None if idle is None else idle < 0.1)
    with_d = _get(f, "7_cold_herd", "with_daemon")
    if isinstance(with_d, dict):
        value = f"{with_d['oauth']} oauth + {with_d['registry']} registry"
        ok = with_d["oauth"] == 1 and with_d["registry"] == 1 and not with_d["failed"]
        add("7 herd with daemon", value, "1 + 1", ok)
    else:
        add("7 herd with daemon", with_d, "1 + 1", None)
    without = _get(f, "7_cold_herd", "without_daemon")
    if isinstance(without, dict):
        add("7 herd without daemon: oauth", without["oauth"], "1", without["oauth"] == 1)
    for name in ("12h", "1h"):
        sim = _get(f, "9_simulated_day", name)
        if isinstance(sim, dict):
            add(
                f"9 exchanges/pair/day, {name} tokens",
                sim["registry_exchanges_per_pair_max"],
                f"<= {sim['bound_per_pair']}",
                sim["within_bound"],
            )
    out = _get(f, "9_simulated_day", "12h_outage", "outage")
    if isinstance(out, dict):
        add(
            "9 30-min outage (12h tokens): served",
            f"{out['served_in_outage']}/{out['requests_in_outage']}, max gap "
            f"{out['refresh_attempt_gap_max_s']} s",
            "all served, gaps capped",
            out["kept_serving"]
            and (out["refresh_attempt_gap_max_s"] or 0) <= 65
            and out["first_retry_gap_stdev_s"] not in (None, 0),
        )
    peer = _get(f, "10_peer_keyrings_codeartifact", "ours_warm_daemon_vs_peer", "ratio")
    add(
        "10 warm daemon vs keyrings.codeartifact",
        peer,
        "<= 0.5",
        None if peer is None else peer <= 0.5,
    )
    return rows


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    f = result["figures"]
    lines = []
    m = result["machine"]
    lines.append(f"machine: {m['uname']}")
    lines.append(f"cpu: {m['cpu_model']}  nproc: {m['nproc']}  python: {m['python']}  {m['uv']}")
    lines.append(f"mode: {result['mode']}, rounds: {result['rounds']}, daemon: {result['daemon']}")
    lines.append(
        f"load average at start {result.get('loadavg_start')}, at end {result.get('loadavg_end')}"
        " (other work on the machine shows up in wall times; CPU ratios resist it)"
    )
    lines.append("")
    lines.append(
        f"{'figure':<38}{'median ms':>10}{'min':>8}{'max':>8}{'ratio':>8}"
        f"{'pair min':>9}{'pair max':>9}{'min/min':>8}{'cpu ms':>8}{'cpu ratio':>10}"
    )
    for key in (
        "1_floor_keyring_only",
        "2_plugin_startup",
        "2b_plugin_startup_wheel_venv",
        "3_warm_daemon",
        "3b_warm_daemon_wheel_venv",
        "4_in_process_cached_menda_token",
        "10_peer_keyrings_codeartifact",
    ):
        fig = f.get(key)
        if not isinstance(fig, dict):
            lines.append(f"{key:<38}{fig}")
            continue
        r = fig.get("vs_floor", {})
        lines.append(
            f"{key:<38}{fmt(fig['median_ms']):>10}{fmt(fig['min_ms']):>8}{fmt(fig['max_ms']):>8}"
            f"{fmt(r.get('ratio', 1.0)):>8}{fmt(r.get('paired_ratio_min', '')):>9}"
            f"{fmt(r.get('paired_ratio_max', '')):>9}{fmt(r.get('ratio_of_minima', '')):>8}"
            f"{fmt(fig.get('cpu_median_ms', '')):>8}{fmt(r.get('cpu_ratio', '')):>10}"
        )
    peer = _get(f, "10_peer_keyrings_codeartifact", "ours_warm_daemon_vs_peer")
    if isinstance(peer, dict):
        lines.append(
            f"{'  warm daemon / keyrings.codeartifact':<38}{'':>26}{fmt(peer['ratio']):>8}"
            f"{fmt(peer['paired_ratio_min']):>9}{fmt(peer['paired_ratio_max']):>9}"
            f"{fmt(peer['ratio_of_minima']):>8}{'':>8}{fmt(peer.get('cpu_ratio', '')):>10}"
        )
    lat = f.get("5_latency_in_process")
    lines.append("")
    if isinstance(lat, dict):
        for name in (
            "keyring_get_password",
            "echo_reference",
            "keyring_get_password_via_echo",
            "echo_reference_persistent_connection",
        ):
            s = lat[name]
            lines.append(
                f"5 {name:<37} n={s['n']} p50 {s['p50_us']:.0f} us  p90 {s['p90_us']:.0f} us  "
                f"p99 {s['p99_us']:.0f} us  min {s['min_us']:.0f}  max {s['max_us']:.0f}"
            )
    else:
        lines.append(f"5 latency: {lat}")
    tp = f.get("6_throughput_rss_idle")
    if isinstance(tp, dict):
        hot, many = tp["hot_64_connections"], tp["many_identities"]
        lines.append(
            f"6 hot: {hot['answers_per_s']:.0f} answers/s over {hot['seconds']:.1f} s "
            f"({hot['errors']} errors), daemon CPU {tp['hot_daemon_cpu_share']:.2f} cores"
        )
        lines.append(
            f"6 many: {many['answers']} answers over {many['identities_and_domains']} identities x "
            f"domains in {many['seconds']:.1f} s ({many['answers_per_s']:.0f}/s, {many['errors']} "
            f"errors), cloud {many['cloud_oauth']} oauth + {many['cloud_registry']} registry; "
            f"cold first touch {many['cold_first_touch']['answers_per_s']:.0f}/s, warm "
            f"{many['warm']['answers_per_s']:.0f}/s ({many['cloud_calls_during_warm']} cloud calls)"
        )
        lines.append(
            f"6 RSS MB: start {tp['rss_mb_start']}, after hot {tp['rss_mb_after_hot']}, after many "
            f"{tp['rss_mb_after_many']}, after idle {tp['rss_mb_after_idle']}; idle CPU "
            f"{tp['idle_cpu_seconds']} s ({tp['idle_cpu_seconds_schedstat']} s by schedstat) over "
            f"{tp['idle_seconds']} s"
        )
    else:
        lines.append(f"6 throughput: {tp}")
    herd = f.get("7_cold_herd", {})
    for mode in ("without_daemon", "with_daemon"):
        h = herd.get(mode)
        if isinstance(h, dict):
            lines.append(
                f"7 herd of {herd['processes']} {mode}: {h['oauth']} oauth + "
                f"{h['registry']} registry, "
                f"wall {h['wall_s']} s, {h['failed']} failed"
            )
        else:
            lines.append(f"7 herd {mode}: {h}")
    uvf = f.get("8_parallel_uv_installs", {})
    for mode in ("without_daemon", "with_daemon"):
        u = uvf.get(mode)
        if isinstance(u, dict):
            lines.append(
                f"8 {uvf['installs']} uv installs {mode}: wall median {u['wall_s_median']} s "
                f"(min {u['wall_s_min']}, max {u['wall_s_max']}), oauth {u['oauth_per_trial']}, "
                f"registry {u['registry_per_trial']}, {u['failed']} failed"
            )
        else:
            lines.append(f"8 uv {mode}: {u}")
    sim = f.get("9_simulated_day")
    if isinstance(sim, dict):
        for name in ("12h", "1h", "12h_outage", "1h_outage", "12h_outage_one_try_per_refresh"):
            s = sim.get(name)
            if not isinstance(s, dict):
                continue
            text = (
                f"9 {name:<10} exchanges/pair {s['registry_exchanges_per_pair_min']}-"
                f"{s['registry_exchanges_per_pair_max']} (bound {s['bound_per_pair']}), "
                f"served {s['requests_served']}, unserved {s['requests_unserved']}"
            )
            o = s.get("outage")
            if o:
                text += (
                    f"; outage: {o['served_in_outage']}/{o['requests_in_outage']} served, "
                    f"{o['pairs_refreshing_in_outage']} pairs refreshing, attempts/pair max "
                    f"{o['refresh_attempts_in_outage_per_pair_max']}, http calls "
                    f"{o['http_calls_in_outage_oauth']} oauth + "
                    f"{o['http_calls_in_outage_registry']} registry, gaps "
                    f"{o['refresh_attempt_gap_min_s']}-{o['refresh_attempt_gap_max_s']} s, "
                    f"1st-retry jitter sd {o['first_retry_gap_stdev_s']} s"
                )
            lines.append(text)
    else:
        lines.append(f"9 simulated day: {sim}")
    lines.append("")
    lines.append(f"{'target':<44}{'value':>32}  {'goal':<24}met")
    for row in result["targets"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append(f"{row['target']:<44}{fmt(row['value']):>32}  {row['goal']:<24}{met}")
    for name, err in result.get("errors", {}).items():
        lines.append(f"ERROR in {name}: {err[:300]}")
    lines.append(f"steps (s): {result.get('step_seconds')}; total {result['total_seconds']} s")
    return "\n".join(lines)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI mode: few rounds, short runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds for figures 1-4, 10")
    parser.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write")
    args = parser.parse_args(argv)
    with sigterm_as_exit():
        result = Bench(args).run()
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
