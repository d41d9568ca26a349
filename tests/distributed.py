"""Run a test function in N CPU processes that really talk (gloo), started with spawn.

``accelerate.debug_launcher`` forks; a fork after the parent has used torch's OpenMP
thread pool (any earlier test did) deadlocks the children. Spawned children start clean.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable

from accelerate.utils import PrepareForLaunch, patch_environment
from torch.multiprocessing import start_processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_launcher(function: Callable, args: tuple = (), num_processes: int = 2) -> None:
    """Like ``accelerate.debug_launcher`` (CPU, gloo, same env) but with spawn.

    ``function`` must be importable (defined at module level). A failing assertion in a
    child raises ``torch.multiprocessing.ProcessRaisedException`` here.
    """
    with tempfile.TemporaryDirectory() as rendezvous_dir, patch_environment(
        world_size=num_processes,
        master_addr="127.0.0.1",
        master_port=str(free_port()),
        accelerate_mixed_precision="no",
        accelerate_debug_rdv_file=f"{rendezvous_dir}/rendezvous",
        accelerate_use_cpu="yes",
        gloo_socket_ifname="lo",
        omp_num_threads="1",
    ):
        launcher = PrepareForLaunch(function, debug=True)
        start_processes(launcher, args=args, nprocs=num_processes, start_method="spawn")
