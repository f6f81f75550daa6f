"""A throwaway one-node SLURM cluster on this machine, for the SLURM integration test.

``SlurmCluster().start()`` starts, in the foreground of child processes whose ids it keeps,
everything a lab's cluster has that the Snakemake SLURM executor talks to:

- ``munged`` (as the ``munge`` user) with a private key and socket, for authentication;
- a private MariaDB server on a free loopback port, the accounting database;
- ``slurmdbd`` (accounting: the executor asks ``sacct`` for job states);
- ``slurmctld`` and one ``slurmd`` whose node is this machine (``NodeAddr=127.0.0.1``, its
  CPUs and memory as ``slurmd -C`` reports them), in one default partition.

Every file (configuration, state, logs, sockets, the database) lives in one fresh folder
under the system temporary directory, every port is a free loopback port chosen at start,
and nothing under ``/etc`` or ``/run`` is touched: the client commands (``sbatch``,
``sacct``, ...) find the cluster through :attr:`env` (``SLURM_CONF``, and wrappers first on
its ``PATH`` that set it for the job step's inner ``srun``). ``stop()`` cancels the jobs
still on the cluster, ends each daemon it started, by process id, and removes the folder.

Nothing is installed here: when a program is missing (Debian: ``slurm-wlm munge slurmdbd
mariadb-server``) or the process is not root (``slurmd`` must be, to start jobs), ``start``
raises :class:`ClusterUnavailable` with the reason, and the test skips with it.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["ClusterUnavailable", "SlurmCluster"]

PROGRAMS = {
    "munged": "munge",
    "slurmctld": "slurm-wlm (slurmctld)",
    "slurmd": "slurm-wlm (slurmd)",
    "slurmdbd": "slurmdbd",
    "sbatch": "slurm-client",
    "srun": "slurm-client",
    "sacct": "slurm-client",
    "sacctmgr": "slurm-client",
    "squeue": "slurm-client",
    "sinfo": "slurm-client",
    "scontrol": "slurm-client",
    "scancel": "slurm-client",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
}
CLUSTER = "brainiron"
PARTITION = "debug"


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be started here; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _which(name: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which(name, path=path)


class SlurmCluster:
    """A one-node SLURM cluster with accounting (slurmdbd + MariaDB), see the module doc."""

    def __init__(self, startup_timeout: float = 90.0, accounting: bool = True):
        self.timeout = startup_timeout
        # accounting=False: no MariaDB / slurmdbd (AccountingStorageType=none), as on a
        # cluster without accounting; `sacct` then fails (docs/cluster.md, "Accounting").
        self.accounting = accounting
        self.root: Path | None = None
        self.env: dict[str, str] = {}
        self.node = socket.gethostname().split(".")[0]
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._bin: dict[str, str] = {}

    # ------------------------------------------------------------------ start / stop

    def start(self) -> SlurmCluster:
        """Start every daemon; raise ClusterUnavailable (after cleaning up) when it cannot."""
        self._preflight()
        self.root = Path(tempfile.mkdtemp(prefix="brainiron-slurm-"))
        self.root.chmod(0o755)  # the munge user must reach its own folder inside
        try:
            self._start_munge()
            if self.accounting:
                self._start_mariadb()
            self._write_slurm_conf()
            if self.accounting:
                self._start_slurmdbd()
            self._start_slurmctld()
            self._start_slurmd()
        except ClusterUnavailable:
            self.stop()
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise ClusterUnavailable(f"could not start SLURM: {exc}") from exc
        return self

    def stop(self) -> None:
        """Cancel leftover jobs, end the daemons this object started (newest first) and
        remove the state folder."""
        if any(name == "slurmctld" and proc.poll() is None for name, proc in self._procs):
            self._cancel_jobs()
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _cancel_jobs(self) -> None:
        """Cancel this cluster's unfinished jobs (a failed test can leave some running)."""
        try:
            ids = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
            if not ids:
                return
            self.run("scancel", *ids, check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run(
                    "squeue", "-h", "-o", "%i", check=False).stdout.strip():
                time.sleep(1)
        except (OSError, subprocess.SubprocessError):
            pass

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sinfo``, ``sacct``, ...) against this cluster."""
        cmd = [self._bin.get(args[0], args[0]), *args[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout}")
        return proc

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon's log (for failure messages)."""
        if self.root is None:
            return ""
        out = []
        paths = [*self.root.glob("*.log"), *self.root.glob("munge/*.log"),
                 *self.root.glob("mariadb/*.log"), *self.root.glob("slurm/log/*.log")]
        for path in sorted(paths):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise ClusterUnavailable("not root (slurmd must run as root to start jobs)")
        missing = []
        for name, package in PROGRAMS.items():
            if not self.accounting and package.startswith(("mariadb", "slurmdbd")):
                continue
            path = _which(name)
            if path:
                self._bin[name] = path
            else:
                missing.append(f"{name} [{package}]")
        if missing:
            raise ClusterUnavailable(
                "programs missing: " + ", ".join(missing)
                + " (Debian: apt-get install slurm-wlm munge slurmdbd mariadb-server)")
        try:
            pwd.getpwnam("munge")
        except KeyError:
            raise ClusterUnavailable("no 'munge' user (Debian package munge)") from None

    def _spawn(self, name: str, cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
        handle = log.open("ab")
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=kwargs.pop("env", self.env),
                                start_new_session=True, **kwargs)
        handle.close()
        self._procs.append((name, proc))
        return proc

    def _wait(self, what: str, ready, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ClusterUnavailable(f"{what} exited with status {proc.returncode}:\n"
                                         + self.logs(tail=8))
            if ready():
                return
            time.sleep(0.5)
        raise ClusterUnavailable(f"{what} not ready after {self.timeout:.0f} s:\n"
                                 + self.logs(tail=8))

    def _ok(self, *args: str) -> bool:
        try:
            return self.run(*args, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # ------------------------------------------------------------------ munge

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        folder = self.root / "munge"
        folder.mkdir()
        folder.chmod(0o711)  # munged: clients must reach the socket, nobody else may write
        key = folder / "munge.key"
        key.write_bytes(secrets.token_bytes(128))
        key.chmod(0o400)
        for path in (folder, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        self.munge_socket = folder / "munge.socket"
        log = folder / "munged.log"
        proc = self._spawn("munged", [
            self._bin["munged"], "--foreground", f"--key-file={key}",
            f"--socket={self.munge_socket}", f"--pid-file={folder / 'munged.pid'}",
            f"--seed-file={folder / 'munged.seed'}", f"--log-file={log}"],
            self.root / "munged-console.log", env={"PATH": "/usr/bin:/bin"},
            user=munge.pw_uid, group=munge.pw_gid)
        self._wait("munged", self.munge_socket.exists, proc)

    # ------------------------------------------------------------------ MariaDB

    def _start_mariadb(self) -> None:
        folder = self.root / "mariadb"
        data = folder / "data"
        folder.mkdir()
        self.db_socket = folder / "mysqld.sock"
        self.db_port = _free_port()
        self.db_password = secrets.token_hex(16)
        install = subprocess.run(
            [self._bin["mariadb-install-db"], "--no-defaults", f"--datadir={data}",
             "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120)
        if install.returncode != 0:
            raise ClusterUnavailable(f"mariadb-install-db failed: {install.stderr[-2000:]}")
        proc = self._spawn("mariadbd", [
            self._bin["mariadbd"], "--no-defaults", f"--datadir={data}", "--user=root",
            f"--socket={self.db_socket}", f"--port={self.db_port}", "--bind-address=127.0.0.1",
            f"--pid-file={folder / 'mariadbd.pid'}", f"--log-error={folder / 'mariadbd.log'}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--max-connections=50"],
            folder / "mariadbd-console.log")

        def sql(statement: str) -> subprocess.CompletedProcess:
            return subprocess.run([self._bin["mariadb"], "--no-defaults",
                                   f"--socket={self.db_socket}", "-uroot", "-e", statement],
                                  capture_output=True, text=True, timeout=30)

        self._wait("mariadbd", lambda: sql("SELECT 1").returncode == 0, proc)
        grant = sql(f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}'; "
                    "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        if grant.returncode != 0:
            raise ClusterUnavailable(f"MariaDB user for slurmdbd: {grant.stderr.strip()}")

    # ------------------------------------------------------------------ SLURM

    def _hardware(self) -> dict[str, int]:
        out = subprocess.run([self._bin["slurmd"], "-C"], capture_output=True, text=True,
                             timeout=30).stdout
        found = dict(re.findall(r"(\w+)=(\d+)", out))
        cpus = int(found.get("CPUs", os.cpu_count() or 1))
        memory = int(found.get("RealMemory", 0))
        if not memory:
            with open("/proc/meminfo") as meminfo:
                memory = int(meminfo.readline().split()[1]) // 1024
        # Leave room for the daemons and the submitting Snakemake.
        return {"cpus": cpus, "memory": max(1000, int(memory * 0.85))}

    def _write_slurm_conf(self) -> None:
        folder = self.root / "slurm"
        for sub in ("ctld", "d", "log"):
            (folder / sub).mkdir(parents=True)
        hw = self._hardware()
        self.cpus, self.memory_mb = hw["cpus"], hw["memory"]
        self.ports = {"ctld": _free_port(), "d": _free_port(), "dbd": _free_port()}
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket}\n"
        conf = folder / "slurm.conf"
        conf.write_text(
            f"ClusterName={CLUSTER}\n"
            f"SlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={self.ports['ctld']}\n"
            f"SlurmdPort={self.ports['d']}\n"
            f"{auth}"
            "CredType=cred/munge\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={folder / 'ctld'}\n"
            f"SlurmdSpoolDir={folder / 'd'}\n"
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={folder / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            # No cgroups (containers rarely delegate them): processes are tracked by parent.
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=30\n"
            f"{self._accounting_conf()}"
            "JobCompType=jobcomp/none\nMpiDefault=none\n"
            "SchedulerType=sched/backfill\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "SlurmdParameters=config_overrides\nReturnToService=2\n"
            "MinJobAge=300\nKillWait=10\nInactiveLimit=0\nSlurmdTimeout=120\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.memory_mb} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE "
            "State=UP\n")
        if self.accounting:
            # slurmdbd reads slurmdbd.conf beside slurm.conf; it must be private to SlurmUser.
            dbd = folder / "slurmdbd.conf"
            dbd.write_text(
                f"{auth}"
                f"DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.ports['dbd']}\n"
                "SlurmUser=root\n"
                f"LogFile={folder / 'log' / 'slurmdbd.log'}\n"
                f"PidFile={folder / 'slurmdbd.pid'}\n"
                "StorageType=accounting_storage/mysql\n"
                f"StorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
                f"StorageUser=slurm\nStoragePass={self.db_password}\n"
                "StorageLoc=slurm_acct_db\n")
            dbd.chmod(0o600)
        self.conf = conf
        shims = self._write_client_shims(conf)
        self.env = {**os.environ, "SLURM_CONF": str(conf)}
        self.env["PATH"] = os.pathsep.join([str(shims), self.env.get("PATH", ""),
                                            "/usr/sbin:/sbin"])
        # Inherited job variables would make the clients think they run inside a job.
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if key != "SLURM_CONF":
                del self.env[key]

    def _write_client_shims(self, conf: Path) -> Path:
        """``bin/`` with a wrapper per client command that sets ``SLURM_CONF``.

        A real cluster keeps slurm.conf where every command finds it (``/etc/slurm``, or
        configless slurmd). This one is private, named only by ``SLURM_CONF``, and the
        executor's job step (snakemake-executor-plugin-slurm-jobstep 0.6) removes every
        ``SLURM_*`` variable but the job's id before its inner ``srun``: the wrappers put the
        variable back. They are first on :attr:`env`'s ``PATH``.
        """
        shims = self.root / "bin"
        shims.mkdir()
        for name in ("sbatch", "srun", "sacct", "sacctmgr", "squeue", "sinfo", "scontrol",
                     "scancel", "sshare"):
            real = _which(name)
            if real is None:
                continue
            shim = shims / name
            shim.write_text(f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{real}" "$@"\n')
            shim.chmod(0o755)
        return shims

    def _accounting_conf(self) -> str:
        if not self.accounting:
            return "AccountingStorageType=accounting_storage/none\n"
        return (
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            "AccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePort={self.ports['dbd']}\n"
            # For slurmdbd connections the MUNGE socket is given here, not by AuthInfo.
            f"AccountingStoragePass={self.munge_socket}\n"
            # The executor labels each job with --comment rule_<name>_<wildcards>; keep it.
            "AccountingStoreFlags=job_comment\n")

    def _start_slurmdbd(self) -> None:
        log = self.root / "slurm" / "log"
        proc = self._spawn("slurmdbd", [self._bin["slurmdbd"], "-D"],
                           log / "slurmdbd-console.log")
        self._wait("slurmdbd", lambda: self._ok("sacctmgr", "-n", "list", "cluster"), proc)
        # The cluster must be known to the database before slurmctld registers; adding it
        # also creates the root account and user association.
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)

    def _start_slurmctld(self) -> None:
        log = self.root / "slurm" / "log"
        proc = self._spawn("slurmctld", [self._bin["slurmctld"], "-D", "-f", str(self.conf)],
                           log / "slurmctld-console.log")
        self._wait("slurmctld", lambda: self._ok("scontrol", "ping"), proc)

    def _start_slurmd(self) -> None:
        log = self.root / "slurm" / "log"
        proc = self._spawn("slurmd", [self._bin["slurmd"], "-D", "-f", str(self.conf),
                                      "-N", self.node], log / "slurmd-console.log")

        def idle() -> bool:
            state = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T",
                             check=False).stdout.strip().lower()
            if state.startswith(("drain", "down")):
                self.run("scontrol", "update", f"nodename={self.node}", "state=resume",
                         check=False)
            return state.startswith("idle")

        self._wait("slurmd (node idle)", idle, proc)
