"""What every command group shares: how a subcommand is added and how it runs.

Imports nothing of the package, so each group module can import it without a cycle."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from rag.config import Settings

# The subcommands of one parser; the alias is text because argparse's class is generic
# only to the type checker.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
# Adds one command (with its subcommands) to the parser: (subcommands, --index/--collection/--llm).
AddCommand: TypeAlias = Callable[[Subcommands, argparse.ArgumentParser], None]
# What `set_defaults(run=...)` names: the parsed arguments and settings in, the exit code out.
Handler: TypeAlias = Callable[[argparse.Namespace, Settings], int]
