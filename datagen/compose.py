"""Compose a run's config: Hydra's ``DictConfig`` in, a :class:`DatagenConfig` out.

The one conversion, done at entry. It sits above the plug-ins: the teacher's
and verifier's options dataclasses come from their declarations
(:data:`~datagen.teachers.TEACHERS`, :data:`~datagen.verify_registry.VERIFIERS`),
the sections a stage adds (``dedup``, ``decontam``, a plug-in's own) from
:data:`~datagen.stages.STAGES`, and the output names from
:data:`~datagen.output.OUTPUTS`, so :mod:`datagen.config` imports none of them.
Unknown keys and bad values fail here, naming the full key; a key that moved
fails naming where it went.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datagen.config import (
    AdaptiveConfig,
    ConfigError,
    DatagenConfig,
    FilterConfig,
    OutputConfig,
    PipelineConfig,
    RunConfig,
    SamplingConfig,
    SourceConfig,
    StudentConfig,
    TeacherEntry,
    VerifierChoice,
    VerifyConfig,
    reject_non_finite,
)
from datagen.output import OUTPUTS
from datagen.stages import STAGES
from datagen.teachers import TEACHERS
from datagen.verify_registry import verifier_config_classes

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
"""The Hydra config folder that ``python -m datagen`` composes."""

CORE_SECTIONS: dict[str, type] = {
    "pipeline": PipelineConfig,
    "run": RunConfig,
    "source": SourceConfig,
    "generation": SamplingConfig,
    "filter": FilterConfig,
    "output": OutputConfig,
    "adaptive": AdaptiveConfig,
}
"""Top-level sections whose schema is fixed (the rest come from declarations)."""

DEFAULT_STUDENT_BACKEND = "local"
"""``student.backend.name`` when none is given: the embedded local model."""


def _make_writable(node: DictConfig) -> None:
    """Frozen dataclasses mark every nested node read-only; merging needs them writable."""
    OmegaConf.set_readonly(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _make_writable(child)


def build(cls: type, node: Any, key: str) -> Any:
    """Validate ``node`` against dataclass ``cls``; errors name ``key``."""
    if node is None:
        node = {}
    try:
        schema = OmegaConf.structured(cls)
        _make_writable(schema)
        merged = OmegaConf.merge(schema, node)
        built = OmegaConf.to_object(merged)
        if dataclasses.is_dataclass(built):  # every group, its own checks or not
            reject_non_finite(built, key)
        return built
    except OmegaConfBaseException as exc:
        full_key = f"{key}.{exc.full_key}" if getattr(exc, "full_key", None) else key
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"bad config at '{full_key}': {msg}") from None
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad config at '{key}': {exc}") from None


def build_verifier(registry: dict[str, type], node: Any, key: str) -> VerifierChoice:
    """Build ``verifier.name``'s options from the other keys of the group.

    ``name: ensemble`` also takes ``members``: a mapping from a label (the name its
    verdict is stored under) to a verifier group of its own plus an optional
    ``weight``; a list of groups is labelled by their names.
    """
    node = dict(node or {})
    name = node.pop("name", None)
    if name not in registry:
        raise ConfigError(f"{key}.name must be one of {sorted(registry)}, got {name!r}")
    if name != "ensemble":
        return VerifierChoice(name=name, options=_build_options(registry[name], node, key))
    members = _build_members(registry, node.pop("members", None), key)
    options = dataclasses.replace(_build_options(registry[name], node, key), members=members)
    return VerifierChoice(name=name, options=options)


def _build_options(cls: type, node: dict[str, Any], key: str) -> Any:
    """:func:`build`, with the verifier's hints (``model=...``) spelled as full keys."""
    try:
        return build(cls, node, key)
    except ConfigError as exc:
        names = "|".join(f.name for f in dataclasses.fields(cls))
        raise ConfigError(re.sub(rf"(?<![\w.])({names})=", rf"{key}.\1=", str(exc))) from None


