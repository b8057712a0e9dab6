"""`ray start` for the rehearsal that keeps ``--node-ip-address=127.0.0.1`` as given.

Ray 2.60's `ray start` replaces a loopback ``--node-ip-address`` by the machine's address
(``services.resolve_ip_for_localhost``) unless the loopback switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
is set, and with the switch set it refuses ``--address`` (no multi-node cluster). So a rehearsal node got
the machine's address, and Ray bound its agents there and its GCS/raylet gRPC servers on every interface:
an unauthenticated Ray open to the network (issue 29). This lifts only the rewrite: the node keeps
127.0.0.1, and so do the servers Ray starts for it. The processes the node starts (GCS, raylet, agents,
workers, job drivers) get the switch in their environment: there it only makes Ray take 127.0.0.1 as this
machine's address (a job driver joining ``RAY_ADDRESS=127.0.0.1:port`` would otherwise dial the machine's
address); this process imported Ray without it, so its own refusal of ``--address`` stays off.
Used as ``python ray_loopback.py start ...``.
"""

from __future__ import annotations

import os
import sys

from ray._private import services
from ray.scripts.scripts import main

_resolve = services.resolve_ip_for_localhost


def keep_loopback(host: str) -> str:
    return host if services.is_localhost(host) else _resolve(host)


if __name__ == "__main__":
    services.resolve_ip_for_localhost = keep_loopback
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for the children only: read at their import
    sys.argv[0] = "ray"
    sys.exit(main())
