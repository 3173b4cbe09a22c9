"""run_all's scheduler and plan on fake stages (tests/fake_stages.py: python processes that record when they ran, with
what environment, and whether they got SIGTERM): stages wait for what they need and independent ones overlap;
GPU shares on a fake device list; the first failure stops new starts and terminates the running stages; Ctrl-C does
the same; a kill of run_all during parallel stages stops them too, and a rerun continues from the fingerprints.
The real pipeline's DAG (every input another stage writes comes from a stage it waits for) is checked here too."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pytest

from core.errors import DataError
from pipeline.config import load_pipeline
from pipeline.console import Console, progress_text
from pipeline.plan import ancestors, make_plan, parse_gpus, parse_jobs, topo_order
from pipeline.scheduler import run_stages
from pipeline.stages import build_stages
from tests.fake_stages import all_records, fake_stage, records
from tests.model_fixtures import REPO


def run(stages, work, jobs=None, devices=(), cores=2, **kw):
    console = Console(io.StringIO(), io.StringIO(), live=False)
    plan = make_plan(stages, jobs, list(devices), cores, env={})
    code = run_stages(plan, work, console=console, **kw)
    return code, console.out.getvalue(), console.err.getvalue()


def overlap(a, b):
    return max(a["start"]["t"], b["start"]["t"]) < min(a["end"]["t"], b["end"]["t"])


def diamond(work, seconds=1.0):
    return [fake_stage(work, "a", 0.2), fake_stage(work, "b", seconds, needs=["a"]),
            fake_stage(work, "c", seconds, needs=["a"]), fake_stage(work, "d", 0.1, needs=["b", "c"], show=True)]


def test_stages_wait_for_what_they_need_and_independent_ones_run_side_by_side(tmp_path):
    code, out, _ = run(diamond(tmp_path / "two"), tmp_path / "two", jobs=2)
    assert code == 0, out
    r = records(tmp_path / "two")
    assert r["a"]["end"]["t"] <= min(r["b"]["start"]["t"], r["c"]["start"]["t"])
    assert overlap(r["b"], r["c"])  # independent: side by side
    assert r["d"]["start"]["t"] >= max(r["b"]["end"]["t"], r["c"]["end"]["t"])
    assert "d finished" in out  # a `show` stage's output reaches the console
    assert (tmp_path / "two" / "logs" / "b.log").read_text().startswith("$ ")  # one log per stage
    code, out, _ = run(diamond(tmp_path / "one"), tmp_path / "one", jobs=1)
    assert code == 0
    r = sorted(records(tmp_path / "one").values(), key=lambda e: e["start"]["t"])
    assert [e["start"]["name"] for e in r][0] == "a" and [e["start"]["name"] for e in r][-1] == "d"
    assert all(x["end"]["t"] <= y["start"]["t"] for x, y in zip(r, r[1:]))  # one at a time
    # a rerun skips every stage; --from b forces b and what depends on it (d), not c
    code, out, _ = run(diamond(tmp_path / "one"), tmp_path / "one", jobs=2, start_from="b")
    assert code == 0
    assert [ln.split()[3].rstrip(":") for ln in out.splitlines() if "up to date, skipped" in ln] == ["a", "c"]
    assert sum(1 for ln in out.splitlines() if ": started (" in ln) == 2


def test_gpu_shares_on_a_fake_device_list(tmp_path):
    """6 GPUs, three runs that can train at once (the kNN waits for t1): t2 and t3 take their `gpus:` shares (1, 3),
    t1 and the kNN an even split (6 / 3 = 2; t1 through torchrun: 2 processes); runs side by side share no device."""
    work = tmp_path / "w"
    stages = [fake_stage(work, "prep", 0.1), fake_stage(work, "t1", 1.5, ["prep"], train=True),
              fake_stage(work, "t2", 1.0, ["prep"], train=True, gpus=1),
              fake_stage(work, "t3", 1.0, ["prep"], train=True, gpus=3),
              fake_stage(work, "knn", 0.1, ["t1"], train=True)]
    ids = ["2", "3", "4", "5", "6", "7"]
    code, out, err = run(stages, work, devices=ids, cores=12)
    assert code == 0, out + err
    recs = [r for r in all_records(work) if r["event"] == "start"]
    devices = {r["name"]: r["env"]["CUDA_VISIBLE_DEVICES"] for r in recs}
    assert {n: len(devices[n].split(",")) for n in ("t1", "t2", "t3", "knn")} == {"t1": 2, "t2": 1, "t3": 3, "knn": 2}
    assert devices["prep"] == os.environ.get("CUDA_VISIBLE_DEVICES")  # CPU stages: left as they were
    t1 = [r for r in recs if r["name"] == "t1"]
    assert sorted(r["env"]["LOCAL_RANK"] for r in t1) == ["0", "1"] and {r["env"]["WORLD_SIZE"] for r in t1} == {"2"}
    used = [set(devices[n].split(",")) for n in ("t1", "t2", "t3")]  # started together: every device taken once
    assert set.union(*used) == set(ids) and sum(map(len, used)) == len(ids)
    # threads and decode workers shared out: 12 cores / 6 GPUs, for the trainer and for OpenMP / BLAS
    assert t1[0]["args"] == ["--set", "train.num_threads=2", "--set", "data.workers=2"]
    assert t1[0]["env"]["OMP_NUM_THREADS"] == t1[0]["env"]["OPENBLAS_NUM_THREADS"] == "2"
    assert f"t1: started (GPUs {devices['t1']})" in out


def test_plan_threads_and_shares(tmp_path):
    def st(name, needs=(), **kw):
        return fake_stage(tmp_path, name, needs=needs, **kw)

    stages = [st("data", weight=10), st("a", ["data"], train=True, weight=200),
              st("b", ["data"], train=True, weight=200),
              st("c", ["data"], train=True, weight=200), st("knn", ["c"], train=True, weight=10),
              st("ens", ["a", "b", "knn"], weight=10)]
    two = make_plan(stages, None, [], 2, env={})
    assert two.jobs == 2 and {n: s.threads for n, s in two.slots.items()} == \
        {"data": 2, "a": 1, "b": 1, "c": 1, "knn": 1, "ens": 2}  # alone: every core; side by side: one each
    assert two.order[0].name == "data" and [s.name for s in two.order[1:4]] == ["a", "b", "c"]
    assert two.rank["c"] > two.rank["a"]  # the longer path (c, then knn) starts first
    sixteen = make_plan(stages, None, [], 16, env={})
    assert sixteen.jobs == 3 and sixteen.slots["a"].threads == 5  # three runs side by side, 16 // 3 threads
    assert {s.threads for s in make_plan(stages, 1, [], 16, env={}).slots.values()} == {16}  # --jobs 1
    fixed = make_plan(stages, None, [], 4, env={"OMP_NUM_THREADS": "1"})
    assert fixed.jobs == 4 and {s.threads for s in fixed.slots.values()} == {1}
    gpus = make_plan(stages, None, parse_gpus("0-7"), 16, env={})
    assert [gpus.slots[n].gpus for n in ("a", "b", "c", "knn")] == [3, 3, 2, 2] and gpus.jobs == 4
    with pytest.raises(DataError, match=r"--gpus: a asks for 9 GPUs \(its `gpus:`\), 8 given"):
        make_plan([st("a", gpus=9, train=True)], None, parse_gpus("8"), 16, env={})
    assert parse_gpus("8") == parse_gpus("0-7") == [str(i) for i in range(8)] and parse_gpus("0") == []
    assert parse_gpus("0,2,4-5") == ["0", "2", "4", "5"] and parse_jobs("auto") is None and parse_jobs("3") == 3
    for bad in ("x", "3-1", "1,1"):
        with pytest.raises(Exception, match="--gpus"):
            parse_gpus(bad)
    with pytest.raises(ValueError, match="cycle"):
        topo_order([st("x", ["y"]), st("y", ["x"])])


def test_first_failure_stops_new_starts_and_terminates_running_stages(tmp_path):
    work = tmp_path / "w"
    stages = [fake_stage(work, "bad", 0.5, code=2), fake_stage(work, "slow", 30),
              fake_stage(work, "after", 0, needs=["bad"]), fake_stage(work, "later", 0, needs=["slow"])]
    t0 = time.time()
    code, out, err = run(stages, work, jobs=2)
    assert code == 2 and time.time() - t0 < 15
    r = records(work)
    assert "term" in r["slow"] and "end" not in r["slow"]  # stopped with SIGTERM, not waited for
    assert "after" not in r and "later" not in r  # nothing new started
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == ["error: bad.csv: bad input"]
    assert "run_all: stage bad failed (exit 2)" in err and "slow: stopped" in out
    assert not (work / ".stages" / "slow.sha256").exists() and not (work / ".stages" / "bad.sha256").exists()


def _start_fake_run_all(tmp_path, spec):
    work = tmp_path / "w"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return work, subprocess.Popen([sys.executable, "-m", "tests.fake_stages", str(path), str(work)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout=30):
    end = time.time() + timeout
    while not condition():
        assert time.time() < end, "timed out"
        time.sleep(0.05)


def test_ctrl_c_terminates_the_running_stages(tmp_path):
    spec = {"jobs": 2, "stages": [{"name": "x", "seconds": 30}, {"name": "y", "seconds": 30},
                                  {"name": "z", "needs": ["x"]}]}
    work, proc = _start_fake_run_all(tmp_path, spec)
    _wait_for(lambda: {"x", "y"} <= set(records(work)))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, err
    r = records(work)
    assert "term" in r["x"] and "term" in r["y"] and "z" not in r
    assert "run_all: stopped by SIGINT" in err and "Stopped: " in err


def test_kill_during_parallel_stages_stops_them_and_a_rerun_continues(tmp_path):
    """run_all SIGKILLed while two stages run: they get SIGTERM (not orphaned); the rerun skips the finished ones."""
    stages = [{"name": "a", "seconds": 0.1}, {"name": "b", "seconds": 0.3, "needs": ["a"]},
              {"name": "c", "seconds": 30, "needs": ["a"]}, {"name": "d", "seconds": 30, "needs": ["a"]},
              {"name": "e", "needs": ["b", "c", "d"]}]
    work, proc = _start_fake_run_all(tmp_path, {"jobs": 3, "stages": stages})
    _wait_for(lambda: (work / ".stages" / "b.sha256").is_file() and {"c", "d"} <= set(records(work)))
    proc.kill()
    proc.communicate(timeout=30)
    _wait_for(lambda: all("term" in records(work)[n] for n in ("c", "d")), timeout=10)
    for s in stages[2:4]:
        s["seconds"] = 0.2
    (work / "record.jsonl").unlink()
    work, proc = _start_fake_run_all(tmp_path, {"jobs": 3, "stages": stages})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert set(records(work)) == {"c", "d", "e"}  # a and b finished before the kill: skipped
    assert "a: up to date, skipped" in out and "b: up to date, skipped" in out


def test_live_lines_show_each_running_stage_and_its_epoch(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("$ cmd\n\nfold 1 epoch 3/18: loss 0.9812 val_cosine 0.5012 lr 9.00e-04 4.2s\nsaving\n")
    assert progress_text(["x", "fold 1 epoch 3/18: loss 0.9812 lr 9.00e-04 4.2s", "y"]) == \
        "fold 1 epoch 3/18 4.2 s/epoch"
    assert progress_text(["cache 48px:  50%|##   | 750/1500"]) == "cache 48px:  50%|##   | 750/1500"
    out = io.StringIO()
    console = Console(out, io.StringIO(), live=True)
    console.status({"train:vit_demo": (time.time() - 65, log, "1 thread"),
                    "baseline": (time.time(), tmp_path / "no", "")})
    console.say("== [    3s] folds: done in 1 s")
    text = out.getvalue()
    assert "train:vit_demo" in text and "1m05s" in text and "fold 1 epoch 3/18 4.2 s/epoch" in text
    assert "\x1b[2F\x1b[J== [    3s] folds: done in 1 s\n" in text  # the block is erased before a plain line
    assert text.endswith("\n") and text.count("train:vit_demo") == 2  # and drawn again below it


@pytest.mark.parametrize("config", ["configs/pipeline/demo.yaml", "tests/data/pipeline_tiny.yaml",
                                    "configs/pipeline/demo_retrieval.yaml"])
def test_every_stage_waits_for_the_stages_whose_outputs_it_reads(config, tmp_path):
    args = Namespace(work=str(tmp_path / "w"), n_train=None, n_test=None, size=None, model_set=[])
    stages = build_stages(load_pipeline(REPO / config), args)
    anc = ancestors(topo_order(stages))
    work = Path(args.work).resolve()
    for stage in stages:
        for path in map(Path, stage.inputs):
            for other in stages:  # an input is another stage's output, or beside one in a folder of its own
                if other is not stage and any(path == o or path.parent == Path(o).parent != work
                                              for o in other.outputs):
                    assert other.name in anc[stage.name], (stage.name, str(path), other.name)
    names = {s.name: s for s in stages}
    if "train:knn_demo" in names:
        assert "train:vit_demo" in names["train:knn_demo"].needs
        assert {n for n in names if n.startswith("train:")} <= set(names["ensemble"].needs)
    if "train:retrieval_demo" in names:  # its queries are vit_demo's predictions, its bank the demo's
        assert {"train:vit_demo", "bank"} <= set(names["train:retrieval_demo"].needs)
        assert names["bank"].needs == ["data"] and "bank" not in names["ensemble"].needs
    assert anc["score"] == set(names) - {"score"}  # the summary is the last stage
