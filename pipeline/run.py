"""Run the whole pipeline, independent stages side by side, skipping stages whose inputs and command did not change.

    ./run_all.sh [--config configs/pipeline/demo.yaml] [--work work] [--jobs N|auto] [--gpus 0-7|N]
                 [--from STAGE] [--list] [--n-train N] [--n-test N] [--size PX] [--model-set KEY=VALUE ...]

Stages (`--list` prints the plan: what each waits for, its threads or GPUs, its command):
    data              the demo dataset (demo configs only)
    scan              every unreadable training image listed at once
    targets           the training prompts' MiniLM embeddings
    test-targets      the test prompts' embeddings (when the config gives test_prompts)
    folds             grouped K folds + prompt groups
    baseline          the constant mean-embedding run
    bank              the demo's prompt bank (when a retrieval model reads it)
    train:<model>     one per model config (a kNN or retrieval after the run whose features / predictions it reads)
    ensemble          the stacker, chosen and scored by nested CV; the test blend
    submission        WORK/submission.csv
    offline-submit    the submission again from the fold checkpoints and the blend alone
    offline-check     its rows must equal the stacker's (cosine >= 0.999 per image)
    submission-check  the submission's format, checked against the test images
    report            the OOF analysis page
    score             per-model and stacked scores, the test score (when test prompts are known)

Each stage is one of the project's own commands and waits only for the stages whose outputs it reads; up to
--jobs of them run at once (auto: as many as fit the cores, or one per GPU share), each with its output in
WORK/logs/<stage>.log.

A stage's fingerprint (its command and the content of its input files) is stored under WORK/.stages/ when it
succeeds, and a later run skips it while the fingerprint and its outputs are unchanged; threads and devices are
not part of it. `--from STAGE` forces that stage and every stage that depends on it to run again. The first
failing stage stops the pipeline: no new stage starts, the running ones are stopped (SIGTERM; a training run saves
its position) and run_all exits with the stage's code (2 for bad input, with its `error: <file>: <problem>`
line). Ctrl-C does the same. A rerun continues where it stopped.

The pipeline config's keys are declared in pipeline/config.py; every model config it lists is loaded (and
checked, with the --model-set overrides) before the first stage runs. A `models:` entry is a config path or
`{config: PATH, gpus: N}` (that run's share of the GPUs; default: an even split).

The scan stage lists every unreadable training image at once and stops the pipeline; with
`--skip-bad-images` they are listed in WORK/data/checked/bad_images.csv and left out of every later
stage instead (the same id set everywhere).
"""
import argparse
import sys

from core.errors import exit_on_input_error
from oof.report import HTML_FILE
from pipeline.config import load_pipeline, resolve_config
from pipeline.layout import WorkTree
from pipeline.plan import describe, make_plan, parse_gpus, parse_jobs
from pipeline.scheduler import forced_stages, run_stages
from pipeline.stages import build_stages


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="run_all.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/pipeline/demo.yaml",
                    help="pipeline config, relative to here or to the repository (default: %(default)s)")
    ap.add_argument("--work", default="work", help="artifact folder (default: %(default)s)")
    ap.add_argument("--jobs", default="auto", metavar="N|auto",
                    help="stages at once; auto: as many as fit the cores (CPU) or the GPU shares (default: auto); "
                         "1: one at a time with every core")
    ap.add_argument("--gpus", default="auto", metavar="IDS|N",
                    help="GPUs to use: ids and ranges (0-7, 0,2,4-5), a count (8: 0-7; 0: none) or auto (those "
                         "CUDA_VISIBLE_DEVICES or nvidia-smi lists); training runs split them (`gpus:` shares)")
    ap.add_argument("--from", dest="start_from", default=None, metavar="STAGE",
                    help="run this stage and every stage that depends on it again")
    ap.add_argument("--n-train", type=int, default=None, help="demo data: training images")
    ap.add_argument("--n-test", type=int, default=None, help="demo data: test images")
    ap.add_argument("--size", type=int, default=None, help="demo data: image size")
    ap.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value in every model config, e.g. train.epochs=1 (repeatable)")
    ap.add_argument("--skip-bad-images", action="store_true",
                    help="scan the training images first; leave unreadable ones out of every stage (listed in "
                         "WORK/data/checked/bad_images.csv) instead of failing on them")
    ap.add_argument("--list", action="store_true",
                    help="print the plan (each stage, what it waits for, its threads or GPUs, its command); "
                         "run nothing")
    return ap.parse_args(argv)


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    jobs, devices = parse_jobs(args.jobs), parse_gpus(args.gpus)
    cfg = load_pipeline(resolve_config(args.config, "pipeline config"))
    plan = make_plan(build_stages(cfg, args), jobs, devices)
    forced_stages(plan, args.start_from)  # an unknown stage: an error before anything runs
    if args.list:
        print("\n".join(describe(plan)))
        return 0
    code = run_stages(plan, args.work, args.start_from)
    report = WorkTree(args.work).report / HTML_FILE
    if code == 0 and report.is_file():
        print(f"run_all: the OOF analysis report is {report.resolve()}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
