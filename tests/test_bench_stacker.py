"""bench.bench_stacker at a tiny size: it reads the runs from files, times every phase and compares every
method's nested score with the in-memory procedure."""
import re

from bench import bench_stacker


def test_bench_stacker_measures_from_files_and_matches_the_in_memory_procedure(tmp_path, capsys):
    argv = ["--n", "1200", "--m", "2", "--k", "3", "--dtype", "float16", "--lgbm-rows", "", "--dir", str(tmp_path)]
    assert bench_stacker.main(argv) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs" / "model1" / "manifest.json").is_file() and (tmp_path / "oof_blend.npy").is_file()
    for phase in ("load inputs", "statistics pass", "per_dim", "ridge", "outer pass", "oof blend", "drop_one", "refit"):
        assert re.search(rf"^{phase} +\d+\.\d +(\d+\.\d|-) +(\d+\.\d\d|-)$", out, re.MULTILINE), phase
    rows = dict(re.findall(r"^(equal|per_model|per_dim|ridge) +\d\.\d{6} +\d\.\d{6} +(\S+)$", out, re.MULTILINE))
    assert sorted(rows) == ["equal", "per_dim", "per_model", "ridge"]
    assert all(abs(float(d)) <= 1e-4 for d in rows.values())
    assert "COMPARISON: every method within 0.0001: yes" in out
    assert re.fullmatch(r"nested 1200 x 2: \d+ s, peak RSS \d+\.\d\d GiB", out.strip().splitlines()[-1])
