"""The `lesmd` command: train, serve, md, spectrum, info.

Each subcommand lives in the module that owns its physics or adapter and exposes
``add_cli_arguments(parser)`` and ``run_cli(args) -> int``; this file only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "train": ("lesmd.train", "train a model from extxyz energies/forces"),
    "serve": ("lesmd.ipi", "serve a model to a running i-PI server over its socket protocol"),
    "md": ("lesmd.md", "run molecular dynamics with ASE (default: water with the embedded model)"),
    "spectrum": ("lesmd.spectra", "IR spectrum and dielectric constant from a trajectory"),
    "info": ("lesmd.cli", "print what a model file contains"),
}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd info`."""
    parser.add_argument("model", nargs="?", default=None,
                        help="model file or shipped model name (default: list the shipped models, then describe "
                             "the default one)")


def run_cli(args: argparse.Namespace) -> int:
    """`lesmd info`: species, cutoff, σ, metrics and provenance of a model file."""
    from lesmd.models.io import describe_model, list_shipped_models

    if args.model is None:
        print("shipped models (LESCalculator(NAME), --model NAME):")
        print(list_shipped_models())
        print()
    print(describe_model(args.model))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the module of ``command`` (if given) is imported, so one subcommand's
    dependencies never break another."""
    from lesmd import __version__

    parser = argparse.ArgumentParser(prog="lesmd", description="MD driver for Latent Ewald Summation potentials")
    parser.add_argument("--version", action="version", version=f"lesmd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_cli_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lesmd` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run_cli(args) or 0)
    except KeyboardInterrupt:
        print("lesmd: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, TimeoutError) as err:  # OSError: missing files, sockets, a full disk
        print(f"lesmd {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
