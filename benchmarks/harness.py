"""The benchmark's harness: the machine, venvs, the fakes and the daemon, timing and stats.

Every figure module (``benchmarks/figures/``) takes a :class:`Bench` and records its
figures in ``bench.figures``. The fakes are the tests' own (``tests.fakes``) and the
daemon is the tests' harness (``tests.support.daemon``), so run everything as modules
from the repository root: ``.venv/bin/python -m benchmarks.run``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.fakes.menda_cloud import FakeCloudControl
from tests.support import venvs
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, base_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = Path(sys.executable)
BIN = PY.parent
VENVS = HERE / ".venvs"
RESULTS = HERE / "results"
PYPI_URL = "https://pypi.org/simple/"
OWNER = "058264169513"
SKIP_DAEMON = "skipped: daemon not available"

__all__ = ["CA_URL", "OWNER", "PYPI_URL", "SKIP_DAEMON", "Bench", "log", "timed"]


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


def json_of(module: str, *args: str, timeout: float = 300) -> Any:
    """The JSON line ``python -m <module> <args>`` prints (the virtual-clock figures run in
    their own process: their event loop, threads and log levels stay out of this one)."""
    out = subprocess.run(
        [str(PY), "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def ensure_venv(name: str, packages: list[str]) -> Path:
    """benchmarks/.venvs/<name> with ``packages`` from PyPI; reused between runs."""
    return venvs.ensure_venv(VENVS / name, packages, log=log)


def ensure_plugin_venv() -> Path:
    """benchmarks/.venvs/plugin: keyring + menda-keyring built from this checkout as a
    wheel (not editable), as users install it; made again when the sources change."""
    venv = venvs.ensure_venv(VENVS / "plugin", ["keyring"], with_checkout=True, log=log)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")],
        check=False,
        capture_output=True,
    )
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


# -- the bench: what every figure shares -------------------------------------------------------


class Bench:
    """The fakes, the daemon (when it starts), private homes and the figures recorded."""

    def __init__(self, quick: bool, rounds: int | None) -> None:
        self.quick = quick
        self.rounds = rounds or (3 if quick else 40)
        self.tmp = Path(tempfile.mkdtemp(prefix="mbench-", dir="/tmp"))
        self.tmp.chmod(0o700)
        self.figures: dict[str, Any] = {}
        self.daemon_reason = daemon_available()
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> Bench:
        self.stack.__enter__()
        self.stack.callback(shutil.rmtree, self.tmp, ignore_errors=True)
        try:
            self.setup()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.__exit__(None, None, None)

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
        self.aws = Proc([str(PY), "-m", "benchmarks.fake_codeartifact"])
        self.stack.callback(self.aws.stop)
        self.secret = "bench-secret-0"
        self.cloud.add_client("bench", self.secret)
        self.home = self.mkhome("home")
        self.sock = self.tmp / "run" / "credd.sock"
        self.daemon: Daemon | None = None
        if self.daemon_reason is None:
            try:
                daemon = Daemon(
                    base_env(self.mkhome("daemon-home")), self.sock, log_level="warning"
                )
                self.daemon = self.stack.enter_context(daemon)
            except (AssertionError, OSError, ValueError, KeyError) as exc:
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

    def uv_env(self) -> dict[str, str]:
        """What uv needs to reach the fake index (proxy, CA) and nothing of this machine."""
        return {
            "HTTPS_PROXY": self.info["proxy_url"],
            "HTTP_PROXY": self.info["proxy_url"],
            "SSL_CERT_FILE": self.info["ca_pem"],
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_CACHE": "1",
            "UV_NO_CONFIG": "1",
            "UV_NO_PROGRESS": "1",
        }

    def aws_calls(self) -> int:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.aws.info["url"] + "/_calls", timeout=5) as resp:
            return int(json.loads(resp.read())["calls"])
