"""The docs are true to the code: every config key they name exists, and the README's
table of defaults is what a run uses."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from datagen.compose import (
    CORE_SECTIONS,
    renamed_keys,
    resolve_config,
    schema_defaults,
    stage_sections,
)
from datagen.config import VerifyConfig
from datagen.teachers import TEACHERS
from datagen.verify_registry import verifier_config_classes

from .conftest import ROOT, compose

DOCS = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SECTIONS = (*CORE_SECTIONS, *stage_sections(), "teacher", "verifier", "verify")
KEY = re.compile(rf"(?<![\w./$-])((?:{'|'.join(SECTIONS)})(?:\.[a-z_][a-z0-9_]*)+)(=?)")
"""A config key as the docs write it: ``generation.n``, ``dedup.index.kind=flat``."""


def schemas(section: str) -> list[dict[str, Any]]:
    """The defaults of every schema a section can have (one per teacher, verifier)."""
    if section == "teacher":
        return [schema_defaults(s.config_cls) for s in TEACHERS.values()]
    if section == "verifier":
        return [{"name": n, **schema_defaults(c)} for n, c in verifier_config_classes().items()]
    if section == "verify":
        return [schema_defaults(VerifyConfig)]
    return [schema_defaults({**CORE_SECTIONS, **stage_sections()}[section])]


def key_exists(key: str, assigned: bool = False) -> bool:
    """True when some schema has ``key`` (a leaf, when the docs assign it a value)."""
    section, *parts = key.split(".")
    if section == "verifier" and parts[:1] == ["members"]:  # members.<label>.<key>
        return len(parts) == 2 or key_exists(".".join(["verifier", *parts[2:]]), assigned)
    if section == "verify" and parts[:1] == ["routes"] and len(parts) > 1:  # routes.<key>...
        return len(parts) == 2 or key_exists(".".join(["verifier", *parts[2:]]), assigned)
    for node in schemas(section):
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            if not (assigned and isinstance(node, dict) and node):  # a group takes no value
                return True
            continue
        # a mapping-valued option (extra_body, subset_sizes) takes any sub-key
        if (isinstance(node, dict) and not node) or node is None:
            return True
    return False


RENAMED_TABLE = re.compile(r"^\| old key \| new key \|.*?(?:\n\n|\Z)", re.M | re.S)
"""docs/architecture.md's table of keys that moved: the old keys are named on purpose."""


def named_keys() -> dict[tuple[str, bool], set[str]]:
    """``(key, assigned a value)`` -> the docs that name it (moved keys' table aside)."""
    found: dict[tuple[str, bool], set[str]] = {}
    for path in DOCS:
        for key, equals in KEY.findall(RENAMED_TABLE.sub("", path.read_text())):
            where = found.setdefault((key, bool(equals)), set())
            where.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_docs_name_config_keys():
    keys = {key for key, _ in named_keys()}
    assert len(keys) > 40  # the pattern finds keys at all
    assert "dedup.index.kind" in keys and "generation.temperature" in keys


def test_every_key_the_docs_name_exists():
    missing = {
        key + ("=" if assigned else ""): sorted(where)
        for (key, assigned), where in named_keys().items()
        if not key_exists(key, assigned)
    }
    assert not missing, f"keys named in the docs that no config has: {missing}"


def test_the_moved_keys_table_lists_real_renames():
    table = RENAMED_TABLE.search((ROOT / "docs" / "architecture.md").read_text())
    assert table is not None
    renamed = renamed_keys()
    first_old = [m.group(1) for m in re.finditer(r"^\| `([a-z_.]+)`", table.group(0), re.M)]
    assert len(first_old) >= 5 and all(key in renamed for key in first_old), first_old
    assert all(key_exists(renamed[key]) for key in first_old)


def test_the_key_check_catches_a_wrong_key():
    assert key_exists("dedup.index.kind") and key_exists("teacher.base_url")
    assert key_exists("verifier.members.judge.model") and key_exists("output.subset_sizes")
    assert not key_exists("source.splits") and not key_exists("dedup.index_kind")
    assert not key_exists("dedup.flat_max_rows")  # moved to dedup.index.flat_max_rows
    assert key_exists("dedup.index") and not key_exists("dedup.index", assigned=True)
    assert key_exists("verify.routes.general.model") and key_exists("verify.default_route")
    assert not key_exists("verify.routes.code.nope") and not key_exists("verify.route")


def readme_defaults() -> list[tuple[str, str]]:
    """``(key, default)`` of each row of the README's configuration table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", table, re.M)
    assert len(rows) >= 10, "the README's configuration table was not found"
    return [(key, default.strip()) for key, default in rows]


def effective(plain: dict[str, Any], key: str) -> Any:
    value: Any = plain
    for part in key.split("."):
        value = value[part]
    return value


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    """The resolved config of the README's first command, as plain data."""
    return resolve_config(compose("+pipeline=math")).as_dict()


@pytest.mark.parametrize(("key", "default"), readme_defaults())
def test_the_readme_defaults_are_the_effective_ones(plain, key, default):
    written = yaml.safe_load(re.sub(r"\s*\(.*\)$", "", default).replace("`", ""))
    assert effective(plain, key) == written, f"README says {key} = {default}"
