"""``snake-assets``: demo data, headless runs and the official scorer from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _demo_data(args: argparse.Namespace) -> int:
    from snake_assets.core.demo import write_demo_release
    from snake_assets.core.demo_backbone import write_tiny_backbone

    root = Path(args.dir)
    summary = write_demo_release(root / "release", seed=args.seed)
    backbone = write_tiny_backbone(root / "backbone", seed=args.seed)
    print(json.dumps({"data_dir": str(root / "release"), "backbone": str(backbone), **summary}, default=str))
    return 0


def _run(args: argparse.Namespace) -> int:
    from snake_assets.runner import PipelineFailed, RunSettings, run_pipeline

    settings = RunSettings(
        data_dir=args.data_dir, home=args.home, backbone=args.backbone,
        device=args.device, batch_size=args.batch_size, num_shards=args.num_shards,
    )
    try:
        summary = run_pipeline(settings)
    except PipelineFailed as e:
        print(f"snake-assets run: {e}", file=sys.stderr)
        return 1
    _print_scores(summary)
    print(json.dumps(summary))
    return 0


def _print_scores(summary: dict) -> None:
    """Human-readable score table on stderr; stdout keeps the one JSON line."""
    chosen = summary["validation"]["decision_rule"]
    lines = [f"{'decision rule':<32}{'F1':>8}{'acc':>8}{'track1':>8}{'track2':>8}"]
    for rule, s in summary["rules"].items():
        mark = " *" if rule == chosen else ""
        lines.append(f"{rule + mark:<32}{s['f1']:>8.2f}{s['accuracy']:>8.2f}{s['track1']:>8.2f}{s['track2']:>8.0f}")
    lines.append(f"submission: {summary['submission']}")
    print("\n".join(lines), file=sys.stderr)


def _score(args: argparse.Namespace) -> int:
    from snake_assets.core.scoring import SubmissionError, score_files

    try:
        scores = score_files(args.ground_truth, args.submission, args.venomous)
    except SubmissionError as e:
        for message in e.messages:
            print(message, file=sys.stderr)
        return 2
    print(json.dumps(scores))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snake-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write a demo release and a tiny random DINOv2 under DIR")
    demo.add_argument("dir")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_data)

    run = sub.add_parser("run", help="materialize the whole graph on the instance in DAGSTER_HOME")
    run.add_argument("--data-dir", required=True, help="release folder (SNAKE_DATA_DIR)")
    run.add_argument("--home", required=True, help="lake root (SNAKE_HOME): a folder or gs://bucket/prefix")
    run.add_argument("--backbone", required=True, help="hub id (cached) or local model folder (SNAKE_BACKBONE)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--batch-size", type=int, default=0, help="images per forward pass; 0 = per-device default (32 CPU, 64 GPU)")
    run.add_argument("--num-shards", type=int, default=4, help="embedding partitions (hash buckets of images)")
    run.set_defaults(func=_run)

    score = sub.add_parser("score", help="the official SnakeCLEF scorer")
    score.add_argument("--ground-truth", required=True)
    score.add_argument("--submission", required=True)
    score.add_argument("--venomous", required=True)
    score.set_defaults(func=_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("snake_assets").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
