"""Which stages to run, which to skip, and running them.

A stage is *done* when its manifest exists, its config hash matches the current config, and every
upstream stage it consumed is still the same run (same ``run_id``) and itself done. Anything else
is *stale* (config changed, upstream re-run) or *missing*; running a stage makes everything
downstream of it stale, so `phiray run` re-runs exactly the changed stage and what follows.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable

import yaml

from phiray.config import RunConfig, load_config
from phiray.formatting import format_pairs
from phiray.placement import stage_placement
from phiray.rundir import CONFIG_FILE, MANIFEST, Manifest, RunDir
from phiray.runtime import init_ray
from phiray.schemas import SCHEMAS, require, schema_mismatches

log = logging.getLogger("phiray")


StageRun = Callable[[RunConfig, RunDir], Manifest]


@dataclass(frozen=True)
class Stage:
    """One row of the stage table (``phiray.stages.STAGES``): what the stage is, what it reads and writes, and how
    its config hash is made. ``run`` returns the stage's ``run(cfg, run_dir)``; the table passes a small loader that
    imports it, so go-to-definition follows it and the CLI imports only the stage it runs."""

    name: str
    help: str
    sections: tuple[str, ...]
    after: tuple[str, ...] = ()
    needs_ray: bool = True
    run: Callable[[], StageRun] | None = None
    # Upstream outputs it reads, "<stage>/<output>" (checked before work, each against its schema when it has one)
    # and its own outputs, "<output>" under ``<stage>/`` (Parquet ones have their schema in ``phiray.schemas``; a
    # name may be a glob for outputs named at run time, as thesis's ``seed-*``).
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # Sections hashed only when their condition holds (e.g. the teacher only for the LLM annotator).
    hashed_if: tuple[tuple[str, Callable[[RunConfig], bool]], ...] = ()
    # Upstream stages (in ``after``) needed only when their condition holds (tokenize reads similarity's pruned
    # exercises only with similarity.prune_tau set); otherwise neither required nor a staleness source.
    after_if: tuple[tuple[str, Callable[[RunConfig], bool]], ...] = ()
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

    def load(self) -> StageRun:
        if self.run is None:
            raise RuntimeError(f"stage {self.name} has no run in the stage table")
        return self.run()


@dataclass
class StageState:
    stage: Stage
    state: str  # done | stale | missing
    reason: str = ""
    manifest: Manifest | None = None
    upstream: dict[str, str] = field(default_factory=dict)


def relevant_upstream(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> list[str]:
    """Upstream stages that apply to this run: those configured to run, or present in the run dir.

    (A preset without `grow` still has `finetune` after `pretrain`: the absent `grow` is not a gap.)
    """
    wanted = set(cfg.run.stages)
    unneeded = {u for u, cond in stage.after_if if not cond(cfg)}
    return [
        u for u in stage.after if u in table and u not in unneeded and (u in wanted or rd.exists(rd.manifest_path(u)))
    ]


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
        if stage.name in force:
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


def missing_reads(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> list[str]:
    """What of ``stage.reads`` is absent or lacks its schema's columns, from the upstream stages that apply."""
    wanted = set(relevant_upstream(stage, cfg, rd, table))
    problems = []
    for read in stage.reads:
        upstream, output = read.split("/", 1)
        if upstream not in wanted:
            continue
        try:
            if (upstream, output) in SCHEMAS:
                require(rd, upstream, output)
            elif not rd.exists(upstream, output):
                raise FileNotFoundError(f"{read} is missing: run stage {upstream!r}")
        except (FileNotFoundError, ValueError) as err:
            problems.append(str(err))
    return problems


def check_reads(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> None:
    """Fail before any work, with one error naming every missing or outdated input of ``stage``."""
    problems = missing_reads(stage, cfg, rd, table)
    if problems:
        raise FileNotFoundError(f"stage {stage.name} cannot start in {rd.location}: " + "; ".join(problems))


def output_mismatches(stage: Stage, rd: RunDir, first_only: bool = False) -> list[str]:
    """How the Parquet outputs ``stage`` wrote in ``rd`` differ from their schemas (nothing when they match).
    ``first_only`` reads one footer per output (the runner's check); the tests read every file's."""
    return [
        p
        for name in stage.writes
        if (stage.name, name) in SCHEMAS
        for p in schema_mismatches(rd, stage.name, name, first_only=first_only)
    ]


def undeclared_entries(stage: Stage, rd: RunDir) -> list[str]:
    """What ``stage`` has under ``<stage>/`` that is none of its declared ``writes`` (a write may be a glob)."""
    entries = set(rd.listdir(stage.name)) - {MANIFEST}
    return [f"{stage.name}/{e}" for e in sorted(entries) if not any(fnmatchcase(e, w) for w in stage.writes)]


def contract_problems(stage: Stage, rd: RunDir, first_only: bool = False) -> list[str]:
    """How what ``stage`` left under ``<stage>/`` differs from its declared ``writes`` (nothing when it matches):
    an entry that is none of its writes, or a Parquet output off its schema."""
    problems = [f"{e}: not one of {stage.name}'s writes {stage.writes}" for e in undeclared_entries(stage, rd)]
    return problems + output_mismatches(stage, rd, first_only=first_only)


def check_writes(stage: Stage, rd: RunDir) -> None:
    """After ``stage`` ran, before its manifest marks it done: a Parquet output off its schema fails the stage here,
    not in a downstream stage (or a user's reader) far from its cause; the outputs stay on disk for a look, and with
    no manifest the next run re-runs the stage. An undeclared entry is only logged: it may be a leftover of an older
    phiray in a reused run directory, which must not block the stage for ever."""
    for entry in undeclared_entries(stage, rd):
        log.warning("stage %s: %s is none of its declared writes (a leftover of an older run?)", stage.name, entry)
    problems = output_mismatches(stage, rd, first_only=True)
    if problems:
        raise RuntimeError(
            f"stage {stage.name} wrote outputs off their schema (phiray.schemas) in {rd.location}: "
            + "; ".join(problems)
            + " (an output no run of this version rewrote is an older phiray's: remove it and re-run)"
        )


def run_stage(stage: Stage, cfg: RunConfig, rd: RunDir, table: dict[str, Stage]) -> Manifest:
    """Run one stage now and write its manifest (last)."""
    inputs = upstream_inputs(stage, cfg, rd, table)
    check_reads(stage, cfg, rd, table)
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
    check_writes(stage, rd)

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
