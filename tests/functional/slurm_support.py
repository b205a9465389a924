"""A real one-node SLURM on 127.0.0.1 for the ``--cluster slurm`` tests: Debian's slurm-wlm and
munge, started as root in a scratch folder with their own key, socket, ports, state, spool and
logs (DESIGN.md, "Environment facts"), and torn down with every job cancelled."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def skip_reason() -> str | None:
    """Why a real SLURM cannot start here, or None."""
    missing = [name for name in DAEMONS if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        return f"slurm-wlm and munge are not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a one-node SLURM (slurmd, SlurmUser=root) needs root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Slurm:
    """munged, slurmctld and slurmd in ``folder``, in the foreground as children of this process;
    ``env`` points the SLURM commands (sbatch, squeue, scancel) at them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for sub in ("munge", "state", "spool", "log", "run", "jobs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "munge").chmod(0o700)
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.socket = folder / "munge" / "munge.socket"
        self.conf = folder / "slurm.conf"
        self.log = folder / "log" / "slurmctld.log"
        self.host = socket.gethostname()
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 9 // 10
        self.conf.write_text("\n".join([
            "ClusterName=skoots-test",
            f"SlurmctldHost={self.host}(127.0.0.1)", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", f"AuthInfo=socket={self.socket}", "CredType=cred/munge",
            "SlurmUser=root", "SlurmdUser=root",
            f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'run' / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log}", f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none", "MpiDefault=none",
            "ReturnToService=2", "SlurmctldDebug=info", "SlurmdDebug=info",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={memory_mb} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP", "",
        ]))
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        munge = self.folder / "munge"
        self._spawn([_binary("munged"), "--foreground", "--force", f"--socket={self.socket}", f"--key-file={munge / 'munge.key'}",
                     f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}"])
        self._wait(lambda: self.socket.exists(), "munged's socket")
        self._spawn([_binary("slurmctld"), "-D", "-f", str(self.conf)])
        self._spawn([_binary("slurmd"), "-D", "-N", self.host, "-f", str(self.conf)])
        self._wait(self._idle, "the node to come up idle")

    def _spawn(self, argv: list[str]) -> None:
        self.processes.append(subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def _idle(self) -> bool:
        done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True, timeout=10)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def _wait(self, ready, what: str, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"a SLURM daemon exited while waiting for {what}: {self.tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}: {self.tail()}")

    def jobs(self, states: str = "PD,R,CG,S") -> list[str]:
        """The ids of the jobs in ``states`` now (squeue's ``--states``; by default every job not
        yet ended; ``PD,R`` leaves out the ones still completing)."""
        done = subprocess.run(["squeue", "-h", "-o", "%i", "-t", states], env=self.env, capture_output=True, text=True, timeout=10,
                              check=True)
        return done.stdout.split()

    def submitted(self) -> list[str]:
        """The ids of every job submitted through sbatch, from slurmctld's log."""
        text = self.log.read_text() if self.log.exists() else ""
        return [line.split("JobId=")[1].split()[0] for line in text.splitlines() if "_slurm_rpc_submit_batch_job: JobId=" in line]

    def tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.exists() else "(no slurmctld log)"

    def stop(self) -> None:
        """Cancel every job, wait for them to end, then stop the daemons (slurmd, slurmctld, munged)."""
        if self.processes:
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True, timeout=10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if not self.jobs():
                        break
                except (subprocess.SubprocessError, OSError):
                    break
                time.sleep(0.2)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        self.processes.clear()


@pytest.fixture(scope="module", name="slurm")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node SLURM on 127.0.0.1 (skipped, saying why, without slurm-wlm, munge or root)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("dask_jobqueue", reason="--cluster needs dask-jobqueue: pip install '.[cluster]'")
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