def _build_members(registry: dict[str, type], members: Any, key: str) -> tuple[VerifierChoice, ...]:
    """The members of ``verifier.members``, each built as a verifier group of its own."""
    if isinstance(members, list):
        names = [str((m or {}).get("name")) for m in members]
        if len(set(names)) < len(names):
            raise ConfigError(
                f"{key}.members: two members have the same name; give them labels with the "
                "mapping form, e.g. members: {judge_a: {name: judge, ...}, judge_b: {...}}"
            )
        members = dict(zip(names, members, strict=True))
    if not isinstance(members, dict) or not members:
        raise ConfigError(
            f"{key}.members must name at least one verifier, e.g. "
            "members: {math: {name: math}, judge: {name: judge, model: ...}}"
        )
    built = []
    for label, member in members.items():
        member_key = f"{key}.members.{label}"
        member = dict(member or {})
        weight = member.pop("weight", 1.0)
        if member.get("name") == "ensemble":
            raise ConfigError(f"{member_key}.name: an ensemble cannot contain an ensemble")
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ConfigError(f"{member_key}.weight must be a number > 0, got {weight!r}")
        choice = build_verifier(registry, member, member_key)
        built.append(dataclasses.replace(choice, label=str(label), weight=float(weight)))
    return tuple(built)


def build_verify(registry: dict[str, type], node: Any, key: str = "verify") -> VerifyConfig:
    """Build ``verify``: each entry of ``routes`` is a verifier group of its own."""
    node = dict(node or {})
    routes = node.pop("routes", None) or {}
    if not isinstance(routes, dict):
        raise ConfigError(
            f"{key}.routes must map route keys to verifier groups, e.g. "
            "routes: {code: {name: code}}, got " + repr(routes)
        )
    built = {
        str(route): build_verifier(registry, group, f"{key}.routes.{route}")
        for route, group in routes.items()
    }
    return dataclasses.replace(build(VerifyConfig, node, key), routes=built)  # checks again


def build_named(registry: dict[str, type], node: Any, key: str) -> Any:
    """Build the dataclass that ``node.name`` selects from ``registry``."""
    name = node.get("name") if node is not None else None
    if name not in registry:
        raise ConfigError(f"{key}.name must be one of {sorted(registry)}, got {name!r}")
    return build(registry[name], node, key)


def stage_sections() -> dict[str, type]:
    """Every config section a declared stage adds (``dedup``, ``decontam``, ...)."""
    sections: dict[str, type] = {}
    for stage in STAGES.values():
        for name, cls in stage.sections.items():
            if sections.get(name, cls) is not cls:
                raise ConfigError(f"config section {name!r} is declared with two schemas")
            sections[name] = cls
    return sections


def schema_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's defaults as a plain mapping (``???`` where a value is required)."""
    node = OmegaConf.to_container(OmegaConf.structured(cls))
    assert isinstance(node, dict)
    return node


def register_defaults() -> None:
    """Put every section's dataclass defaults in Hydra's ConfigStore.

    Each default then lives in one place, its dataclass: ``conf/config.yaml`` pulls
    ``run`` and ``generation`` from ``datagen_defaults``, and each group's YAML starts
    from its ``_defaults`` (``_<name>`` for a teacher or verifier) and sets only what
    that choice changes. The nodes are plain (untyped), so a bad value still reaches
    :func:`resolve_config`, which names the key.
    """
    store = ConfigStore.instance()
    student = schema_defaults(StudentConfig) | {"backend": {"name": DEFAULT_STUDENT_BACKEND}}
    store.store(
        name="datagen_defaults",
        node={
            "run": schema_defaults(RunConfig),
            "generation": schema_defaults(SamplingConfig),
            "verify": schema_defaults(VerifyConfig),
            "teachers": [],
            "student": student,
        },
    )
    groups = {key: CORE_SECTIONS[key] for key in ("source", "filter", "output", "adaptive")}
    for group, cls in {**groups, **stage_sections()}.items():
        store.store(group=group, name="_defaults", node=schema_defaults(cls))
    for name, spec in TEACHERS.items():
        store.store(group="teacher", name=f"_{name}", node=schema_defaults(spec.config_cls))
    for name, cls in verifier_config_classes().items():
        node = {"name": name, **schema_defaults(cls)}
        node.pop("members", None)  # an ensemble's members are its YAML's own
        store.store(group="verifier", name=f"_{name}", node=node)


