"""Stand-ins for docker, kind, kubectl and pulumi: executables on PATH that record their
command lines (and the environment they saw) and answer from rules the test writes.

A rule is `{"tool", "has": [words all in argv], "stdout", "stderr", "exit", "sleep", "pace"}`
(`pace`: seconds between stdout lines, as a long `pulumi up` prints); the first matching
rule answers, the default is exit 0 with no output. A rule's command that got to its end is
listed in `finished()`. The Automation API runs the fake `pulumi` exactly as it would run
the real CLI.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("docker", "kind", "kubectl", "pulumi")

_SCRIPT = """#!{python}
import json, os, sys, time
tool = os.path.basename(sys.argv[0])
argv = sys.argv[1:]
folder = {folder!r}
with open(os.path.join(folder, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"tool": tool, "argv": argv, "cwd": os.getcwd(),
                          "env": {{k: os.environ.get(k) for k in ("HOME", "KUBECONFIG", "PATH",
                                  "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE")}}}}) + "\\n")
with open(os.path.join(folder, "rules.json")) as f:
    rules = json.load(f)
for rule in rules:
    if rule["tool"] == tool and all(word in argv for word in rule.get("has", [])):
        time.sleep(rule.get("sleep", 0))
        for i, line in enumerate(rule.get("stdout", "").splitlines(keepends=True)):
            time.sleep(rule.get("pace", 0) if i else 0)
            sys.stdout.write(line)
            sys.stdout.flush()
        sys.stderr.write(rule.get("stderr", ""))
        with open(os.path.join(folder, "finished.jsonl"), "a") as log:
            log.write(json.dumps({{"tool": tool, "argv": argv}}) + "\\n")
        sys.exit(rule.get("exit", 0))
if tool == "pulumi" and argv[:1] == ["version"]:
    print("v3.200.0")
"""


@dataclass
class Fakes:
    folder: Path
    bin: Path

    def rule(self, tool: str, *has: str, stdout: str = "", stderr: str = "", exit: int = 0,
             sleep: float = 0, pace: float = 0) -> None:
        rules = json.loads((self.folder / "rules.json").read_text())
        rules.insert(0, {"tool": tool, "has": list(has), "stdout": stdout, "stderr": stderr,
                      "exit": exit, "sleep": sleep, "pace": pace})
        (self.folder / "rules.json").write_text(json.dumps(rules))

    def calls(self, tool: str | None = None) -> list[list[str]]:
        return [c["argv"] for c in self.records() if tool is None or c["tool"] == tool]

    def records(self, name: str = "calls.jsonl") -> list[dict]:
        path = self.folder / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def finished(self, tool: str) -> list[list[str]]:
        """Command lines that matched a rule and ran to its end (not killed on the way)."""
        return [c["argv"] for c in self.records("finished.jsonl") if c["tool"] == tool]

    def path(self, tool: str) -> str:
        return str(self.bin / tool)


def install(folder: Path) -> Fakes:
    folder.mkdir(parents=True, exist_ok=True)
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    (folder / "rules.json").write_text("[]")
    for tool in TOOLS:
        script = bin_dir / tool
        script.write_text(_SCRIPT.format(python=sys.executable, folder=str(folder)))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return Fakes(folder, bin_dir)
