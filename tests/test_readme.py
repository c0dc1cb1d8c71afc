"""The README stays true: its settings table is the Config's, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from fcgigw.cli import build_parser
from fcgigw.config import (
    README_TABLE_END,
    README_TABLE_START,
    setting_fields,
    settings_markdown,
)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
START, END = README_TABLE_START, README_TABLE_END


def test_settings_table_matches_the_config() -> None:
    table = README[README.index(START) + len(START) : README.index(END)].strip()
    assert table == settings_markdown(), (
        "README settings table is stale: regenerate it: python -m fcgigw.config README.md"
    )


def test_every_setting_is_a_command_line_option() -> None:
    options = {action.dest for action in build_parser()._actions}
    assert {item.name for item in setting_fields()} <= options


def test_readme_commands_name_real_files() -> None:
    for path in re.findall(r"python3? (examples/\S+\.py)", README):
        assert (Path(__file__).resolve().parent.parent / path).exists(), path