def compose(*overrides: str) -> DictConfig:
    """Compose ``conf/`` with Hydra for ``overrides``, as ``python -m datagen`` does.

    Raises:
        ConfigError: An override names a renamed key (the message names the new one).
    """
    check_overrides(list(overrides))
    register_defaults()  # again: a plug-in declared since import adds its own
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return hydra_compose(config_name="config", overrides=list(overrides))


def renamed_keys() -> dict[str, str]:
    """Every old full key -> its new full key, from the sections' ``RENAMED`` tables."""
    sections = {**CORE_SECTIONS, **stage_sections()}
    return {
        f"{key}.{old}": f"{key}.{new}"
        for key, cls in sections.items()
        for old, new in getattr(cls, "RENAMED", {}).items()
    }


def _renamed_error(old: str, new: str, value: Any = None) -> ConfigError:
    shown = f"={value}" if value is not None else ""
    return ConfigError(f"{old} was renamed: use {new}{shown} (see docs/architecture.md)")


def check_overrides(overrides: list[str]) -> None:
    """Refuse command-line overrides of renamed keys, naming the new key.

    Hydra would refuse them too, but only as unknown keys; this says where they went.
    """
    renamed = renamed_keys()
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        if key in renamed:
            raise _renamed_error(key, renamed[key], value or None)


def _check_renamed(raw: dict[str, Any]) -> None:
    """Refuse renamed keys in a composed config (a user's YAML, or ``+key=`` overrides)."""
    for old, new in renamed_keys().items():
        section, _, rest = old.partition(".")
        node = raw.get(section)
        if isinstance(node, dict) and rest in node and not isinstance(node[rest], dict):
            raise _renamed_error(old, new, node[rest])


