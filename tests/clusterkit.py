"""Private Redis Clusters and Sentinel groups for tests, on free loopback ports (each process by its pid):

    with RedisClusterKit(3) as cluster:          # 3 masters, no replicas, `redis-cli --cluster create`
        cluster.url                              # "redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.kill(1); cluster.start_node(1)   # kill -9 a shard, then the same port and node id again
        cluster.migrate_slot(slot, to=2)         # CLUSTER SETSLOT IMPORTING / MIGRATING, MIGRATE, NODE
        cluster.shard_of(key)                    # which master serves the key now

    with SentinelKit() as group:                 # 1 primary, 1 replica, 3 sentinels monitoring "orch"
        group.url                                # "redis+sentinel://127.0.0.1:s1,...,127.0.0.1:s3/orch"
        group.kill_primary(); group.wait_failover()

Nothing here touches the shared Redis on 6379 or a process it did not start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from ports import free_port, wait_port
from redis.crc import key_slot


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=5)


class _Server:
    """One redis-server (or sentinel) process with its own directory; restartable on its port."""

    def __init__(self, args: list[str], port: int, directory: Path) -> None:
        self.args, self.port, self.dir = args, port, directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


class RedisClusterKit:
    """`masters` cluster-enabled redis-servers joined into one cluster (AOF with fsync always when
    `persist`, so a shard killed and started again keeps what it acknowledged)."""

    def __init__(self, masters: int = 3, *, persist: bool = True) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server / redis-cli are not installed; apt-get install -y redis-server")
        self.root = Path(tempfile.mkdtemp(prefix="orch-cluster-"))
        self.nodes: list[_Server] = []
        for i in range(masters):
            port = free_port()
            directory = self.root / f"n{i}"
            directory.mkdir()
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no",
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(free_port()),  # the bus (else port + 10000: past 65535 for a high port)
                    # a shard down leaves the others serving their slots
                    "--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no",
                    "--dir", str(directory), "--save", "",
                    "--appendonly", "yes" if persist else "no", "--appendfsync", "always",
                    "--daemonize", "no", "--loglevel", "warning"]
            self.nodes.append(_Server(args, port, directory))

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> RedisClusterKit:
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=30)
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 15.0) -> None:
        """Until every node says cluster_state:ok and knows every slot's owner."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self._ok(p) for p in self.ports):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    @staticmethod
    def _ok(port: int) -> bool:
        c = _client(port)
        try:
            info = c.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text
        finally:
            c.close()

    def node_id(self, i: int) -> str:
        c = _client(self.ports[i])
        try:
            return bytes(c.execute_command("CLUSTER", "MYID")).decode()
        finally:
            c.close()

    def shard_of(self, key: str | bytes) -> int:
        """The index of the master serving `key`'s slot."""
        slot = key_slot(key if isinstance(key, bytes) else key.encode())
        c = _client(self.ports[0])
        try:
            for low, high, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if int(low) <= slot <= int(high):
                    return self.ports.index(int(primary[1]))
        finally:
            c.close()
        raise LookupError(slot)

    def keys(self, pattern: str = "*") -> list[tuple[int, bytes]]:
        """(shard index, key) of every key on every master matching `pattern`."""
        out = []
        for i, port in enumerate(self.ports):
            c = _client(port)
            try:
                out += [(i, k) for k in c.scan_iter(match=pattern, count=1000)]
            finally:
                c.close()
        return out

    def drop(self, pattern: str) -> None:
        for i, key in self.keys(pattern):
            c = _client(self.ports[i])
            try:
                c.delete(key)
            finally:
                c.close()

    def kill(self, i: int) -> None:
        self.nodes[i].kill()

    def start_node(self, i: int) -> None:
        self.nodes[i].start()
        self.wait_ok()

    def migrate_slot(self, slot: int, to: int, *, pause_between: float = 0.0, batch: int = 1) -> int:
        """Move `slot` to master `to` as `redis-cli --cluster reshard` does: IMPORTING on the target,
        MIGRATING on the source, MIGRATE `batch` keys at a time (sleeping `pause_between` s between
        batches, so traffic meets the slot half moved), then SETSLOT NODE on all. Returns keys moved."""
        src = self.shard_of_slot(slot)
        if src == to:
            return 0
        src_id, dst_id = self.node_id(src), self.node_id(to)
        s, d = _client(self.ports[src]), _client(self.ports[to])
        moved = 0
        try:
            d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while True:
                keys = s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                s.execute_command("MIGRATE", "127.0.0.1", self.ports[to], "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                if pause_between:
                    time.sleep(pause_between)
            for port in self.ports:
                c = _client(port)
                try:
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                finally:
                    c.close()
        finally:
            s.close()
            d.close()
        return moved

    def shard_of_slot(self, slot: int) -> int:
        c = _client(self.ports[0])
        try:
            for low, high, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if int(low) <= slot <= int(high):
                    return self.ports.index(int(primary[1]))
        finally:
            c.close()
        raise LookupError(slot)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RedisClusterKit:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelKit:
    """A primary, a replica and three sentinels monitoring them as `service` (quorum 2, down after
    `down_ms`): a failover promotes the replica within a few seconds of the primary's death."""

    def __init__(self, service: str = "orch", *, down_ms: int = 1000) -> None:
        self.service = service
        self.root = Path(tempfile.mkdtemp(prefix="orch-sentinel-"))
        self.data: list[_Server] = []
        for i in range(2):
            port = free_port()
            directory = self.root / f"r{i}"
            directory.mkdir()
            args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no",
                    "--dir", str(directory), "--save", "", "--appendonly", "no", "--daemonize", "no",
                    "--loglevel", "warning"]
            if i == 1:
                args += ["--replicaof", "127.0.0.1", str(self.data[0].port)]
            self.data.append(_Server(args, port, directory))
        self.sentinels: list[_Server] = []
        for i in range(3):
            port = free_port()
            directory = self.root / f"s{i}"
            directory.mkdir()
            conf = directory / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                f"sentinel monitor {service} 127.0.0.1 {self.data[0].port} 2\n"
                f"sentinel down-after-milliseconds {service} {down_ms}\n"
                f"sentinel failover-timeout {service} 5000\nsentinel parallel-syncs {service} 1\n"
            )
            self.sentinels.append(_Server(["redis-server", str(conf), "--sentinel"], port, directory))
        self.token = uuid.uuid4().hex[:6]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.service}"

    def primary_port(self) -> int:
        c = _client(self.sentinels[0].port)
        try:
            _, port = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
            return int(port)
        finally:
            c.close()

    def start(self) -> SentinelKit:
        for server in self.data:
            server.start()
        self._wait(lambda: self._replicated(), "the replica to sync")
        for s in self.sentinels:
            s.start()
        self._wait(lambda: self._sentinels_see_each_other(), "the sentinels to find each other")
        return self

    def _replicated(self) -> bool:
        c = _client(self.data[1].port)
        try:
            info: Any = c.info("replication")
            return info.get("master_link_status") == "up"
        finally:
            c.close()

    def _sentinels_see_each_other(self) -> bool:
        for s in self.sentinels:
            c = _client(s.port)
            try:
                state: Any = c.execute_command("SENTINEL", "MASTER", self.service)
                if not isinstance(state, dict):
                    state = dict(zip(state[::2], state[1::2], strict=False))
                fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in state.items()}
                if int(fields.get("num-other-sentinels", 0)) < 2 or int(fields.get("num-slaves", 0)) < 1:
                    return False
            finally:
                c.close()
        return True

    @staticmethod
    def _wait(check: Any, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}")
            time.sleep(0.05)

    def kill_primary(self) -> int:
        port = self.primary_port()
        next(d for d in self.data if d.port == port).kill()
        return port

    def wait_failover(self, old_port: int, timeout: float = 20.0) -> int:
        self._wait(lambda: self.primary_port() != old_port, "Sentinel to promote the replica", timeout)
        new = self.primary_port()
        self._wait(lambda: self._is_primary(new), "the new primary to take writes", timeout)
        return new

    @staticmethod
    def _is_primary(port: int) -> bool:
        c = _client(port)
        try:
            info: Any = c.info("replication")
            return info.get("role") == "master"
        finally:
            c.close()

    def stop(self) -> None:
        for server in [*self.sentinels, *self.data]:
            server.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelKit:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
