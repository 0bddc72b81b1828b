"""`lwm fit` launched by torchrun or srun: one command run by every rank, made to act as one job.

Under an external launcher every rank runs the whole command. Left alone, every rank would render
the synthetic default into the same cache, open (and migrate) the same SQLite store and pick its
own run name; a rank that died there left the others waiting in DDP start-up. So the process group
is started here, before any of that, with a timeout (`FitConfig.distributed_timeout_s`), and:

- global rank zero prepares the data, picks the run name and is the only rank that touches the
  tracking store; the other ranks wait for it (`Launch.share`) and are told its result, or its
  error, which they then raise too: every rank ends with the same one-line error and exit 1;
- a rank that dies later closes its connections: gloo fails the others' next collective at once
  (`lost_peer` turns that into one line; exit 1, the MLflow run FAILED). A rank that stops without
  closing them (a frozen process, a node lost to power or network, or any death under NCCL, which
  waits out its timeout) would leave the others blocked: each rank beats a counter in the job's
  store and watches the others', and one silent for `FitConfig.distributed_heartbeat_s` ends every
  other rank with a line naming it and exit 1 (rank zero first marks the MLflow run FAILED);
- a rank that never arrives ends the start-up after `distributed_timeout_s`, naming what was
  waited for.

Lightning's own DDP launch (`trainer.devices=N` on one machine) is not this case: it re-runs the
command itself and is handled in `lightning_wm/commands/fit.py` (RUN_NAME_ENV).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment

from sharding.errors import ConfigError, LwmError

T = TypeVar("T")


def external_environment() -> ClusterEnvironment | None:
    """The launcher's environment when torchrun or srun started this process as one of several ranks."""
    for kind in (TorchElasticEnvironment, SLURMEnvironment):
        if kind.detect():
            environment = kind()
            if environment.world_size() > 1:
                return environment
    return None


@dataclass
class Launch:
    """This process's place in an externally launched job."""

    rank: int
    world: int
    timeout_s: float
    on_lost: Callable[[], None] | None = None  # rank zero: marks the run FAILED before the job ends
    _stopped: threading.Event = field(default_factory=threading.Event)

    def watch(self, dead_after_s: float, beat_s: float = 2.0) -> None:
        """Start the heartbeat thread (see the module); `stop_watching` once training is over, when
        ranks finish at slightly different times."""
        store = dist.distributed_c10d._get_default_store()
        threading.Thread(target=self._heartbeat, args=(store, dead_after_s, beat_s), daemon=True,
                         name="lwm-heartbeat").start()

    def stop_watching(self) -> None:
        self._stopped.set()

    def _heartbeat(self, store: dist.Store, dead_after_s: float, beat_s: float) -> None:
        seen = {rank: (-1, time.monotonic()) for rank in range(self.world) if rank != self.rank}
        beats, store_failing_since = 0, None
        while not self._stopped.wait(beat_s):
            try:
                beats += 1
                store.set(f"lwm/heartbeat/{self.rank}", str(beats))
                for rank, (count, since) in seen.items():
                    now = int(store.get(f"lwm/heartbeat/{rank}")) if store.check([f"lwm/heartbeat/{rank}"]) else -1
                    if now != count:
                        seen[rank] = (now, time.monotonic())
                    elif time.monotonic() - since > dead_after_s:
                        self._lost(f"rank {rank} stopped answering (no heartbeat for {dead_after_s:g} s: killed, or its "
                                   "node lost); see its output")
                store_failing_since = None
            except Exception as error:  # the store is rank zero's: gone for as long as a silent rank counts as lost
                store_failing_since = store_failing_since or time.monotonic()
                if time.monotonic() - store_failing_since > dead_after_s:
                    first = str(error).splitlines()[0] if str(error) else ""
                    self._lost(f"lost the job's store on rank 0 for {dead_after_s:g} s ({type(error).__name__}: {first})")

    def _lost(self, why: str) -> None:
        if self._stopped.is_set():  # training is over: a rank that has finished is not lost
            return
        print(f"lwm fit: error: rank {self.rank}: {why}; stopping this rank too", file=sys.stderr, flush=True)
        if self.on_lost is not None:
            try:
                self.on_lost()
            except Exception:  # the store may be the one that went away
                pass
        os._exit(1)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def share(self, what: str, make: Callable[[], T], everyone: bool = False) -> T:
        """Rank zero runs `make`; the others wait for it. Its error (a user error or a bug) is raised on
        every rank. Without `everyone` its result is sent to the others (small, picklable values);
        with `everyone` they then run `make` themselves (after rank zero: e.g. on the cache it filled)."""
        local, error = None, None
        if self.is_zero:
            try:
                local = make()
            except LwmError as failure:
                error = str(failure)
            except Exception as failure:  # a bug on rank zero: the others stop too, then it raises here
                self._broadcast([None, f"{type(failure).__name__}: {failure}"], what)
                raise
        payload = self._broadcast([None if everyone else local, error], what)
        if payload[1] is not None:
            raise ConfigError(payload[1] if self.is_zero else f"rank 0 failed while {what}: {payload[1]}")
        if self.is_zero:
            return local
        return make() if everyone else payload[0]

    def _broadcast(self, payload: list[Any], what: str) -> list[Any]:
        try:
            dist.broadcast_object_list(payload, src=0)
        except RuntimeError as error:  # gloo/nccl: a peer died, or the timeout passed
            raise ConfigError(f"rank {self.rank}: lost the other ranks while {what} ({str(error).splitlines()[0]}); "
                              f"see the other ranks' output (timeout distributed_timeout_s={self.timeout_s:g})") from error
        return payload


def start(accelerator: str, timeout_s: float, devices: Any, num_nodes: int) -> Launch | None:
    """Join the job's process group (None when this process is not one rank of an external launch)."""
    environment = external_environment()
    if environment is None:
        return None
    world, rank = environment.world_size(), environment.global_rank()
    if isinstance(devices, int) and devices * num_nodes != world:
        raise ConfigError(f"the launcher started {world} processes, but trainer.devices={devices} x "
                          f"trainer.num_nodes={num_nodes} = {devices * num_nodes}; set them to match "
                          "(torchrun: --nproc-per-node x --nnodes)")
    if not dist.is_initialized():
        gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
        try:
            dist.init_process_group("nccl" if gpu else "gloo", init_method=f"tcp://{environment.main_address}:"
                                    f"{environment.main_port}", rank=rank, world_size=world,
                                    timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as error:
            raise ConfigError(f"rank {rank} of {world}: the other ranks did not join at {environment.main_address}:"
                              f"{environment.main_port} within distributed_timeout_s={timeout_s:g} "
                              f"({str(error).splitlines()[0]}); check every node was launched with the same "
                              "--master-addr/--master-port (or --rdzv-endpoint)") from error
    return Launch(rank, world, timeout_s)


def lost_peer(error: BaseException, launch: Launch | None) -> LwmError | None:
    """The one-line error for a collective that failed because another rank went away, else None."""
    text = str(error)
    if launch is None or not isinstance(error, RuntimeError) or not any(sign in text for sign in PEER_GONE):
        return None
    return LwmError(f"rank {launch.rank}: another rank of the job went away during training (gloo: "
                    f"{next(sign for sign in PEER_GONE if sign in text)}); see the other ranks' output for why it stopped")


PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo/transport")  # gloo's words
