"""The ``visionprefer`` command. Each subcommand: parse, load config, one library call, print.

Exit codes (the README's policy): 0 when the command finished, also when it recorded per-item failures
(they are reported in the summary and by ``status``; ``--strict`` turns them into exit 1); non-zero with
one line (``visionprefer: error: ...``, no traceback) when an error stopped it (2, or 3 for a spending
limit); 130 on an interrupt, which keeps every finished item (the same command resumes). Under a launcher
every rank's counts are the whole launch's, so every rank exits alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import VisionPreferError
from .stages import STAGE_NAMES as STAGE_COMMANDS  # one command per stage, in order


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visionprefer",
        description="Build fine-grained AI-feedback preference datasets for text-to-image models.",
    )
    p.add_argument("--version", action="version", version=f"visionprefer {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
        sp.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")

    def strict(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--strict",
            action="store_true",
            help="exit 1 when the command finished with recorded per-item failures (default: exit 0 and "
            "report them)",
        )

    def runnable(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", metavar="CONFIG", help="YAML build config")
        sp.add_argument("--out", metavar="RUN_DIR", help="run directory (overrides the config's run_dir)")
        sp.add_argument(
            "--retry-failed",
            action="store_true",
            help="also retry items that failed permanently in earlier runs",
        )
        strict(sp)
        common(sp)

    runnable(sub.add_parser("build", help="run every stage of a build config (re-running resumes)"))
    for stage in STAGE_COMMANDS:
        runnable(sub.add_parser(stage, help=f"run the {stage} stage only"))

    sp = sub.add_parser(
        "estimate", help="prompts, images, calls, tokens, dollars and GPU-hours, before spending"
    )
    sp.add_argument("config", metavar="CONFIG")
    sp.add_argument("--out", metavar="RUN_DIR")
    sp.add_argument("--json", action="store_true", help="print JSON")
    common(sp)

    sp = sub.add_parser("status", help="per-stage counts of done, pending and failed items")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--json", action="store_true", help="print JSON")
    common(sp)

    sp = sub.add_parser(
        "push", help="upload the published dataset folder to the Hugging Face Hub (resumable)"
    )
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--repo-id", required=True, metavar="ORG/NAME")
    sp.add_argument("--private", action="store_true")
    sp.add_argument("--token-env", default="HF_TOKEN", help="environment variable holding the Hub token")
    common(sp)

    from .evaluate.registry import benchmarks, evaluators

    ev = sub.add_parser("eval", help="evaluate a model (generate with --model) or an image folder (--images)")
    evsub = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for evaluator in evaluators().values():  # each evaluator's options are its registry entry's
        sp = evsub.add_parser(evaluator.name, help=evaluator.help)
        evaluator.add_arguments(sp)
        common(sp)

    lb = sub.add_parser("leaderboard", help="validate submission files; render a ranked table")
    lbsub = lb.add_subparsers(dest="action", metavar="ACTION", required=True)
    sp = lbsub.add_parser("validate", help="check submission files; exit non-zero naming every bad field")
    sp.add_argument("files", nargs="+", metavar="FILE")
    common(sp)
    sp = lbsub.add_parser(
        "render", help="a folder of submissions -> ranked Markdown and HTML tables with CIs"
    )
    sp.add_argument("folder", metavar="DIR")
    sp.add_argument(
        "--out", required=True, metavar="DIR", help="writes leaderboard.md and leaderboard.html here"
    )
    sp.add_argument("--benchmark", default="hpsv2", choices=list(benchmarks()))
    sp.add_argument("--metric", help="which number ranks the table (default: the benchmark's main one)")
    common(sp)

    sp = sub.add_parser(
        "train-reward", help="fine-tune a CLIP-family reward model on a dataset's pairs (re-running resumes)"
    )
    sp.add_argument("config", metavar="CONFIG", nargs="?", help="YAML reward config (or a `reward:` section)")
    sp.add_argument("--dataset", help="dataset folder or Hub id (config 'pairs')")
    sp.add_argument("--base-model", help="CLIP-family model id or folder (tiny-clip for a demo)")
    sp.add_argument("--out", metavar="DIR", help="output folder (overrides the config's output_dir)")
    sp.add_argument("--aspect", help="overall (default) or one aspect")
    sp.add_argument("--max-steps", type=int)
    sp.add_argument("--batch-size", type=int, help="pairs per optimizer step, over all processes")
    sp.add_argument("--learning-rate", type=float)
    sp.add_argument("--seed", type=int)
    sp.add_argument("--save-every", type=int, help="checkpoint every N steps")
    common(sp)

    sp = sub.add_parser("quickstart", help="the offline demo build on tiny random-weight models")
    sp.add_argument("--out", metavar="RUN_DIR", default="runs/quickstart")
    sp.add_argument("--retry-failed", action="store_true")
    strict(sp)
    common(sp)
    return p


def _configure_output(args: argparse.Namespace) -> bool:
    """Set logging and third-party progress output; returns whether our progress bars are on."""
    ours = logging.getLogger("visionprefer")
    if not ours.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO if args.verbose else logging.WARNING)
    # Library chatter (weight-loading bars, deprecation notes) is not ours to show in a clean run.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not args.verbose:
        # Deprecation and advisory warnings from the libraries are for developers, not for a build's output.
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category)
    return not args.quiet


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _summarise_build(args: argparse.Namespace, report, config) -> None:
    if getattr(args, "quiet", False):
        return
    from .dist import process_info

    if not process_info().is_main:
        return
    from .stages import summary_lines

    for line in summary_lines(report.stages):
        _say(args, line)
    if report.failed:
        _say(
            args,
            f"recorded failures: {report.failed} items (reasons in `visionprefer status`; the next run retries "
            "the transient ones)"
            + ("" if getattr(args, "strict", False) else "; --strict makes them exit 1"),
        )
    if any(g.tiny for g in _specs(config)):
        _say(
            args,
            "note: tiny random-weight models were used; the images are noise and the numbers mean nothing.",
        )
    _say(args, f"run directory: {report.run_dir}  (see `visionprefer status {shlex.quote(report.run_dir)}`)")


def _specs(config):
    from .generate.plan import resolve_generators

    return resolve_generators(config.generate)


def _run(args: argparse.Namespace) -> int:
    progress = _configure_output(args)
    cmd = args.command
    if cmd == "status":
        from .status import format_status, run_status

        st = run_status(args.run_dir)
        print(json.dumps(st, indent=2) if args.json else format_status(st))
        return 0

    if cmd == "push":
        from .publish.push import push_dataset

        url = push_dataset(args.run_dir, args.repo_id, private=args.private, token_env=args.token_env)
        _say(args, f"pushed: {url}")
        return 0

    if cmd == "eval":
        return _run_eval(args)
    if cmd == "train-reward":
        return _run_train_reward(args, progress)
    if cmd == "leaderboard":
        return _run_leaderboard(args)

    from .config import load_config

    if cmd == "quickstart":
        from .resources import data_path

        config = load_config(data_path("examples/quickstart.yaml"), run_dir=args.out)
        cmd = "build"
    else:
        config = load_config(args.config, run_dir=args.out)

    if cmd == "estimate":
        from .estimate import estimate_build, format_estimate

        est = estimate_build(config)
        print(json.dumps(est, indent=2) if args.json else format_estimate(est))
        return 0

    from .build import BuildReport, build, open_run, run_stage

    if cmd == "build":
        report = build(config, retry_failed=args.retry_failed, progress=progress)
    else:
        run = open_run(config)
        report = BuildReport(run_dir=str(run.root))
        report.stages[cmd] = run_stage(
            config, cmd, retry_failed=args.retry_failed, progress=progress, run=run
        )
    _summarise_build(args, report, config)
    # Recorded per-item failures do not make a finished command fail (they are reported, and `status` has
    # their reasons) unless --strict; an error that stopped the command raised before this line.
    return 1 if args.strict and report.failed else 0


def _run_eval(args: argparse.Namespace) -> int:
    """``visionprefer eval NAME``: the evaluator's registry entry runs, reports and (``--submission``)
    makes the leaderboard entries."""
    from .evaluate.registry import evaluator, run_evaluator

    ev = evaluator(args.benchmark)
    summary = run_evaluator(ev, args)
    for line in ev.report(args, summary):
        _say(args, line)
    if getattr(args, "submission", None):
        if ev.submission_summary is not None:
            summary = ev.submission_summary(args, summary)
        _write_submission(args, dict(summary))
    return 0


def _run_train_reward(args: argparse.Namespace, progress: bool) -> int:
    from .reward import load_reward_config, train_reward

    cfg = load_reward_config(
        args.config,
        dataset=args.dataset,
        base_model=args.base_model,
        output_dir=args.out,
        aspect=args.aspect,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        save_every=args.save_every,
    )
    r = train_reward(cfg, progress=progress)
    from .dist import process_info

    if process_info().is_main:

        def acc(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.4f}"

        _say(
            args,
            f"train-reward: {r.output_dir} ({'already trained' if r.already_done else f'{r.steps} steps'}"
            + (f", resumed from step {r.resumed_from}" if r.resumed_from is not None else "")
            + f"); {r.sizes['train']} train / {r.sizes['validation']} validation pairs ({r.validation_source});"
            f" validation accuracy {acc(r.validation_accuracy_before)} before, {acc(r.validation_accuracy)} "
            f"at step {r.best_step}",
        )
    return 0


def _run_leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .leaderboard import SubmissionError, render_leaderboard, validate_submission
    from .rundir import atomic_write_text

    if args.action == "validate":
        bad = 0
        for file in args.files:
            try:
                validate_submission(file)
            except SubmissionError as e:
                bad += 1
                for field, problem in getattr(e, "problems", None) or [(None, str(e))]:
                    print(f"{file}: {field + ': ' if field else ''}{problem}", file=sys.stderr)
            else:
                _say(args, f"{file}: valid")
        return 1 if bad else 0
    markdown, html = render_leaderboard(args.folder, benchmark=args.benchmark, metric=args.metric)
    out = Path(args.out)
    atomic_write_text(out / "leaderboard.md", markdown)
    atomic_write_text(out / "leaderboard.html", html)
    _say(args, f"leaderboard: {out / 'leaderboard.md'}, {out / 'leaderboard.html'}")
    return 0


def _write_submission(args: argparse.Namespace, summary: dict) -> None:
    from .leaderboard.from_eval import write_eval_submission

    path = write_eval_submission(args.benchmark, summary, args.out, args.submission)
    _say(args, f"submission: {path}")


def main(argv: Sequence[str] | None = None) -> int:
    code = _main(argv)
    from .dist import leave_launch

    leave_launch(code)  # under torchrun: exits here (see there why)
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except VisionPreferError as e:
        print(f"visionprefer: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except OSError as e:  # disk full, permission denied, ...: the user's to fix, not a traceback
        print(f"visionprefer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "visionprefer: interrupted; finished items are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
