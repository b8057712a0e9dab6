"""Cluster deployment: job specs (jobs/*.yaml), KubeRay manifests (k8s/), `phiray submit`.

One job spec drives both submission paths: the Ray Jobs SDK (`JobSubmissionClient.submit_job`) and a
KubeRay `RayJob` (`entrypoint`, `runtimeEnvYAML`, `entrypointNumCpus`, ...). See :mod:`.spec`.
"""
