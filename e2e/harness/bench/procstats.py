"""What the benchmark reads from /proc: CPU seconds, memory and load, and the machine's facts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from e2e.harness.binaries import ETCD_VERSION, K8S_VERSION
from e2e.harness.processes import proc_stat_fields

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = None if pid is None else proc_stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent outside idle/iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    hwm_mib: float

    def __str__(self) -> str:
        return f"{self.rss_mib:.0f} MiB (peak {self.hwm_mib:.0f} MiB)"


def memory(pid: int | None) -> Memory:
    if pid is None:
        return Memory(float("nan"), float("nan"))
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return Memory(values["VmRSS"], values["VmHWM"])


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+)", meminfo, re.MULTILINE)
    bao = subprocess.run(
        [str(Path(sys.executable).parent / "bao"), "version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    ).stdout.split()
    return {
        "CPU": model.group(1) if model else platform.processor() or "unknown",
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "memory": f"{int(total.group(1)) / 1024 / 1024:.1f} GiB" if total else "unknown",
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "kopf": importlib.metadata.version("kopf"),
        "kubernetes (Python client)": importlib.metadata.version("kubernetes"),
        "hvac": importlib.metadata.version("hvac"),
        "OpenBao": bao[1] if len(bao) > 1 else "unknown",
        "Kubernetes (kube-apiserver)": f"v{K8S_VERSION}",
        "etcd": f"v{ETCD_VERSION}",
    }
