"""One rule for errors: bad input -> exit 2 and one `error: <file>: <problem>` line on stderr, no traceback,
never on a progress bar's line; argparse usage errors keep argparse's exit 2; bugs keep their traceback."""
import subprocess
import sys

import pytest

from core.errors import DataError, InputError, WriteError, exit_on_input_error
from models.config import ConfigError
from tests.helpers import assert_one_error_line, subprocess_env
from tests.model_fixtures import REPO


@pytest.mark.parametrize("exc", [DataError("f.csv", "bad row"), ConfigError("c.yaml: bad key"),
                                 WriteError("x.npy", "cannot write: disk full")])
def test_every_input_error_exits_2_with_one_line(exc, capsys):
    @exit_on_input_error
    def main(argv=None):
        raise exc

    assert isinstance(exc, InputError)
    assert main([]) == 2
    assert capsys.readouterr().err == f"error: {exc}\n"


def test_bugs_keep_their_traceback():
    @exit_on_input_error
    def main(argv=None):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        main([])


def test_error_never_lands_on_a_progress_bar_line(capsys):
    from tqdm import tqdm

    @exit_on_input_error
    def main(argv=None):
        for i in tqdm(range(10), desc="work", file=sys.stderr, mininterval=0):
            if i == 5:
                raise DataError("img.png", "unreadable")

    assert main([]) == 2
    err = capsys.readouterr().err
    assert "\nerror: img.png: unreadable\n" in err and err.endswith("error: img.png: unreadable\n")
    bar_line = err.split("\nerror: ")[0].split("\r")[-1]
    assert bar_line.startswith("work:")  # the bar's last state stays on its own line


def test_argparse_usage_errors_keep_exit_2():
    from core.dataset import main

    with pytest.raises(SystemExit) as e:
        main(["--no-such-flag"])
    assert e.value.code == 2


def cli_cases(tmp_path):
    bad_prompts = tmp_path / "prompts.csv"
    bad_prompts.write_text("imgId,prompt\nabc.png,a cat\n")
    bad_yaml = tmp_path / "p.yaml"
    bad_yaml.write_text("data: [1\n")
    run = tmp_path / "run"
    run.mkdir()
    return [
        ("core.dataset", [str(tmp_path / "nope")], "dataset folder not found"),
        ("core.dataset", [str(tmp_path), "--require-prompts"], "image folder not found"),
        ("core.targets", ["--prompts", str(bad_prompts), "--out", str(tmp_path / "t")],
         "ends in the file extension .png"),
        ("core.metric", [str(tmp_path / "s.csv"), "--targets", str(tmp_path)], "submission file not found"),
        ("core.submission", ["check", str(tmp_path / "s.csv")], "submission file not found"),
        ("pipeline.run", ["--config", str(tmp_path / "nope.yaml")], "pipeline config not found"),
        ("pipeline.run", ["--config", str(bad_yaml)], "not valid YAML"),
        ("pipeline.run", ["--from", "nope", "--work", str(tmp_path / "w")], "--from nope: no such stage"),
        ("pipeline.summary", ["--work", str(tmp_path), "--runs", str(run)], "metrics.json: missing"),
    ]


def test_owned_clis_follow_the_rule(tmp_path, capsys):
    import importlib

    for module, argv, needle in cli_cases(tmp_path):
        main = importlib.import_module(module).main
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, (module, argv, err)
        assert_one_error_line(err, needle)


def test_run_all_bad_config_and_bad_flag(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("data: {demo: {n_train: 5, n_test: 2, size: 8}}\nfolds: {k: 2, kk: 1}\nmodels: [a.yaml]\n")
    res = subprocess.run([str(REPO / "run_all.sh"), "--config", str(cfg), "--work", str(tmp_path / "w")],
                         cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert_one_error_line(res.stderr, f"error: {cfg}: unknown key(s) ['kk'] in folds")
    res = subprocess.run([str(REPO / "run_all.sh"), "--bogus"], cwd=tmp_path, env=subprocess_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "usage:" in res.stderr and "Traceback" not in res.stderr


def test_run_all_passes_a_stage_input_error_through_as_exit_2(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "test" / "images").mkdir(parents=True)
    (tmp_path / "train" / "prompts.csv").write_text("imgId,prompt\na1,x\na1,y\n")
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"data: {{train: {tmp_path / 'train'}, test: {tmp_path / 'test'}}}\nfolds: {{k: 2}}\n"
                   f"models: [configs/vit_demo.yaml]\n")
    res = subprocess.run([str(REPO / "run_all.sh"), "--config", str(cfg), "--work", str(tmp_path / "w")],
                         cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert_one_error_line(res.stderr, "prompts.csv: 1 duplicate imgId(s), e.g. ['a1']")
    assert "run_all: stage scan failed (exit 2)" in res.stderr


def test_train_cli_config_error_is_one_line():
    res = subprocess.run([sys.executable, "-m", "models.train", "--config", "configs/vit_demo.yaml",
                          "--set", "train.epochs=ten"], cwd=REPO, env=subprocess_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2
    assert_one_error_line(res.stderr, "vit_demo.yaml: train.epochs must be an integer, got 'ten'")
