"""The `lwm` command: one entry point, a sub-command per job, Hydra overrides on each.

User errors (`LwmError`) print one line and exit 1 (2 for `lwm regress`, whose 1 is a regression); anything else is a bug and keeps its
traceback. An interrupted command exits 128 + the signal's number: 130 after Ctrl-C; `lwm fit` also 143 after SIGTERM
and 138 after SIGUSR1 (lightning_wm/interruption.py), never 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from sharding.errors import LwmError


def build_parser() -> argparse.ArgumentParser:
    from lightning_wm.commands import evaluate, fit, promote, regress, rollout, shard, simulate, stress

    parser = argparse.ArgumentParser(
        prog="lwm",
        description="lightning-wm: train, evaluate and drive policies in action-conditioned driving world models. "
        "Every command takes Hydra overrides (key=value) after its options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fit.add_parser(commands)
    evaluate.add_parser(commands)
    simulate.add_parser(commands)
    regress.add_parser(commands)
    stress.add_parser(commands)
    promote.add_parser(commands)
    rollout.add_parser(commands)
    shard.add_parsers(commands)
    return parser


def error_line(error: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it."""
    text = str(error).strip()
    if "Original Traceback" in text:  # torch re-raises worker errors with the traceback inlined
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(error).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill` and schedulers send) stops a command as Ctrl-C does: its cleanup runs
    (writer locks released, staged folders removed) and it exits 143, never 0."""

    exit_code = 128 + signal.SIGTERM

    def __str__(self) -> str:
        return "stopped by SIGTERM"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return args.run(args)
    except LwmError as error:
        print(f"lwm {args.command}: error: {error_line(error)}", file=sys.stderr)
        return getattr(args, "usage_exit", 1)  # `lwm regress` gates CI: 1 means a regression there
    except PermissionError as error:  # any folder or file the checks before the work did not cover
        print(f"lwm {args.command}: error: permission denied: {error.filename or error}; make it writable/readable "
              "or point the command elsewhere (--out, out=, runs_dir=, logger.tracking_uri=)", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:  # lwm fit: lightning_wm/interruption.py (130, 143 or 138)
        print(f"lwm {args.command}: interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr)
        return getattr(interrupt, "exit_code", 130)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
