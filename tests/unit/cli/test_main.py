"""The ``exchange`` command imports a subcommand's modules only when that subcommand runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exchange.cli.main import COMMANDS, load_command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_loads_under_its_name(name: str) -> None:
    assert load_command(name).name == name


def test_one_subcommand_is_a_group_as_add_typer_made_it() -> None:
    assert "apply" in load_command("grants").commands  # type: ignore[union-attr]


def test_the_router_does_not_import_the_other_commands() -> None:
    # A fresh interpreter: this one has imported everything already.
    probe = (
        "import sys\n"
        "from exchange.cli.main import load_command\n"
        "load_command('router')\n"
        "heavy = [m for m in ('cryptography', 'exchange.cli.connector', 'exchange.devplatform',"
        " 'httpx', 'authlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
