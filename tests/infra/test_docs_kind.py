"""The by-hand kind flow in the README and docs/cluster.md: what a user pastes must work in
a non-interactive shell and create the cluster the kind backend does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localmesh.kind import NODE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "cluster.md"]
# The commands that read or write encrypted config on the file backend.
NEEDS_PASSPHRASE = re.compile(r"^\s*(\$\()?pulumi (stack (init|rm|output)|up|destroy|config set)\b")


def _shell_blocks(path: Path) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_passphrase_is_set_before_the_first_pulumi_command(doc):
    blocks = [b for b in _shell_blocks(doc) if "pulumi stack init" in b]
    assert blocks, f"{doc.name} has no by-hand Pulumi flow"
    for block in blocks:
        lines = block.splitlines()
        first = next(i for i, line in enumerate(lines) if NEEDS_PASSPHRASE.match(line))
        assert any(line.startswith("export PULUMI_CONFIG_PASSPHRASE=") for line in lines[:first]), block


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_kind_create_uses_the_pinned_node_image(doc):
    creates = [b for b in _shell_blocks(doc) if "kind create cluster" in b]
    assert creates
    for block in creates:
        assert f"--image {NODE_IMAGE}" in block.replace("\\\n  ", ""), block


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_commands_that_would_prompt_say_yes(doc):
    # Without --yes, pulumi up/destroy/stack rm ask for confirmation, and fail when no one can.
    for block in _shell_blocks(doc):
        for command in re.findall(r"pulumi (?:up|destroy|stack rm)\b[^\n&;#]*", block):
            assert "--yes" in command, command
