"""`hvtui backup`: placeholder until its issue's work lands here."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    return None
