"""Which stages to run, which to skip, and running them.

A stage is *done* when its manifest exists, its config hash matches the current config, and every
upstream stage it consumed is still the same run (same ``run_id``) and itself done. Anything else
is *stale* (config changed, upstream re-run) or *missing*; running a stage makes everything
downstream of it stale, so `phiray run` re-runs exactly the changed stage and what follows.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import yaml

from phiray.config import RunConfig, load_config
from phiray.formatting import format_pairs
from phiray.placement import stage_placement
from phiray.rundir import CONFIG_FILE, Manifest, RunDir
from phiray.runtime import init_ray

log = logging.getLogger("phiray")


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    sections: tuple[str, ...]
    after: tuple[str, ...] = ()
    needs_ray: bool = True
    module: str = ""
    # Sections hashed only when their condition holds (e.g. the teacher only for the LLM annotator).
    hashed_if: tuple[tuple[str, Callable[[RunConfig], bool]], ...] = ()
    # What else shapes the output for ``cfg`` beyond the config (the offline annotator's rule version, the
    # judge's prompt): mixed into the config hash, so a changed rule makes the stage and its downstream stale.
    version: Callable[[RunConfig], str] | None = None

    def hashed_sections(self, cfg: RunConfig) -> tuple[str, ...]:
        """The sections whose output-changing fields this stage's config hash covers for ``cfg``."""
        return tuple(p for p in self.sections if all(cond(cfg) for sec, cond in self.hashed_if if sec == p))

    def config_hash(self, cfg: RunConfig) -> str:
        digest = cfg.section_hash(self.hashed_sections(cfg))
        if self.version is None:
            return digest
        return hashlib.sha256(f"{digest}:{self.version(cfg)}".encode()).hexdigest()[:16]

    @property
    def module_name(self) -> str:
        """``module`` may be ``pkg.mod`` or ``pkg.mod:function`` (default ``phiray.stages.<name>:run``)."""
        return (self.module or f"phiray.stages.{self.name}").split(":")[0]

    @property
    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module_name) is not None
        except ModuleNotFoundError:
            return False

    def load(self) -> Callable[[RunConfig, RunDir], Manifest]:
        attr = self.module.split(":")[1] if ":" in self.module else "run"
        return getattr(importlib.import_module(self.module_name), attr)


@dataclass
class StageState:
    stage: Stage
    state: str  # done | stale | missing | unavailable | skipped
    reason: str = ""
    manifest: Manifest | None = None
    upstream: dict[str, str] = field(default_factory=dict)


