"""Ray Train's torch process group, with its rendezvous store listening on the node's address only.

Ray Train's ``TorchConfig`` sets the process group up through ``env://``: rank 0 starts torch's
``TCPStore`` server, which binds *every* interface (``::``) whatever ``MASTER_ADDR`` says, so a local
`phiray run` that keeps every Ray listener on 127.0.0.1 still opened an unauthenticated port to the
network for as long as a fit ran. Here rank 0 binds the listening socket itself, on its Ray node address
(127.0.0.1 for a local cluster, the pod IP on Kubernetes), and hands it to ``TCPStore(master_listen_fd=)``
(public torch API); every rank then joins with ``init_process_group(store=...)``. Binding port 0 and
reporting the port also removes the pick-a-free-port-then-bind race of ``env://``.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

_LISTEN_FD: int | None = None  # rank 0's bound socket, between the two set-up calls (one fit per worker)


def listen_on_node_address() -> tuple[str, int]:
    """On rank 0: bind a listening socket on this Ray node's address (free port); returns (address, port)."""
    import ray

    global _LISTEN_FD
    address = ray.util.get_node_ip_address()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, 0))
    sock.listen(socket.SOMAXCONN)
    port = sock.getsockname()[1]
    _LISTEN_FD = sock.detach()  # TCPStore takes the descriptor over (and closes it)
    return address, port


def init_process_group(backend: str, world_rank: int, world_size: int, address: str, port: int, timeout_s: int) -> None:
    """Join the process group through a ``TCPStore`` whose server (rank 0) listens on the bound socket."""
    import torch.distributed as dist

    global _LISTEN_FD
    # What env:// would have set: DeepSpeed's init_distributed looks for them before reusing the group.
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = address, str(port)
    timeout = timedelta(seconds=timeout_s)
    if world_rank == 0:
        if _LISTEN_FD is None:
            raise RuntimeError("rank 0 has no bound rendezvous socket (listen_on_node_address did not run here)")
        fd, _LISTEN_FD = _LISTEN_FD, None
        store = dist.TCPStore(address, port, world_size, True, timeout, master_listen_fd=fd)
    else:
        store = dist.TCPStore(address, port, world_size, False, timeout)
    dist.init_process_group(backend=backend, store=store, rank=world_rank, world_size=world_size, timeout=timeout)


class _NodeBoundTorchBackend(_TorchBackend):
    """Ray Train's torch backend (shutdown, env vars) with the process group set up as described above."""

    def on_start(self, worker_group: Any, backend_config: TorchConfig) -> None:
        import ray

        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        address, port = worker_group.execute_single(0, listen_on_node_address)
        worker_group.execute(_set_torch_distributed_env_vars)  # RANK, LOCAL_RANK, WORLD_SIZE, ...
        size = len(worker_group)
        ray.get(
            [
                worker_group.execute_single_async(
                    rank,
                    init_process_group,
                    backend=backend,
                    world_rank=rank,  # `rank` is execute_single_async's own argument
                    world_size=size,
                    address=address,
                    port=port,
                    timeout_s=backend_config.timeout_s,
                )
                for rank in range(size)
            ]
        )


class NodeBoundTorchConfig(TorchConfig):
    """``TorchConfig`` whose rendezvous store listens on the node's address, not on every interface."""

    @property
    def backend_cls(self) -> type:
        return _NodeBoundTorchBackend
