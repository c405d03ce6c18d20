"""`python -m medrag.train`: fine-tune the QLoRA adapter, optionally evaluate it and push it.

    python -m medrag.train --train-file outputs/sft-data --output-dir outputs/adapter [--max-steps 60] \\
        [--eval-questions ../shared/data/eval_dev.jsonl data/eval/unanswerable.jsonl --eval-limit 40] \\
        [--eval-pubmedqa ../shared/data/eval_pubmedqa_dev.jsonl] [--push-to-hub USER/NAME]

`--train-file` takes what `python -m medrag.sft_data` wrote: its folder or its Hub dataset repo.
The evaluation answers through the app's pipeline over the index that MEDRAG_INDEX_DIR or
MEDRAG_INDEX_REPO names (`medrag.adapter_eval`).

Every `FineTuneConfig` field is a flag (`--lora-r 8`, `--no-load-in-4bit`, `--target-modules
q_proj,v_proj`); defaults come from `FineTuneConfig.from_env()` (`MEDRAG_TRAIN_<FIELD>`), and flag
values go through the same parser, so a flag and a variable mean the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing

from medrag.config import FineTuneConfig
from medrag.errors import ConfigError, MedRAGError

PREFIX = "MEDRAG_TRAIN_"


def build_parser(defaults: FineTuneConfig) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m medrag.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hints = typing.get_type_hints(FineTuneConfig)
    for f in dataclasses.fields(FineTuneConfig):
        flags = [f"--{f.name.replace('_', '-')}"] + (["--push-to-hub"] if f.name == "hub_repo" else [])
        default = getattr(defaults, f.name)
        shown = ",".join(default) if isinstance(default, list) else default
        if hints[f.name] is bool:
            p.add_argument(
                *flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=f"(default: {shown})"
            )
        else:
            p.add_argument(*flags, dest=f.name, default=None, metavar=f.name.upper(), help=f"(default: {shown})")
    p.add_argument("--eval-questions", nargs="+", default=[], help="question files: compare base and adapter answers")
    p.add_argument("--eval-pubmedqa", help="PubMedQA jsonl: compare base and adapter yes/no/maybe accuracy")
    p.add_argument("--eval-limit", type=int, help="at most N questions of each file (evenly spaced)")
    return p


def config_from_args(args: argparse.Namespace, environ: typing.Mapping[str, str] | None = None) -> FineTuneConfig:
    """Flags given on the command line override MEDRAG_TRAIN_* variables, parsed the same way."""
    env = dict(os.environ if environ is None else environ)
    for f in dataclasses.fields(FineTuneConfig):
        value = getattr(args, f.name)
        if value is not None:
            env[PREFIX + f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return FineTuneConfig.from_env(env)
    except ConfigError as e:  # name the flag, not the variable it went through
        message = str(e)
        for f in dataclasses.fields(FineTuneConfig):
            if getattr(args, f.name) is not None:
                message = message.replace(f"{PREFIX}{f.name.upper()}=", f"--{f.name.replace('_', '-')} ")
        raise ConfigError(message) from None


def main(argv: list[str] | None = None) -> int:
    from medrag import training
    from medrag.adapter_eval import evaluate_adapter, write_evaluation
    from medrag.config import PipelineConfig

    try:
        parser = build_parser(FineTuneConfig.from_env())
        args = parser.parse_args(argv)
        cfg = config_from_args(args)
        result = training.train(cfg)
        summary = {"output_dir": result.output_dir, **{k: v for k, v in result.metrics.items() if k != "versions"}}
        evaluation = None
        if args.eval_questions or args.eval_pubmedqa:
            evaluation = evaluate_adapter(
                cfg.base_model,
                result.output_dir,
                config=PipelineConfig.from_env(),
                questions_files=args.eval_questions,
                questions_limit=args.eval_limit,
                pubmedqa_file=args.eval_pubmedqa,
                pubmedqa_limit=args.eval_limit,
                load_in_4bit=cfg.load_in_4bit,
            )
            summary["evaluation"] = {k: evaluation[k] for k in ("base", "adapter", "helps")}
            write_evaluation(evaluation, result.output_dir)
        if cfg.hub_repo:
            summary["pushed"] = training.push(cfg, result, evaluation)
        print(json.dumps(summary, indent=2))
        return 0
    except MedRAGError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
