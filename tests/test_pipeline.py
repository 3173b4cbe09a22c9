"""run_all's stages: fingerprints follow code and data content; on a finished pipeline (conftest's tiny_pipeline)
a rerun skips what is up to date, --from forces a stage and every stage that depends on it, --jobs 1 computes the
same arrays as the parallel run, ensemble.include_baseline: false
leaves the baseline out of the stack, an edited model config retrains its run (the old one kept) and reruns what
depends on it; pipeline.summary's scores; the pipeline config's keys and every model config checked before the
first stage."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import yaml

from core.errors import DataError
from core.folds import load_folds
from core.metric import cosine_scores, mean_cosine
from core.runs import load_run
from core.submission import read_submission
from core.targets import targets_for
from datagen.demo import generate_demo
from pipeline.config import load_pipeline
from pipeline.run import main
from pipeline.stages import REPO, Stage, code_digest, fingerprint
from tests.helpers import assert_same_run
from tests.pipeline_fixtures import MODEL, checkout, fresh_copy, run_all

TRAIN = f"train:{MODEL}"
STAGES = ["data", "scan", "targets", "test-targets", "folds", "baseline", TRAIN, "ensemble", "submission",
          "offline-submit", "offline-check", "submission-check", "report", "score"]
ALWAYS = {"offline-check", "submission-check", "score"}  # stages without outputs (checks, a printout): run every time


def test_code_fingerprint_follows_content_not_mtimes_or_bytecode(tmp_path):
    pkg = tmp_path / "demo"
    shutil.copytree(REPO / "datagen" / "demo", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(pkg)
    for f in pkg.glob("*.py"):
        os.utime(f, (1, 1))  # touched, unchanged
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "writer.cpython-311.pyc").write_bytes(b"\0compiled")
    assert code_digest(pkg) == before
    with open(pkg / "writer.py", "a") as f:
        f.write("\n# an edit\n")
    assert code_digest(pkg) != before


def test_regenerated_identical_demo_keeps_downstream_fingerprints(tmp_path):
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    stage = Stage("baseline", ["x"],
                  inputs=[tmp_path / "d" / "test" / "images", tmp_path / "d" / "train" / "prompts.csv"])
    first = fingerprint(stage)
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=1, progress=False)
    assert fingerprint(stage) == first  # same bytes: files left alone, later stages skipped
    generate_demo(tmp_path / "d", n_train=20, n_test=4, size=16, seed=2, progress=False)
    assert fingerprint(stage) != first


def stages(stdout):
    """{stage: "ran" or "skipped"}, from run_all's start and skip lines."""
    found = re.findall(r"^== \[\s*\d+s\] (\S+): (up to date, skipped|started \(.*\))$", stdout, flags=re.M)
    assert len({name for name, _ in found}) == len(found), stdout  # each stage once
    return {name: "skipped" if what.startswith("up to date") else "ran" for name, what in found}


def mtimes(work, names):
    return {n: (work / n).stat().st_mtime_ns for n in names}


