"""Run a tlsweep study on the head node of a Ray cluster, joining the running cluster.

``ray submit`` copies this file to the head's home folder and runs it there with the head's ``python``:

    ray submit cluster/cluster.yaml cluster/submit.py -- search_spaces/inaturalist_freezing.yaml \\
        --storage s3://BUCKET/tlsweep

It is ``tlsweep run STUDY --address auto [ARGS...]``, run from the repository copy that ``ray up`` put on the
head (``~/tlsweep``), so the study path and the study's relative paths mean what they mean on your laptop.
Only the standard library is imported until the study starts, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

# Where the cluster configs' file_mounts put the repository on every node.
REPO_ON_NODE = "~/tlsweep"

USAGE_EPILOG = """\
examples (on your laptop, from the repository root):
  ray submit cluster/cluster.yaml cluster/submit.py -- search_spaces/inaturalist_freezing.yaml \\
      --storage s3://BUCKET/tlsweep
  ray submit cluster/cluster.yaml cluster/submit.py -- quickstart --storage s3://BUCKET/tlsweep \\
      --set training.epochs=4 --overwrite

Everything after STUDY goes to `tlsweep run` unchanged (--set, --storage, --overwrite); see
`tlsweep run --help`. On more than one node --storage must be shared storage that every node reaches
(s3://..., gs://..., or an NFS path mounted at the same place everywhere): docs/CLUSTER.md."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cluster/submit.py",
        description="Run a tlsweep study on a Ray cluster's head node: "
                    "`tlsweep run STUDY --address auto [ARGS...]` from the repository copy on the head.",
        epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default=None,
                   help=f"folder to run in (default: {REPO_ON_NODE} when it exists, else the current folder)")
    p.add_argument("study", help="a study YAML (relative to the workdir) or a shipped study name")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="more `tlsweep run` arguments")
    return p


def run_argv(study: str, rest: list[str]) -> list[str]:
    """The ``tlsweep`` argument list; a later ``--address`` in ``rest`` overrides ``auto``."""
    return ["run", study, "--address", "auto", *rest]


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or REPO_ON_NODE).expanduser()
    if workdir.is_dir():
        os.chdir(workdir)
    elif args.workdir is not None:
        parser.error(f"--workdir {workdir}: no such folder")
    from orchestrator.cli import main as tlsweep_main   # imports the project (and later Ray) only now
    return tlsweep_main(run_argv(args.study, args.args))


if __name__ == "__main__":
    sys.exit(main())