def resolve_config(cfg: DictConfig) -> DatagenConfig:
    """Turn Hydra's composed config into a :class:`DatagenConfig` (the one conversion)."""
    if "pipeline" not in cfg or cfg.pipeline is None:
        raise ConfigError("no pipeline chosen: add +pipeline=math (or code, general)")
    raw = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(raw, dict):
        raise ConfigError("the composed config is not a mapping")
    raw.pop("hydra", None)
    _check_renamed(raw)
    declared = stage_sections()
    known = {
        "teacher",
        "teachers",
        "student",
        "verifier",
        "verify",
        "sources",
        *CORE_SECTIONS,
        *declared,
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown top-level config key(s): {unknown}; known: {sorted(known)}")
    built: dict[str, Any] = {
        key: build(cls, raw.get(key), key) for key, cls in CORE_SECTIONS.items()
    }
    built["teacher"] = build_named(
        {name: spec.config_cls for name, spec in TEACHERS.items()}, raw.get("teacher"), "teacher"
    )
    built["verifier"] = build_verifier(verifier_config_classes(), raw.get("verifier"), "verifier")
    built["verify"] = build_verify(verifier_config_classes(), raw.get("verify"))
    built["teachers"] = build_teachers(raw.get("teachers"), raw.get("generation"))
    built["student"] = build_student(raw.get("student"))
    fields = {f.name for f in dataclasses.fields(DatagenConfig)}
    extra = {}
    for key, cls in declared.items():
        section = build(cls, raw.get(key), key)
        if key in fields:
            built[key] = section
        else:
            extra[key] = section
    missing = sorted(fields - set(built) - {"extra", "sources"})
    if missing:  # a built-in section whose declaring stage was not imported
        raise ConfigError(f"no stage declares the config section(s) {missing}")
    _check_output_names(built["output"])
    built["sources"] = build_sources(raw.get("sources"))
    _check_student(built)
    return DatagenConfig(**built, extra=extra)


def build_sources(node: Any) -> list[SourceConfig]:
    """The ``sources`` list: each entry a :class:`SourceConfig` that must name its ``path``."""
    if node is None:
        return []
    if not isinstance(node, list):
        raise ConfigError(
            "sources must be a list of source entries, e.g. sources: [{path: a.jsonl, "
            "domain: math}, {path: b.jsonl, domain: code}]"
        )
    built = []
    for i, entry in enumerate(node):
        key = f"sources[{i}]"
        if not isinstance(entry, dict) or not entry.get("path"):
            raise ConfigError(f"{key}.path is required (a local file or folder, or a Hub name)")
        built.append(build(SourceConfig, entry, key))
    return built


def _teacher_registry() -> dict[str, type]:
    return {name: spec.config_cls for name, spec in TEACHERS.items()}


def build_teachers(node: Any, generation: Any) -> tuple[TeacherEntry, ...]:
    """``teachers:``: each entry a teacher group plus ``label`` and ``generation`` overrides.

    Raises:
        ConfigError: Not a list, a bad entry (named by index), or two entries with one label.
    """
    if not node:
        return ()
    if not isinstance(node, list):
        raise ConfigError(
            "teachers must be a list of teacher groups, e.g. "
            "teachers=[{name:local,label:cold,generation:{temperature:0.2}},{name:replay,path:x}]"
        )
    entries: list[TeacherEntry] = []
    for i, item in enumerate(node):
        key = f"teachers[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{key} must be a teacher group (a mapping with a name)")
        item = dict(item)
        label = item.pop("label", None) or item.get("name")
        overrides = item.pop("generation", None) or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{key}.generation must be a mapping of generation.* overrides")
        config = build_named(_teacher_registry(), item, key)
        sampling = build(SamplingConfig, {**(generation or {}), **overrides}, f"{key}.generation")
        entries.append(TeacherEntry(str(label), config, sampling))
    labels = [e.label for e in entries]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(
            f"teachers: the label(s) {twice} name more than one teacher; give each entry its "
            "own label, e.g. teachers=[{name:local,label:cold},{name:local,label:hot}]"
        )
    return tuple(entries)


def build_student(node: Any) -> StudentConfig:
    """``student:``: its own keys, and ``backend`` built as a teacher group."""
    node = dict(node or {})
    backend = dict(node.pop("backend", None) or {"name": DEFAULT_STUDENT_BACKEND})
    built = build(StudentConfig, node, "student")
    return dataclasses.replace(
        built, backend=build_named(_teacher_registry(), backend, "student.backend")
    )


def _check_student(built: dict[str, Any]) -> None:
    """What needs a student refuses to run without one; labels stay apart."""
    student: StudentConfig = built["student"]
    output: OutputConfig = built["output"]
    if not student.enabled:
        needs = [
            key
            for key, on in (
                ("output.curriculum=true", output.curriculum),
                (
                    "output.pair_policy=teacher_vs_student",
                    output.pair_policy == "teacher_vs_student",
                ),
            )
            if on
        ]
        if needs:
            raise ConfigError(
                f"{', '.join(needs)} needs a student: set student.enabled=true and list the "
                "stage student before emit in pipeline.stages (or use +pipeline=math_student)"
            )
        return
    labels = [e.label for e in built["teachers"]] or [built["teacher"].name]
    if student.label in labels:
        raise ConfigError(
            f"student.label={student.label!r} is also a teacher's label; give it another one"
        )


def _check_output_names(output: OutputConfig) -> None:
    """``output.subset_sizes`` may name only declared outputs."""
    for name in output.subset_sizes or {}:
        if name not in OUTPUTS:
            raise ConfigError(f"output.subset_sizes: unknown output {name!r}; use {tuple(OUTPUTS)}")


register_defaults()