def test_summary_prints_every_score(tiny_pipeline, capsys):
    """pipeline.summary (the score stage) against the scores recomputed from the files the runs wrote."""
    from oof.residuals import run_residual_correlation
    from pipeline.summary import main as summary_main

    work = tiny_pipeline.work
    runs = [work / "runs" / "mean_baseline", work / "runs" / MODEL]
    assert summary_main(["--work", str(work), "--runs", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert out.strip() in tiny_pipeline.stdout  # what the pipeline's score stage printed
    targets = work / "targets" / "train"
    for path in runs:
        run = load_run(path)
        folds = load_folds(work / "folds.csv", run.oof_ids)
        scores = cosine_scores(run.oof, targets_for(targets, run.oof_ids))
        per_fold = ", ".join(f"{scores[folds == k].mean():.4f}" for k in (0, 1))
        assert re.search(rf"^  {path.name} +{scores.mean():.4f}   folds: {per_fold}$", out, flags=re.M), path.name
    corr = run_residual_correlation(runs, targets).loc["mean_baseline", MODEL]
    assert re.search(rf"^  {MODEL} +{corr:.3f} +1\.000$", out, flags=re.M)
    methods = json.loads((work / "ensemble" / "scores.json").read_text())
    marked = re.findall(r"^  (\S+) +[0-9.]+  <- chosen$", out, flags=re.M)
    assert marked == [methods["chosen_method"]]
    for method, s in methods["methods"].items():
        assert re.search(rf"^  {method} +{s['overall']:.4f}", out, flags=re.M), method
    ids, pred = read_submission(work / "submission.csv")
    score = mean_cosine(pred, targets_for(work / "targets" / "test", ids))
    assert f"submission score on the demo test set ({len(ids)} images, true prompts): {score:.4f}" in out


def test_rerun_skips_what_is_done_and_from_forces_a_stage_and_what_depends_on_it(tiny_pipeline):
    outputs = ["submission.csv", "ensemble/ensemble.json", f"runs/{MODEL}/manifest.json", "report/report.html",
               "submission_offline.csv"]
    with checkout(tiny_pipeline) as p:
        done = mtimes(p.work, outputs)
        plain = run_all(p.config, p.work)
        assert plain.returncode == 0, plain.stderr[-3000:]
        assert stages(plain.stdout) == {s: "ran" if s in ALWAYS else "skipped" for s in STAGES}
        assert mtimes(p.work, outputs) == done
        # --from offline-submit: it and the stages that read its output (its checks, the summary) run; the others,
        # the report after it in the list included, are skipped
        forced = run_all(p.config, p.work, "--from", "offline-submit")
        assert forced.returncode == 0, forced.stderr[-3000:]
        assert stages(forced.stdout) == {s: "ran" if s in ALWAYS | {"offline-submit"} else "skipped" for s in STAGES}
        after = mtimes(p.work, outputs)
        assert after["submission_offline.csv"] > done["submission_offline.csv"]
        assert {k: v for k, v in after.items() if k != "submission_offline.csv"} == \
            {k: v for k, v in done.items() if k != "submission_offline.csv"}


def lanes(stdout):
    """The most stages running at once, from run_all's start and end lines."""
    running, most = 0, 0
    for line in stdout.splitlines():
        running += (bool(re.match(r"== \[\s*\d+s\] \S+: started ", line))
                    - bool(re.match(r"-- \[\s*\d+s\] \S+: done ", line)))
        most = max(most, running)
    return most


def test_one_stage_at_a_time_computes_the_same_arrays_as_stages_side_by_side(tiny_pipeline, tmp_path):
    """--jobs 1 against the session's run (--jobs auto: two stages at once on two cores), both at one thread per
    stage (OMP_NUM_THREADS=1, train.num_threads=1; the decode workers differ, 2 vs 1): every array is identical."""
    from pipeline.plan import cpu_cores

    ref = tiny_pipeline.work
    assert lanes(tiny_pipeline.stdout) == min(2, cpu_cores())
    work = fresh_copy(ref, tmp_path / "work")
    res = run_all(tiny_pipeline.config, work, "--jobs", "1")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert lanes(res.stdout) == 1 and stages(res.stdout) == {s: "ran" for s in STAGES}
    for name in ("targets/train/targets.npy", "targets/test/targets.npy", "ensemble/oof_blend.npy"):
        np.testing.assert_array_equal(np.load(work / name), np.load(ref / name), err_msg=name)
    for name in ("folds.csv", "groups.csv", "submission.csv", "submission_offline.csv"):
        assert (work / name).read_bytes() == (ref / name).read_bytes(), name
    for run in ("mean_baseline", MODEL):
        assert_same_run(ref / "runs" / run, work / "runs" / run)


def test_without_the_baseline_in_the_stack_only_the_ensemble_and_later_stages_rerun(tiny_pipeline):
    with checkout(tiny_pipeline) as p:
        cfg = yaml.safe_load(p.config.read_text())
        cfg["ensemble"]["include_baseline"] = False
        config = p.root / "no_baseline.yaml"
        config.write_text(yaml.safe_dump(cfg))
        res = run_all(config, p.work)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        first = STAGES.index("ensemble")
        assert stages(res.stdout) == {s: "ran" if i >= first else "skipped" for i, s in enumerate(STAGES)}
        assert json.loads((p.work / "ensemble" / "ensemble.json").read_text())["models"] == [MODEL]
        ens_cmd = next(ln for ln in res.stdout.splitlines() if ln.startswith("$ ") and "-m ensemble.fit" in ln)
        submit_cmd = next(ln for ln in res.stdout.splitlines() if ln.startswith("$ ") and "-m models.submit" in ln)
        assert "mean_baseline" not in ens_cmd and "mean_baseline" not in submit_cmd
        # the offline submission (this one run's fold checkpoints) was checked against the stacker's: every image
        assert "offline inference matches the stacker's submission: 6 images" in res.stdout
        ids, emb = read_submission(p.work / "submission.csv")
        assert len(ids) == 6 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_edited_model_config_retrains_its_run_keeps_the_old_one_and_reruns_what_depends_on_it(tiny_pipeline):
    """A changed setting in a model config: the stages before its training stage are skipped; that stage trains the
    new config (the old run, another config hash, is moved aside and kept) and every later stage reruns."""
    with checkout(tiny_pipeline) as p:
        run = p.work / "runs" / MODEL
        manifest = (run / "manifest.json").read_bytes()
        old_hash = json.loads((run / "metrics.json").read_text())["config_hash"]
        text = p.model_config.read_text()
        assert "lr: 1.0e-3" in text
        p.model_config.write_text(text.replace("lr: 1.0e-3", "lr: 2.0e-3"))
        res = run_all(p.config, p.work)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        train = STAGES.index(TRAIN)
        assert stages(res.stdout) == {s: "ran" if i >= train else "skipped" for i, s in enumerate(STAGES)}
        new_hash = json.loads((run / "metrics.json").read_text())["config_hash"]
        assert new_hash != old_hash and json.loads((run / "metrics.json").read_text())["config"]["train"]["lr"] == 2e-3
        kept = p.work / "runs" / f"{MODEL}.replaced-{old_hash[:12]}"
        assert (kept / "manifest.json").read_bytes() == manifest  # nothing lost
        assert json.loads((p.work / "ensemble" / "scores.json").read_text())  # refitted on the new run
        assert load_run(run).oof.shape == load_run(kept).oof.shape
        assert not np.array_equal(load_run(run).oof, load_run(kept).oof)


def _pipeline(tmp_path, models):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"data": {"demo": {"n_train": 20, "n_test": 4, "size": 16}}, "folds": {"k": 2},
                                    "models": models}))
    return path


