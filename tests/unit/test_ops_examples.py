"""The examples of docs/operations.md "Running N workers" (systemd unit, StatefulSet) name
only real settings: every ``EOFLOW_*`` variable is a field of Settings, every flag given
to ``eoflow worker`` is one of its options, and the values the examples set are accepted.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from eoflow._settings import ENV_PREFIX, Settings, settings_from_env
from eoflow.cli import worker

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
HEADING = "## Running N workers"

#: ``eoflow worker ...`` on an ExecStart line, or ``["eoflow", "worker", ...]`` in YAML.
WORKER_COMMAND = re.compile(r"""\beoflow["',\s]+worker\b(.*)""")
FLAG = re.compile(r"""(?<![\w%-])(--?[A-Za-z][\w-]*)""")


def section() -> str:
    text = OPERATIONS.read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    return text[start:] if end < 0 else text[start:end]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def worker_flags(text: str) -> set[str]:
    """Flags on ``eoflow worker`` command lines, and flags quoted in the prose."""
    found: set[str] = set()
    for block in code_blocks(text):
        for line in block.splitlines():
            command = WORKER_COMMAND.search(line.split("#", 1)[0])
            if command:
                found.update(FLAG.findall(command.group(1)))
    found.update(re.findall(r"`(--[a-z][\w-]*)", text))
    return found


def env_values(text: str) -> list[dict[str, str]]:
    """Per code block that sets any: ``EOFLOW_X=value`` (systemd ``Environment=``) and
    ``- name: EOFLOW_X`` followed by ``value: ...`` (Kubernetes)."""
    found = []
    for block in code_blocks(text):
        values = {name: value.strip() for name, value in
                  re.findall(r"^Environment=(EOFLOW_\w+)=(.*)$", block, flags=re.M)}
        for name, value in re.findall(r"- name: (EOFLOW_\w+)[^\n]*\n\s+value: ([^\n]*)",
                                      block):
            values[name] = value.split(" #", 1)[0].strip().strip('"')
        if values:
            found.append(values)
    return found


SETTING_VARIABLES = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}


def test_the_section_has_both_examples() -> None:
    text = section()
    assert "eoflow-worker@.service" in text and "kind: StatefulSet" in text
    assert {"EOFLOW_INSTANCE_ID", "EOFLOW_DATADIR", "EOFLOW_SESSION_TIMEOUT"} <= set(
        re.findall(r"\bEOFLOW_[A-Z_]+\b", text))
    assert {"--instance-id", "--datadir"} <= worker_flags(text)


@pytest.mark.parametrize("name", sorted(set(re.findall(r"\bEOFLOW_[A-Z_]+\b", section()))))
def test_every_variable_is_a_setting(name: str) -> None:
    assert name in SETTING_VARIABLES, f"{name} in {OPERATIONS.name} is not a Settings field"


@pytest.mark.parametrize("flag", sorted(worker_flags(section())))
def test_every_flag_is_an_option_of_eoflow_worker(flag: str) -> None:
    options = {opt for param in worker.params for opt in param.opts}
    assert flag in options, f"eoflow worker has no {flag} (it has {sorted(options)})"


def test_the_values_the_examples_set_are_accepted() -> None:
    systemd, kubernetes = env_values(section())
    assert {"EOFLOW_BROKER", "EOFLOW_SESSION_TIMEOUT"} <= set(systemd)
    assert {"EOFLOW_BROKER", "EOFLOW_SESSION_TIMEOUT", "EOFLOW_WEB_URL"} <= set(kubernetes)
    for values in (systemd, kubernetes):
        Settings(app_id="orders", **settings_from_env(values))  # type: ignore[arg-type]


def test_a_misspelt_variable_or_flag_is_caught() -> None:
    text = ("## Running N workers\n```\nEnvironment=EOFLOW_SESSION_TIMEOUT_MS=30\n"
            "ExecStart=eoflow worker -A orders.app --instance %i\n```\n")
    assert "--instance" in worker_flags(text)
    assert "--instance" not in {opt for param in worker.params for opt in param.opts}
    assert "EOFLOW_SESSION_TIMEOUT_MS" not in SETTING_VARIABLES
