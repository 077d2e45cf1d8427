"""``eval agreement``'s registry entry: how often a scorer's or a judge's preferences agree with people on
a public human preference test set (the evaluator is :mod:`visionprefer.evaluate.agreement`; the sets are
the specs in ``benchmarks/specs/human/``); its leaderboard benchmarks ``agreement/<testset>``, one per set.

An agreement entry describes a scorer or judge (``evaluators``), not images a model made, so a submission
of agreement entries alone needs no ``model``; its rows are the candidates."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...leaderboard.fields import RATE_TOLERANCE, Problem, check_ci, check_judge_or_scorer, field, num
from ...leaderboard.table import Row, Table, fmt
from ...scorers.factory import DEFAULT_CQ_THRESHOLD
from ..registry import Benchmark, Evaluator
from ..testsets import TESTSETS, testset_spec
from .winrate import add_judge_llm_arguments, judge_llm_config

AGREEMENT_SCORERS = ("clip", "aesthetic", "pickscore", "hpsv2", "cq")


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--testset", required=True, choices=TESTSETS, help="the human test set (its spec)")
    sp.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="a local copy of the test set in its published layout (or, for pickapic_v1_test, any folder "
        "or parquet in Pick-a-Pic columns, a visionprefer dataset's dpo config included)",
    )
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--scores",
        metavar="FILE",
        help="per-image scores, JSON or JSONL keyed by the test set's item id and image index (or image id)",
    )
    g.add_argument(
        "--verdicts", metavar="FILE", help="a pairwise judge's verdicts (JSONL), both orders allowed"
    )
    g.add_argument(
        "--judge",
        metavar="CONFIG",
        help="a build config: its annotate.judge judges the test set's images as the build would (same "
        "guide, schema, settings, client, budget max_cost_usd; both_orders adds position consistency); the "
        "estimate prints before any call, answers are cached in OUT/llm/ (a rerun asks nothing again)",
    )
    g.add_argument(
        "--pairwise-judge",
        metavar="MODEL",
        help="a pairwise VLM judge (eval winrate's) asked about every counted pair of images in both orders "
        "(position consistency included); --base-url, --api-key-env, --concurrency, --max-cost-usd set its "
        "server and budget; the estimate prints before any call, answers are cached in OUT/llm/",
    )
    g.add_argument(
        "--scorer",
        choices=AGREEMENT_SCORERS,
        help="score the test set's images here with this scorer (needs the images in --data); a reward model "
        "trained by `visionprefer train-reward` is a pickscore-style scorer: --scorer pickscore "
        "--scorer-model ITS_FOLDER",
    )
    g.add_argument(
        "--metrics",
        metavar="CONFIG",
        help="metric feedback's weighted total: a build config whose annotate.metrics section gives the "
        "scorers, weights, device and batch size; each image gets the total such a build stores for it. "
        "LLM-written questions (and VLM answers) are estimated first, capped by the config's max_cost_usd "
        "and cached under --out",
    )
    sp.add_argument(
        "--scorer-model", help="the scorer's model id or folder (default: the scorer's usual one)"
    )
    add_judge_llm_arguments(sp)
    sp.add_argument(
        "--cq-threshold",
        type=float,
        default=DEFAULT_CQ_THRESHOLD,
        help="--scorer cq: the detection confidence an object needs to count (default %(default)s)",
    )
    sp.add_argument("--device", default="auto")
    sp.add_argument("--batch-size", type=int, default=16)
    sp.add_argument("--protocol", help="the scoring protocol (default: the one the test set's spec names)")
    sp.add_argument("--tie-tolerance", type=float, default=0.0, help="scores this close are a predicted tie")
    sp.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument(
        "--candidate",
        metavar="MODEL_ID",
        help="the model id of the scorer or judge behind --scores / --verdicts (recorded in the summary; "
        "--submission needs it); with --scorer it defaults to the scorer's model, with --judge to the judge's",
    )
    sp.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="where agreement_summary.json goes; with --judge also the judge's response cache and usage log "
        "(DIR/llm/) and the test set's images as shown to it (DIR/judge_images/)",
    )
    sp.add_argument(
        "--submission",
        metavar="FILE",
        help="also write a leaderboard submission (benchmark agreement/<testset>; needs no --model)",
    )


def _scorer_model(name: str, settings: Any) -> str:
    """The model id a built-in scorer of ``settings`` loads."""
    if name == "hpsv2":
        if settings.hpsv2_checkpoint:
            return str(settings.hpsv2_checkpoint)
        from ...scorers.hpsv2 import HPS_CHECKPOINTS, HPS_REPO

        return f"{HPS_REPO}/{HPS_CHECKPOINTS[settings.hpsv2_version]}"
    return {"clip": settings.clip_model, "aesthetic": settings.aesthetic_model, "cq": settings.cq_model}.get(
        name, settings.pickscore_model
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..agreement import format_agreement, run_agreement, scorer_callable

    if getattr(args, "submission", None):
        if not (args.scorer or args.judge or args.pairwise_judge or args.candidate):
            source = "--verdicts" if args.verdicts else "--scores"
            raise ConfigError(
                f"--submission: name the scorer or judge that produced {source} with --candidate MODEL_ID"
            )
        if args.bootstrap < MIN_RESAMPLES:
            raise ConfigError(
                f"--submission: a leaderboard entry needs --bootstrap {MIN_RESAMPLES} or more "
                f"(got {args.bootstrap})"
            )

    def say(line: str) -> None:  # the estimate, before a judge is asked
        if not getattr(args, "quiet", False):
            print(line, flush=True)

    if args.pairwise_judge:
        from ..agreement_pairwise import run_pairwise_agreement

        result, summary = run_pairwise_agreement(
            args.testset,
            args.data,
            judge_llm_config(args, args.pairwise_judge),
            args.out,
            protocol=args.protocol,
            say=say,
            candidate_id=args.candidate,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
        j = summary["judge"]
        line = (
            f"  pairwise judge {j['model']}: {j['pairs']} pairs, {j['requests']} requests, {j['new_attempts']} "
            f"sent now, {j['unanswered']} unanswered; ${j['usd']:.4f} spent in {j['cache']}"
        )
        return {**summary, "text": format_agreement(result) + "\n" + line}
    if args.judge:
        from ..agreement_judge import run_judge_agreement

        result, summary = run_judge_agreement(
            args.testset,
            args.data,
            args.judge,
            args.out,
            protocol=args.protocol,
            say=say,
            tie_tolerance=args.tie_tolerance,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            candidate_id=args.candidate,
        )
        j = summary["judge"]
        orders = "both orders" if j["both_orders"] else "one order"
        line = (
            f"  judge {j['model']} (guide {j['guide_version']}, {orders}): {j['requests']} requests, "
            f"{j['new_attempts']} sent now, {j['unanswered']} unanswered; ${j['usd']:.4f} spent in {j['cache']}"
        )
        return {**summary, "text": format_agreement(result) + "\n" + line}
    scores: Any = args.scores
    options: dict[str, Any] = {}
    kind, source = ("judge", "verdicts") if args.verdicts else ("scorer", "scores")
    candidate: dict[str, Any] = {"kind": kind, "source": source, "id": args.candidate}
    if args.scorer or args.metrics:  # scored here: the images themselves are read
        from ..testsets import with_images

        options["loader_options"] = with_images(args.testset)
    if args.scorer:
        from ...scorers.factory import ScorerSettings, build_scorer

        settings = ScorerSettings(
            device=args.device, batch_size=args.batch_size, cq_threshold=args.cq_threshold
        )
        if args.scorer_model:
            settings = settings.with_model(args.scorer_model)
        candidate = {
            "kind": "scorer",
            "source": "scorer",
            "scorer": args.scorer,
            "id": args.candidate or _scorer_model(args.scorer, settings),
            "model": args.scorer_model,
        }
        if args.scorer == "cq":
            candidate["cq_threshold"] = args.cq_threshold
        scores = scorer_callable(build_scorer(args.scorer, settings))
    elif args.metrics:
        options.update(_metrics_candidate(args))
        candidate = options.pop("candidate")
    result = run_agreement(
        args.testset,
        args.data,
        scores=scores,
        verdicts=args.verdicts,
        protocol=args.protocol,
        out=args.out,
        tie_tolerance=args.tie_tolerance,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        candidate=candidate,
        **options,
    )
    summary = json.loads((Path(args.out) / "agreement_summary.json").read_text(encoding="utf-8"))
    return {**summary, "text": format_agreement(result)}


def _metrics_candidate(args: argparse.Namespace) -> dict[str, Any]:
    """``--metrics CONFIG``: the options of ``run_agreement`` that score each item with metric feedback's
    weighted total (:func:`~visionprefer.annotate.metrics.metric_scorer`, its LLM cache and usage log in
    ``<out>/llm``), and the candidate recorded in the summary (models, weights, the LLM estimate)."""
    from ...annotate.metrics import images_per_prompt, metric_models, metric_scorer
    from ...config import load_config
    from ...errors import ConfigError
    from ...rundir import RunDir

    config = load_config(args.metrics)
    if config.annotate.backend != "metrics":
        raise ConfigError(
            f"--metrics {args.metrics}: annotate.backend is {config.annotate.backend!r}; the weighted total "
            "is metric feedback's (annotate.backend: metrics)"
        )
    from ...annotate.metrics import metrics_fingerprint
    from ..provenance import file_sha256

    mc = config.annotate.metrics
    candidate: dict[str, Any] = {
        "kind": "scorer",
        "source": "metrics",
        "id": args.candidate or f"metric-feedback/{metrics_fingerprint(mc)[:12]}",
        "metrics": str(args.metrics),
        "models": metric_models(mc),
        "weights": dict(mc.weights),
    }

    def scorer_for(items: Any) -> Any:
        scorer, candidate["llm_estimate"] = metric_scorer(config, RunDir(args.out), images_per_prompt(items))
        return scorer

    return {
        "scorer_for": scorer_for,
        "candidate": candidate,
        "extra_inputs": {"metrics_config": file_sha256(Path(args.metrics))},
    }


def report(args: argparse.Namespace, summary: Mapping[str, Any]) -> list[str]:
    lines = [*summary["text"].splitlines()]
    for role, row in ((summary.get("candidate") or {}).get("llm_estimate") or {}).items():
        lines.append(
            f"  LLM {role}: {row['calls']} calls estimated ({row.get('cached', 0)} already answered), "
            f"${row['usd']:.4f}" + ("" if row.get("price_known", True) else " (no price known for the model)")
        )
    return [*lines, f"results in {args.out}"]


# ------------------------------------------------------------------------------------------ leaderboard

PREFIX = "agreement/"
METRIC_VERSION = "v1"
DECIMALS = 3
MIN_RESAMPLES = 1000  # as winrate's bootstrap_ci: the schema file's minimum
#: Protocols whose headline is correct / n_pairs (a credit sum for pickscore_tie_credit).
POOLED = ("imagereward_micro", "pairwise_excl_ties", "mjbench", "pickscore_tie_credit")
CORRELATIONS = ("spearman", "kendall_tau_b", "pearson")
PAIR_FIELDS = ("accuracy", "wilson_ci", "n_pairs", "correct")
MJBENCH_FIELDS = ("accuracy_without_ties", "pairs_without_ties")
TIFA_FIELDS = (*CORRELATIONS, "images")
#: A candidate's ``source`` -> the input files whose sha256 its summary holds.
INPUT_FILES = {
    "scorer": (),
    "scores": ("scores",),
    "verdicts": ("verdicts",),
    "judge": ("judge_config",),
    "pairwise": (),
    "metrics": ("metrics_config",),
}
JUDGE_SOURCES = ("verdicts", "judge", "pairwise")  # the sources whose candidate is a judge


def entries(s: Mapping[str, Any], out: Path) -> dict[str, dict[str, Any]]:
    """One ``agreement/<testset>`` entry from the summary ``run_agreement`` wrote."""
    from ...leaderboard.schema import ci_record

    r, testset, protocol = s["result"], s["testset"], s["protocol"]
    candidate = s.get("candidate") or {}
    if not candidate.get("id"):
        raise ConfigError("--submission: name the scorer or judge with --candidate MODEL_ID")
    if r["value"] is None:
        raise ConfigError(f"--submission: nothing to submit, no pair of {testset} was scored")
    level = r["confidence"]
    summary: dict[str, Any] = {
        "testset": testset,
        "spec_revision": s.get("spec_revision"),
        "protocol": protocol,
        "candidate": {k: candidate[k] for k in ("source", "scorer") if k in candidate},
        "input_sha256": dict(s["input_sha256"]),
    }
    if protocol == "tifa_correlation":
        summary.update({k: r["extra"][k] for k in TIFA_FIELDS})
        n = r["extra"]["images"]
    else:
        n = r["n_pairs"]
        summary.update(
            accuracy=r["value"],
            wilson_ci=ci_record(r["wilson_ci"], level, "wilson"),
            n_pairs=n,
            correct=r["correct"],
        )
        if protocol == "mjbench":
            summary.update({k: r["extra"][k] for k in MJBENCH_FIELDS})
    summary["bootstrap_ci"] = ci_record(r["bootstrap_ci"], level, "bootstrap-percentile", r["n_bootstrap"])
    summary.update(
        {
            k: r[k]
            for k in (
                "human_ties",
                "predicted_ties",
                "tie_rate",
                "skipped_pairs",
                "missing_images",
                "items_used",
                "items_skipped",
                "tie_tolerance",
            )
        }
    )
    pc = r.get("position_consistency")
    if pc is not None:
        summary["position_consistency"] = {
            **{k: pc[k] for k in ("pairs", "consistent", "rate")},
            "wilson_ci": ci_record(pc["wilson_ci"], level, "wilson"),
        }
    return {
        f"{PREFIX}{testset}": {
            "metric_version": METRIC_VERSION,
            "evaluators": {candidate["kind"]: candidate["id"]},
            "n": n,
            "summary": summary,
            "results": str(out / "agreement_items.jsonl"),
        }
    }


def check(prefix: tuple[Any, ...], entry: Mapping[str, Any]) -> list[Problem]:
    """Not exactly one of ``judge``/``scorer``; ``testset`` other than the key's; a ``protocol`` the test
    set's spec does not list; a candidate ``source`` that contradicts the evaluators (verdicts come from a
    judge) or ``input_sha256`` (the hash of the scores or verdicts file read, nothing for a scorer run here);
    the fields of the other kind of protocol (accuracy, Wilson CI, pair counts vs the correlations and
    image count of ``tifa_correlation``), or missing ones; a bootstrap CI or Wilson CI that does not contain
    its estimate; a Wilson CI that is not the interval of correct in n_pairs at its level, or one where the
    statistic is not a binomial proportion; ``n`` != ``n_pairs`` (or ``images``); more correct or
    predicted ties than pairs; ``accuracy`` != correct / n_pairs for the pooled protocols, ``tie_rate`` !=
    predicted ties / decisive pairs (each within 0.0005); position consistency that does not add up, or
    without a judge."""
    from ..agreement import BINOMIAL_PROTOCOLS, TIES_COUNT_PROTOCOLS  # n_pairs counts human ties in these
    from ..stats import wilson_interval

    s, evaluators = entry["summary"], entry["evaluators"]
    at = lambda *keys: field((*prefix, *keys))  # noqa: E731
    out = check_judge_or_scorer(prefix, evaluators)
    testset = prefix[-1].removeprefix(PREFIX)
    if s["testset"] != testset:
        out.append(
            (at("summary", "testset"), f"{s['testset']!r} is not {testset!r}, the test set of {prefix[-1]}")
        )
    protocol = s["protocol"]
    allowed = testset_spec(testset)["protocols"]
    if protocol not in allowed:
        out.append(
            (
                at("summary", "protocol"),
                f"{protocol!r} is not a protocol of {testset} (its spec allows {', '.join(allowed)})",
            )
        )
        return out
    source, judge = s["candidate"]["source"], "judge" in evaluators
    if (source in JUDGE_SOURCES) != judge:
        out.append(
            (
                at("summary", "candidate", "source"),
                f"{source!r} with evaluators.{'judge' if judge else 'scorer'}: verdicts and a judge asked here "
                "come from a judge, scores from a scorer",
            )
        )
    if ("scorer" in s["candidate"]) != (source == "scorer"):
        out.append(
            (
                at("summary", "candidate", "scorer"),
                'names the built-in scorer run by eval agreement: give it exactly when source is "scorer"',
            )
        )
    expected_inputs = set(INPUT_FILES[source])
    if set(s["input_sha256"]) != expected_inputs:
        want = (
            f"the sha256 of the {INPUT_FILES[source][0]} file only"
            if expected_inputs
            else "empty: a scorer run here reads no file"
        )
        out.append((at("summary", "input_sha256"), f"must hold {want}"))
    if "position_consistency" in s and not judge:
        out.append((at("summary", "position_consistency"), "only a judge asked in both orders has one"))
    tifa = protocol == "tifa_correlation"
    required = TIFA_FIELDS if tifa else PAIR_FIELDS + (MJBENCH_FIELDS if protocol == "mjbench" else ())
    foreign = (
        (PAIR_FIELDS + MJBENCH_FIELDS)
        if tifa
        else TIFA_FIELDS + (() if protocol == "mjbench" else MJBENCH_FIELDS)
    )
    out += [(at("summary", k), f"missing: protocol {protocol} reports it") for k in required if k not in s]
    out += [(at("summary", k), f"not a figure of protocol {protocol}") for k in foreign if k in s]
    if out:
        return out
    estimate_name = "spearman" if tifa else "accuracy"
    estimate = s[estimate_name]
    if estimate is None:
        return [(at("summary", estimate_name), "must be a number: an entry has its headline figure")]
    ci = s["bootstrap_ci"]
    out += check_ci((*prefix, "summary", "bootstrap_ci"), ci, estimate, estimate_name, RATE_TOLERANCE)
    if tifa:
        if entry["n"] != s["images"]:
            out.append((at("n"), f"{entry['n']} differs from summary.images = {s['images']}"))
        return out
    for key in ("low", "high"):
        if not 0 <= ci[key] <= 1:
            out.append(
                (at("summary", "bootstrap_ci", key), f"{num(ci[key])} is outside 0..1, the range of accuracy")
            )
    n_pairs, correct = s["n_pairs"], s["correct"]
    wilson = s["wilson_ci"]
    if protocol not in BINOMIAL_PROTOCOLS:
        if wilson is not None:
            out.append(
                (
                    at("summary", "wilson_ci"),
                    f"must be null: protocol {protocol} is not a binomial proportion",
                )
            )
    elif wilson is None:
        out.append((at("summary", "wilson_ci"), "must be the Wilson interval of correct / n_pairs, got null"))
    else:
        out += check_ci((*prefix, "summary", "wilson_ci"), wilson, estimate, "accuracy", RATE_TOLERANCE)
        bounds = wilson_interval(int(correct), n_pairs, wilson["level"])
        for key, value in zip(("low", "high"), bounds, strict=True):
            if abs(wilson[key] - value) > RATE_TOLERANCE:
                out.append(
                    (
                        at("summary", "wilson_ci", key),
                        f"{num(wilson[key])} is not the {wilson['level']:g} Wilson bound for {num(correct)} "
                        f"correct in {n_pairs} pairs, {value:.4f}",
                    )
                )
    if entry["n"] != n_pairs:
        out.append((at("n"), f"{entry['n']} differs from summary.n_pairs = {n_pairs}"))
    if correct > n_pairs:
        out.append((at("summary", "correct"), f"{num(correct)} is more than the {n_pairs} pairs"))
    if protocol in POOLED and abs(estimate - correct / n_pairs) > RATE_TOLERANCE:
        out.append(
            (at("summary", "accuracy"), f"{num(estimate)} is not correct / n_pairs = {correct / n_pairs:.4f}")
        )
    decisive = n_pairs - s["human_ties"] if protocol in TIES_COUNT_PROTOCOLS else n_pairs
    if decisive < 0:
        out.append((at("summary", "human_ties"), f"{s['human_ties']} is more than the {n_pairs} pairs"))
    elif s["predicted_ties"] > decisive:
        out.append(
            (
                at("summary", "predicted_ties"),
                f"{s['predicted_ties']} is more than the {decisive} decisive pairs",
            )
        )
    elif (s["tie_rate"] is None) != (decisive == 0) or (
        decisive and abs(s["tie_rate"] - s["predicted_ties"] / decisive) > RATE_TOLERANCE
    ):
        expected = "null" if not decisive else f"{s['predicted_ties'] / decisive:.4f}"
        out.append(
            (
                at("summary", "tie_rate"),
                f"{num(s['tie_rate'])} is not predicted_ties / decisive pairs = {expected}",
            )
        )
    if protocol == "mjbench":
        den = s["pairs_without_ties"]
        if den != n_pairs - s["predicted_ties"]:
            out.append(
                (
                    at("summary", "pairs_without_ties"),
                    f"{den} is not n_pairs - predicted_ties = {n_pairs - s['predicted_ties']}",
                )
            )
        elif (s["accuracy_without_ties"] is None) != (den == 0) or (
            den and abs(s["accuracy_without_ties"] - correct / den) > RATE_TOLERANCE
        ):
            out.append(
                (
                    at("summary", "accuracy_without_ties"),
                    f"{num(s['accuracy_without_ties'])} is not correct / pairs_without_ties",
                )
            )
    pc = s.get("position_consistency")
    if pc is not None:
        here = ("summary", "position_consistency")
        if pc["consistent"] > pc["pairs"]:
            out.append((at(*here, "consistent"), f"{pc['consistent']} is more than the {pc['pairs']} pairs"))
        elif (pc["rate"] is None) != (pc["pairs"] == 0) or (
            pc["pairs"] and abs(pc["rate"] - pc["consistent"] / pc["pairs"]) > RATE_TOLERANCE
        ):
            out.append((at(*here, "rate"), f"{num(pc['rate'])} is not consistent / pairs"))
    return out


def _candidate_cells(entry: Mapping[str, Any]) -> tuple[str, str]:
    s = entry["summary"]
    ((kind, model_id),) = entry["evaluators"].items()
    source = s["candidate"]["source"]
    how = {
        "scorer": f"{s['candidate'].get('scorer')} scorer run by eval agreement",
        "scores": "per-image scores file",
        "verdicts": "pairwise judge verdicts",
        "judge": "a build's judge asked by eval agreement",
        "pairwise": "a pairwise judge asked by eval agreement in both orders",
        "metrics": "metric feedback's weighted total",
    }[source]
    settings = f"{how}, tie tolerance {s['tie_tolerance']:g}" if kind == "scorer" else how
    return model_id, settings


def rows(name: str, data: Mapping[str, Any], entry: Mapping[str, Any], metric: str) -> list[Any]:
    from ..agreement import PROTOCOLS

    s = entry["summary"]
    value = s.get(metric)
    if value is None:
        return []
    testset, protocol = s["testset"], s["protocol"]
    version, revision = entry["metric_version"], s["spec_revision"]
    key = ("agreement", testset, protocol, version, revision)
    if protocol == "tifa_correlation":
        extras = {k: fmt(s[k], DECIMALS) for k in CORRELATIONS if k != metric}
        extras["images"] = str(s["images"])
    else:
        wilson = s["wilson_ci"]
        extras = {
            "Wilson CI": "–" if wilson is None else f"[{wilson['low']:.3f}, {wilson['high']:.3f}]",
            "predicted ties": str(s["predicted_ties"]),
            "skipped pairs": str(s["skipped_pairs"]),
        }
        if metric != "accuracy":
            extras = {"accuracy": fmt(s["accuracy"], DECIMALS), **extras}

    def table() -> Table:
        return Table(
            f"Agreement with humans on {testset}: {metric} (protocol {protocol})",
            f"Protocol {protocol}: {PROTOCOLS[protocol]}. Test set spec revision {revision or 'not pinned'}; "
            f"metric {version}. The CI is a bootstrap over the test set's items.",
            metric,
            DECIMALS,
            list(extras),
        )

    model, settings = _candidate_cells(entry)
    ci = s["bootstrap_ci"] if metric in ("accuracy", "spearman") else None
    return [(key, table, Row(name, model, settings, value, ci, entry["n"], extras))]


def _metrics(testset: str) -> tuple[str, ...]:
    protocols = testset_spec(testset)["protocols"]
    if protocols == ["tifa_correlation"]:
        return CORRELATIONS
    return ("accuracy", "accuracy_without_ties") if protocols == ["mjbench"] else ("accuracy",)


BENCHMARKS = tuple(
    Benchmark(
        name=f"{PREFIX}{testset}",
        title=f"Agreement with humans on {testset}",
        metrics=_metrics(testset),
        check=check,
        rows=rows,
    )
    for testset in TESTSETS
)

EVALUATOR = Evaluator(
    name="agreement",
    help="agreement of a scorer's or judge's preferences with a human preference test set",
    add_arguments=add_arguments,
    run=run,
    summary_file="agreement_summary.json",
    summary_fields=("benchmark", "testset", "protocol", "input_sha256", "candidate", "result"),
    report=report,
    benchmarks=BENCHMARKS,
    entries=entries,
)