def relevant_upstream(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> list[str]:
    """Upstream stages that apply to this run: those configured to run, or present in the run dir.

    (A preset without `grow` still has `finetune` after `pretrain`: the absent `grow` is not a gap.)
    """
    wanted = set(cfg.run.stages)
    return [u for u in stage.after if u in table and (u in wanted or rd.exists(rd.manifest_path(u)))]


def assess(
    stages: list[Stage], cfg: RunConfig, rd: RunDir, force: set[str] = frozenset(), will_run: set[str] | None = None
) -> list[StageState]:
    """State of each stage, in order. ``will_run`` (filled as we go) marks stages about to run, so
    their downstream counts as stale."""
    table = {s.name: s for s in stages}
    states: dict[str, StageState] = {}
    will_run = set() if will_run is None else will_run
    for stage in stages:
        manifest = rd.read_manifest(stage.name)
        upstream = relevant_upstream(stage, cfg, rd, table)
        st = StageState(stage, "done", manifest=manifest)
        up_states = {u: states.get(u) for u in upstream}
        if not stage.available:
            st.state, st.reason = "unavailable", "not implemented yet"
        elif stage.name in force:
            st.state, st.reason = "stale", "forced"
        elif manifest is None:
            st.state, st.reason = "missing", "no manifest"
        elif manifest.config_hash != stage.config_hash(cfg):
            st.state, st.reason = "stale", "config changed: " + ", ".join(stage.hashed_sections(cfg))
        else:
            for u in upstream:
                up = up_states[u]
                if u in will_run or (up is not None and up.state != "done"):
                    st.state, st.reason = "stale", f"upstream {u} re-runs"
                    break
                up_manifest = up.manifest if up is not None else rd.read_manifest(u)
                if up_manifest is None or manifest.inputs.get(u) != up_manifest.run_id:
                    st.state, st.reason = "stale", f"upstream {u} changed"
                    break
        if st.state in ("stale", "missing"):
            will_run.add(stage.name)
        states[stage.name] = st
    return list(states.values())


def upstream_inputs(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> dict[str, str]:
    """run_ids of the upstream manifests this stage will consume; fails clearly if one is missing."""
    inputs = {}
    for u in relevant_upstream(stage, cfg, rd, table):
        manifest = rd.read_manifest(u)
        if manifest is None:
            raise RuntimeError(f"stage {stage.name} needs stage {u} first (no {u}/_manifest.json in {rd.location})")
        inputs[u] = manifest.run_id
    return inputs


def run_stage(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> Manifest:
    """Run one stage now and write its manifest (last)."""
    inputs = upstream_inputs(stage, cfg, rd, table)
    if stage.needs_ray:
        init_ray(num_cpus=cfg.run.num_cpus, num_gpus=cfg.run.num_gpus)
    # The old manifest goes first: a crash mid-stage must leave the stage incomplete, never "done".
    if rd.exists(rd.manifest_path(stage.name)):
        rd.fs.delete_file(rd.path(rd.manifest_path(stage.name)))
    rd.write_text(CONFIG_FILE, cfg.to_yaml())
    started, t0, since_ms = rd.stage_started(), time.perf_counter(), int(time.time() * 1000)
    log.info("stage %s: running", stage.name)
    manifest = stage.load()(cfg, rd)
    if manifest.stage != stage.name:
        raise RuntimeError(f"stage {stage.name} returned a manifest for {manifest.stage!r}")
    wall = time.perf_counter() - t0

    manifest = rd.finish(
        manifest,
        config_hash=stage.config_hash(cfg),
        inputs=inputs,
        started_at=started,
        wall_time_s=wall,
        placement=stage_placement(since_ms, stage.needs_ray),
    )
    log.info("stage %s: done in %.1fs %s", stage.name, manifest.wall_time_s, format_pairs(manifest.headline))
    return manifest


def run_pipeline(
    stages: list[Stage], cfg: RunConfig, rd: RunDir, force: set[str] = frozenset(), only: list[str] | None = None
) -> list[StageState]:
    """`phiray run`: run the configured stages in order, skipping the ones that are done."""
    table = {s.name: s for s in stages}
    unknown = [n for n in list(cfg.run.stages) + list(force) + list(only or []) if n not in table]
    if unknown:
        raise ValueError(f"unknown stage(s): {', '.join(unknown)} (known: {', '.join(table)})")
    selected = [s for s in stages if s.name in cfg.run.stages and (not only or s.name in only)]
    rd.write_text(CONFIG_FILE, cfg.to_yaml())
    results = []
    will_run: set[str] = set()
    for state in assess(selected, cfg, rd, force=set(force), will_run=will_run):
        name = state.stage.name
        if state.state == "done":
            log.info("stage %s: up to date, skipped", name)
        elif state.state == "unavailable":
            log.warning("stage %s: not available yet, skipped", name)
        elif any(
            u in {r.stage.name for r in results if r.state == "unavailable"}
            for u in relevant_upstream(state.stage, cfg, rd, table)
        ):
            log.warning("stage %s: skipped, an upstream stage is not available", name)
            state = StageState(state.stage, "unavailable", "upstream not available")
        else:
            log.info("stage %s: %s", name, state.reason)
            state = StageState(state.stage, "done", manifest=run_stage(state.stage, cfg, rd, table))
        results.append(state)
    return results


def run_config(rd: RunDir) -> RunConfig:
    """The config a run directory was last run with (its ``config.yaml``, validated)."""
    return load_config(preset=None, base=yaml.safe_load(rd.read_text(CONFIG_FILE)))


STATUS_HEADER = ["stage", "state", "rows", "key metrics", "time"]


def status_rows(stages: list[Stage], cfg: RunConfig, rd: RunDir, reasons: bool = True) -> list[list[str]]:
    """One row per stage that is configured or has run (STATUS_HEADER's columns): what `phiray status` and
    the report's stage table show. ``reasons`` adds why a stage is not done to its state."""
    rows = []
    for st in assess(stages, cfg, rd):
        m = st.manifest
        if m is None and st.stage.name not in cfg.run.stages:
            continue
        state = f"{st.state} ({st.reason})" if reasons and st.state != "done" else st.state
        timing = f"{m.wall_time_s:.1f}s" if m else ""
        rows.append(
            [st.stage.name, state, format_pairs(m.rows) if m else "", format_pairs(m.headline) if m else "", timing]
        )
    return rows
