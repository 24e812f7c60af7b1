"""The ``vlm-course`` command line.

Each subcommand lives in its own module, imported only when that subcommand runs, which
exposes ``configure(parser, command_name)`` (adds arguments) and ``run(args) -> int``
(the exit code); ``args.command`` holds the subcommand's name.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("vlm_course.doctor", "check this machine: versions, device, memory, cache, profile"),
    "build-toy-models": ("vlm_course.toybuild.commands", "rebuild the ShapesWorld toy checkpoints"),
    "eval-toy-models": ("vlm_course.toybuild.commands", "measure the toy checkpoints on fresh scenes"),
    "estimate": ("vlm_course.sizes.commands", "parameters and memory per dtype of the course's real models"),
    "bench": ("vlm_course.sizes.commands", "measure speed of a real-size model with random weights, or the image search"),
    "download": ("vlm_course.sizes.commands", "prefetch the checkpoints a lesson needs into the Hugging Face cache"),
    "grade": ("vlm_course.grading.commands", "grade exercise submissions in a sandbox"),
    "check": ("vlm_course.check", "self-check your exercises/: points per test, hints, where to start"),
    "serve": ("vlm_course.serve", "serve a course model to a lab (OpenAI-compatible API, transformers serve)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-course", description="Helper commands of the Vision-Language Models course.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        args = parser.parse_args(argv)  # prints help or the usage error
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vlm_course"):
            print(f"vlm-course {name}: not available in this version ({exc.name} is missing)", file=sys.stderr)
            return 2
        raise
    sub = argparse.ArgumentParser(prog=f"vlm-course {name}", description=help_text)
    module.configure(sub, name)
    own_args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if "-h" in own_args or "--help" in own_args:
        # parse_intermixed_args hides positionals' defaults while it parses, so its help would fail on them
        sub.print_help()
        return 0
    args = sub.parse_intermixed_args(argv[1:])  # options may follow positionals: bench search --benchmarks DIR -- ARGS
    args.command = name
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
