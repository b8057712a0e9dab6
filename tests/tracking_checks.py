"""Reading TensorBoard event files back the way TensorBoard does (its own ``EventAccumulator``)."""

from __future__ import annotations

from pathlib import Path


def read_scalars(logdir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (the orphaned steps of a restart purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def plugin_tags(logdir: str | Path, plugin: str) -> set[str]:
    """Tags written for a TensorBoard plugin (e.g. ``hparams``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return set(acc.PluginTagToContent(plugin))
