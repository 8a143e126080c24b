"""Pulumi.yaml: the project file's shape, and its config block against the program's keys."""

from __future__ import annotations

import re

import pytest
import yaml

from components.settings import KEYS
from tests.infra.harness import ROOT, run_program

PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
CONFIG = PROJECT["config"]
# Pulumi's project schema (sdk/go/common/workspace/project.json): a declared key may carry
# only these attributes, and `type` is one of these.
DECLARATION_FIELDS = {"type", "default", "description", "secret", "items"}
CONFIG_TYPES = {"string", "integer", "boolean", "array"}


def test_project_basics():
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", PROJECT["name"])
    assert PROJECT["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert PROJECT["description"].strip()
    assert PROJECT["backend"] == {"url": "file://./.pulumi-state"}
    assert ".pulumi-state/" in (ROOT / ".gitignore").read_text().splitlines()


def test_config_declares_exactly_the_keys_the_program_reads():
    assert set(CONFIG) == {key.name for key in KEYS}


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_declaration_matches_the_program(key):
    declared = CONFIG[key.name]
    assert set(declared) <= DECLARATION_FIELDS
    assert declared["type"] in CONFIG_TYPES
    assert declared["type"] == key.type
    assert declared["default"] == key.default
    assert isinstance(declared["description"], str) and declared["description"].strip()
    if key.type == "string":
        assert isinstance(declared["default"], str)  # YAML 100 would be an integer


def _as_cli_passes(value) -> str:
    """The CLI hands config to the program as strings, booleans spelled true/false."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_pulumi_yaml_defaults_produce_the_same_stack_as_no_config():
    # With the CLI, project defaults arrive as config; without it, the program's own defaults
    # apply. Both must give the same stack.
    explicit = run_program({name: _as_cli_passes(d["default"]) for name, d in CONFIG.items()})
    implicit = run_program()

    def summary(run):
        return sorted((r.type, r.name, repr(r.inputs)) for r in run.resources
                      if r.type != "pulumi:pulumi:Stack")

    assert summary(explicit) == summary(implicit)
    assert explicit.outputs == implicit.outputs