def test_every_model_config_is_checked_before_the_first_stage(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "configs" / "vit_demo.yaml").read_text() + "\nhead:\n  dropout: 1.5\n")
    work = tmp_path / "w"
    assert main(["--config", str(_pipeline(tmp_path, ["configs/eva_demo.yaml", str(bad)])), "--work", str(work)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: head.dropout must be in [0, 1), got 1.5"
    assert not work.exists()  # no stage ran
    # the --model-set overrides are checked with them
    good = _pipeline(tmp_path, ["configs/eva_demo.yaml"])
    assert main(["--config", str(good), "--work", str(work), "--model-set", "train.epochs=0"]) == 2
    assert "eva_demo.yaml: train.epochs must be >= 1, got 0" in capsys.readouterr().err and not work.exists()


def plan_lines(stdout):
    """--list's plan: {stage: (what it waits for and runs with, its command)}."""
    lines = stdout.splitlines()
    assert lines[0].startswith("plan: ")
    return {head.split(": ", 1)[0]: (head.split(": ", 1)[1], cmd) for head, cmd in zip(lines[1::2], lines[2::2])}


def test_model_stages_take_name_and_folder_from_the_loaded_config(tmp_path, capsys):
    named = tmp_path / "named.yaml"
    named.write_text((REPO / "configs" / "vit_demo.yaml").read_text() + "\nname: vit_small\n")
    path = _pipeline(tmp_path, [{"config": str(named), "gpus": 2}, "configs/eva_demo.yaml"])
    assert main(["--config", str(path), "--work", str(tmp_path / "w"), "--list", "--gpus", "0"]) == 0
    lines = plan_lines(capsys.readouterr().out)
    # gpus: 2 without GPUs: that many CPU processes through torchrun
    assert "--nproc_per_node 2 -m models.train" in lines["train:vit_small"][1]
    assert f"out={tmp_path / 'w' / 'runs' / 'vit_small'}" in lines["train:vit_small"][1]
    assert "torch.distributed.run" not in lines["train:eva_demo"][1]
    assert str(tmp_path / "w" / "runs" / "vit_small") in lines["ensemble"][1]


@pytest.mark.parametrize("models,data,message", [
    ([{"config": "configs/vit_demo.yaml", "gpu": 2}], None,
     "unknown key(s) ['gpu'] in models[0]; valid keys: ['config', 'gpus']"),
    ([{"config": "configs/vit_demo.yaml", "gpus": 0}], None, "models[0].gpus must be null or an integer >= 1, got 0"),
    ([{"gpus": 2}], None, "models[0] needs ['config']"),
    ([3], None, "models[0] must be a model config path or a mapping {config: PATH, gpus: N}, got 3"),
    (["configs/vit_demo.yaml"], {"demo": {"n_train": 20, "n_test": 4, "size": 4}},
     "data.demo.size must be >= 8, got 4"),
    (["configs/vit_demo.yaml"], {"demo": {"n_train": "many", "n_test": 4, "size": 16}},
     "data.demo.n_train must be an integer, got 'many' (str)"),
    (["configs/vit_demo.yaml"], {"train": 3, "test": "t"}, "data.train must be null or a string, got 3"),
])
def test_pipeline_config_values_are_checked(tmp_path, models, data, message):
    path = _pipeline(tmp_path, models)
    if data:
        path.write_text(yaml.safe_dump({"data": data, "folds": {}, "models": models}))
    with pytest.raises(DataError) as e:
        load_pipeline(path)
    assert str(e.value) == f"{path}: {message}"


def test_pipeline_defaults_fill_what_a_config_leaves_out(tmp_path):
    cfg = load_pipeline(_pipeline(tmp_path, ["configs/vit_demo.yaml"]))
    assert cfg["folds"] == {"k": 2, "threshold": 0.9, "mode": "exact", "seed": 42}
    assert cfg["data"]["demo"]["seed"] == 0 and cfg["ensemble"] == {"method": "auto", "include_baseline": True}
    assert cfg["models"] == [{"config": "configs/vit_demo.yaml", "gpus": None}]
