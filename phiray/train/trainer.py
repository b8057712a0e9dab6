"""phiray's ``TorchTrainer``: Ray Train's, without the placement-group cleaner where that cannot work.

Ray Train V2 (Ray 2.60) starts a detached ``PlacementGroupCleaner`` actor for every fit
(``ray/train/v2/api/data_parallel_trainer.py``, ``_create_default_callbacks``): once a second it asks the
State API, which the dashboard serves, whether the Train controller is still alive, so it can release the
workers' placement group if the controller dies without cleaning up. A local phiray cluster starts no
dashboard (RAY_ON_CPU.md: ~1 GB and ~20 processes on a 2-core machine). There every query fails, the
cleaner logs "Failed to query Ray Train Controller actor state" for as long as the fit lasts (issue 29: 8
lines in a tiny run), and it never cleans anything up. Ray 2.60 has no setting to turn the cleaner off.
So when the cluster has no State API this trainer leaves the cleaner's callback out. Nothing is lost: a
local cluster goes down with its driver and takes the placement group with it. On a cluster with a
dashboard (KubeRay, the multi-node rehearsal) the cleaner stays.
``_create_default_callbacks`` and Ray's node parameters are private API; if a Ray upgrade renames it, the cleaner simply stays in
(the warnings come back, and tests/test_local_ray_hygiene.py fails).
"""

from __future__ import annotations

import logging
import os

from ray.train.torch import TorchTrainer

log = logging.getLogger("phiray")


def state_api_available() -> bool:
    """False only where this driver started the Ray cluster itself, without a dashboard (a local phiray
    run, the test session); a cluster the driver joined is assumed to serve the State API (KubeRay and
    `ray start --head` start the dashboard). Ray's own record of the dashboard's address cannot tell:
    Ray 2.60 registers 127.0.0.1:8265 even with ``include_dashboard=False``."""
    if os.environ.get("RAY_API_SERVER_ADDRESS"):
        return True
    from ray._private.worker import _global_node

    if _global_node is None or not _global_node.head:
        return True
    return _global_node._ray_params.include_dashboard is not False


class PhirayTorchTrainer(TorchTrainer):
    """``TorchTrainer`` that starts no ``PlacementGroupCleaner`` on a cluster without a State API."""

    def _create_default_callbacks(self) -> list:
        callbacks = super()._create_default_callbacks()
        if state_api_available():
            return callbacks
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

        return [cb for cb in callbacks if not isinstance(cb, PlacementGroupCleanerCallback)]
