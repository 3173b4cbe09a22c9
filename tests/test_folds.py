import numpy as np
import pytest

from core.errors import DataError
from core.folds import (
    GROUPS_FILE,
    FoldGroupingError,
    UnionFind,
    assign_folds,
    group_prompts,
    groups_path,
    load_folds,
    load_groups,
    make_folds,
    save_folds,
    save_groups,
)
from tests.synthetic import planted_near_duplicates as planted


def all_pairs_at_or_above(x, thr):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for s in range(0, len(x), 4096):
        sims = x[s:s + 4096] @ x.T
        r, c = np.nonzero(sims >= thr)
        keep = c > r + s
        out.append(np.stack([r[keep] + s, c[keep]], 1))
    return np.concatenate(out)


def test_union_find_transitive():
    uf = UnionFind(6)
    uf.union_pairs([0, 3], [1, 4])
    uf.union_pairs([1], [2])
    g = uf.groups()
    assert g[0] == g[1] == g[2] and g[3] == g[4] and len({g[0], g[3], g[5]}) == 3


@pytest.mark.parametrize("n", [20000])
def test_exact_mode_never_splits_similar_pairs(n):
    x, _, _ = planted(n, 600)
    # Add chains and clusters of mixed similarity around the threshold.
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, b = rng.choice(n, 2, replace=False)
        c = rng.uniform(0.85, 0.95)
        x[b] = c * x[a] + np.sqrt(1 - c * c) * x[b]
    prompts = [f"p{i}" for i in range(n)]
    folds, groups = make_folds(prompts, prompts, x, k=5, threshold=0.9, mode="exact")
    pairs = all_pairs_at_or_above(x, 0.9)
    assert len(pairs) >= 600
    assert (groups[pairs[:, 0]] == groups[pairs[:, 1]]).all()
    assert (folds[pairs[:, 0]] == folds[pairs[:, 1]]).all()
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 2


def test_identical_prompts_share_a_fold_even_without_embeddings():
    prompts = ["a cat", "a dog", "a cat ", "a bird"] * 10
    groups = group_prompts(prompts, None)
    assert len(set(groups)) == 3
    folds = assign_folds(groups, 3, seed=0)
    cats = [i for i, p in enumerate(prompts) if p.strip() == "a cat"]
    assert len({folds[i] for i in cats}) == 1


def test_fast_mode_finds_planted_pairs():
    x, src, dst = planted(20000, 500)
    groups = group_prompts([str(i) for i in range(len(x))], x, threshold=0.9, mode="fast")
    recall = (groups[src] == groups[dst]).mean()
    assert recall >= 0.99


def test_deterministic_and_seed_dependent():
    x, _, _ = planted(3000, 100)
    p = [str(i) for i in range(3000)]
    f1, _ = make_folds(p, p, x, k=4, seed=7)
    f2, _ = make_folds(p, p, x, k=4, seed=7)
    f3, _ = make_folds(p, p, x, k=4, seed=8)
    assert np.array_equal(f1, f2) and not np.array_equal(f1, f3)
    assert set(np.unique(f1)) == {0, 1, 2, 3}


def test_balanced_with_group_sizes():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(400), rng.integers(1, 6, 400))
    folds = assign_folds(groups, 5, seed=0)
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 5  # within the largest group size
    for g in range(400):
        assert len(set(folds[groups == g])) == 1


def test_chaining_error_fires():
    rng = np.random.default_rng(0)
    base = rng.normal(size=384)
    # 40% of rows are mutually similar: one group larger than N/(2K).
    x = rng.normal(size=(1000, 384))
    x[:400] = base + 0.1 * rng.normal(size=(400, 384))
    p = [str(i) for i in range(1000)]
    with pytest.raises(FoldGroupingError, match=r"N/\(2K\).*higher --threshold"):
        make_folds(p, p, x, k=5, threshold=0.9)


