"""Local judge benchmark: the annotate stage with ``annotate.judge.backend: local`` against a bare
``model.generate`` loop with the same constrained decoding, batches and inputs.

What is measured
----------------
Setup (untimed, once): a run directory with ``--prompts`` (default 24) prompts through the prompts and
generate stages of the tiny random-weight generators ``tiny-sd15`` and ``tiny-sd21`` at two CFG scales
(four images a prompt, 64x64 px); the judge is ``tiny-vlm`` (the tiny LLaVA-style VLM of the tiny-model
factory) with ``batch_size`` ``--batch-size`` (default 8), every group of four images one request.

* **bare arm**: the judge's requests are built beforehand (``Judge.request``: guide, quoted prompt, images
  as data URLs, the per-request schema), cut into batches of ``batch_size`` in the order the stage takes
  them, and handed to ``TransformersEngine.generate`` one batch at a time: chat template, processor,
  ``model.generate`` with greedy decoding and llguidance's token masks, decoding of the new tokens. This is
  the floor any stage built on that engine pays.
* **stage arm**: ``visionprefer.build.run_stage(config, "annotate")``, the real stage, with the same engine
  object injected (so the model is loaded once for both arms, outside the timers): the timer spans planning
  the groups, building the requests (images read, resized, encoded), the batching client, validation,
  rank settling and the log appends. The annotation state (``<run>/annotate``, ``<run>/llm``) is removed
  before each run.

Both arms run ``--repeats`` times (default 3), alternating; the best of each is used. After every stage run
the benchmark checks that every group is annotated and that each stage batch had ``batch_size`` groups
(the last one the rest), and that the stage's answers equal the bare arm's (same batches, greedy: the
same tokens).

The last line is ``stage/bare throughput: X.XX`` (groups/s of the stage ÷ groups/s of the bare loop; the
target is >= 0.9).

Run (from the repository root, about a minute with the defaults)::

    .venv/bin/python benchmarks/bench_local_judge.py
    .venv/bin/python benchmarks/bench_local_judge.py --prompts 48 --batch-size 8 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_work_option, quiet_logs, workspace, write_prompts  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    add_work_option(p, "the run directory and tiny models")
    args = p.parse_args(argv)

    with workspace(args.work, "vp-bench-local-judge-", VISIONPREFER_TINY_DIR="{work}/tiny") as work:
        import torch

        torch.set_num_threads(1)
        quiet_logs()
        from visionprefer.annotate.judge import Judge
        from visionprefer.annotate.local_judge import LocalJudgeClient, TransformersEngine
        from visionprefer.annotate.stage import annotate_with_judge, judge_groups
        from visionprefer.build import open_run, run_stage
        from visionprefer.config import config_from_dict
        from visionprefer.dist import process_info
        from visionprefer.rundir import read_jsonl

        write_prompts(work / "prompts.txt", args.prompts)
        config = config_from_dict(
            {
                "run_dir": str(work / "run"),
                "prompts": {"sources": [{"path": "prompts.txt"}]},
                "generate": {
                    "generators": [{"preset": "tiny-sd15"}, {"preset": "tiny-sd21"}],
                    "guidance_scales": [3.0, 7.5],
                },
                "annotate": {
                    "backend": "judge",
                    "judge": {
                        "backend": "local",
                        "image_max_side": 64,
                        "local": {
                            "model": "tiny-vlm",
                            "batch_size": args.batch_size,
                            "max_explanation_chars": 48,
                        },
                    },
                },
            },
            base_dir=str(work),
            origin="bench_local_judge",
        )
        run = open_run(config)
        for stage in ("prompts", "generate"):
            run_stage(config, stage, progress=False, run=run)
        judge_cfg = config.annotate.judge
        engine = TransformersEngine(judge_cfg.local)
        proto = Judge(judge_cfg, config.annotate.aspect_weights)
        groups, _ = judge_groups(config, run, proto.version)
        requests = [proto.request(g.prompt, list(g.files)) for g in groups]
        batches = [requests[i : i + args.batch_size] for i in range(0, len(requests), args.batch_size)]
        engine.generate(batches[0][:1])  # warm-up: first-call costs (kernels, grammar compile)
        print(f"{len(groups)} groups of {len(groups[0].files)} images, batches of {args.batch_size}")

        bare_best = stage_best = float("inf")
        bare_texts: list[str] = []
        for repeat in range(args.repeats):
            t0 = time.perf_counter()
            bare_texts = [d.text for batch in batches for d in engine.generate(batch)]
            bare = time.perf_counter() - t0
            bare_best = min(bare_best, bare)

            shutil.rmtree(run.root / "annotate", ignore_errors=True)
            shutil.rmtree(run.root / "llm", ignore_errors=True)
            client = LocalJudgeClient(judge_cfg.local, engine=engine)
            t0 = time.perf_counter()
            report = annotate_with_judge(
                config,
                open_run(config),
                retry_failed=False,
                progress=False,
                proc=process_info(),
                client=client,
            )
            staged = time.perf_counter() - t0
            stage_best = min(stage_best, staged)
            assert (report.made, report.failed) == (len(groups), 0), report
            full, rest = divmod(len(groups), args.batch_size)
            assert client.batches == [args.batch_size] * full + ([rest] if rest else []), client.batches
            done = {r["annotation_id"]: r for r in read_jsonl(run.root / "annotate" / "done-rank0.jsonl")}
            assert len(done) == len(groups)
            print(
                f"run {repeat + 1}: bare {len(groups) / bare:.3f} groups/s ({bare:.2f} s), "
                f"stage {len(groups) / staged:.3f} groups/s ({staged:.2f} s)"
            )
        # Same batches, greedy decoding: the stage decoded exactly what the bare loop did.
        from visionprefer.annotate.judge import validate_judgement

        for g, text in zip(groups, bare_texts, strict=True):
            expected = validate_judgement(text, len(g.files), judge_cfg.score_min, judge_cfg.score_max)
            got = done[g.annotation_id]["results"]
            assert [got[i]["fidelity"]["score"] for i in g.image_ids] == [
                e["fidelity"]["score"] for e in expected
            ]
        print(
            f"best: bare {len(groups) / bare_best:.3f} groups/s, stage {len(groups) / stage_best:.3f} groups/s"
        )
        print(f"stage/bare throughput: {bare_best / stage_best:.2f}")


if __name__ == "__main__":
    main()