def test_save_and_load(tmp_path):
    ids = ["a", "b", "c"]
    meta = save_folds(tmp_path / "folds.csv", ids, [0, 1, 0], {"k": 2})
    assert (tmp_path / "folds.json").is_file() and len(meta["folds_sha256"]) == 64
    assert load_folds(tmp_path / "folds.csv", ["c", "a"]).tolist() == [0, 0]
    with pytest.raises(DataError, match="folds.csv.*no fold"):
        load_folds(tmp_path / "folds.csv", ["z"])


def test_groups_file_round_trip_and_errors(tmp_path):
    folds_csv = tmp_path / "folds.csv"
    save_folds(folds_csv, ["a", "b", "c", "d"], [0, 1, 0, 1], {"k": 2})
    assert groups_path(folds_csv) == tmp_path / GROUPS_FILE
    assert load_groups(folds_csv, ["a", "b"]) is None  # no groups.csv: the caller falls back to folds
    save_groups(groups_path(folds_csv), ["a", "b", "c", "d"], [7, 3, 7, 5])
    got = load_groups(folds_csv, ["d", "a", "c"])
    assert got.dtype == np.int64 and got.tolist() == [5, 7, 7]
    with pytest.raises(DataError, match=r"groups.csv: 1 imgIds have no group.*'z'"):
        load_groups(folds_csv, ["a", "z"])
    # a group split across folds: these are not the groups the folds were made from
    save_groups(groups_path(folds_csv), ["a", "b", "c", "d"], [1, 1, 2, 3])
    with pytest.raises(DataError, match=r"groups.csv: group 1 spans 2 folds"):
        load_groups(folds_csv, ["a", "b"])
    groups_path(folds_csv).write_text("imgId,grp\na,1\n")
    with pytest.raises(DataError, match=r"groups.csv: missing column\(s\) \['group'\]"):
        load_groups(folds_csv, ["a"])


def test_cli_writes_groups_beside_folds_and_leaves_folds_csv_alone(tmp_path, capsys):
    import json

    import pandas as pd

    from core.folds import main
    from core.io import sha256_file
    from tests.synthetic import write_targets_folder

    rng = np.random.default_rng(0)
    n = 60
    ids = [f"i{k:03d}" for k in range(n)]
    prompts = [f"prompt {k % 40}" for k in range(n)]  # rows k and k + 40 share a prompt
    pd.DataFrame({"imgId": ids, "prompt": prompts}).to_csv(tmp_path / "prompts.csv", index=False)
    write_targets_folder(tmp_path / "targets", ids, rng.standard_normal((n, 384)).astype(np.float32))
    out = tmp_path / "work" / "folds.csv"
    assert main(["--prompts", str(tmp_path / "prompts.csv"), "--targets", str(tmp_path / "targets"),
                 "--out", str(out), "--k", "3"]) == 0
    assert "groups.csv" in capsys.readouterr().out
    assert list(pd.read_csv(out).columns) == ["imgId", "fold"]  # folds.csv's format (and hash) unchanged
    assert json.loads(out.with_suffix(".json").read_text())["folds_sha256"] == sha256_file(out)
    groups = load_groups(out, ids)
    folds = load_folds(out, ids)
    assert len(set(groups.tolist())) == 40
    for k in range(20):
        assert groups[k] == groups[k + 40] and folds[k] == folds[k + 40]


def test_ids_pandas_would_read_as_missing_are_kept(tmp_path):
    """imgIds like NA / null / nan follow the id rule: folds.csv, groups.csv and a run's id files keep them."""
    import pandas as pd

    from core.folds import load_folds, load_groups, save_folds, save_groups
    from core.ids import read_ids
    from core.io import save_csv

    ids = ["NA", "null", "nan", "None", "b"]
    save_folds(tmp_path / "folds.csv", ids, np.array([0, 1, 0, 1, 0]), {"k": 2})
    save_groups(tmp_path / GROUPS_FILE, ids, np.arange(5))
    assert load_folds(tmp_path / "folds.csv", ids).tolist() == [0, 1, 0, 1, 0]
    assert load_groups(tmp_path / "folds.csv", ids).tolist() == [0, 1, 2, 3, 4]
    save_csv(tmp_path / "oof_ids.csv", pd.DataFrame({"imgId": ids}))
    assert read_ids(tmp_path / "oof_ids.csv") == ids
