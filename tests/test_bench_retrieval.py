"""bench.bench_retrieval at a tiny size: every phase reports, recall is measured against exact search."""
import numpy as np

from bench.bench_retrieval import main, recall_at_k


def test_recall_at_k_counts_shared_rows_per_query():
    exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    found = np.array([[3, 2, 9, 8], [7, 6, 5, 4]])  # 2 of 4, then 4 of 4 (order does not matter)
    assert recall_at_k(found, exact) == 0.75


def test_tiny_bench_reports_every_phase(tmp_path, capsys):
    # every IVF cell probed: the IVF top-k is the exact top-k (up to fp16 near-ties at the k-th place)
    res = main(["--rows", "6000", "--queries", "300", "--recall-queries", "100", "--clusters", "30", "--k", "20",
                "--nlist", "16", "--nprobe", "16", "--mask-fraction", "0.1", "--dir", str(tmp_path / "scratch"),
                "--out", str(tmp_path / "res.json")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert res["recall"] >= 0.99
    assert res["index"]["nlist"] == 16 and res["exact"]["queries"] == 100
    assert res["masked_search"]["masked_rows"] > 0 and res["masked_search"]["masked_rows_retrieved"] == 0
    for phase in ("generate", "index", "search", "masked_search", "exact"):
        assert res[phase]["seconds"] >= 0 and res[phase]["peak_rss_gib"] > 0, phase
    assert lines[-1].startswith("bench_retrieval: 6,000 x 384 bank, 300 queries, k 20: IVF build ")
    assert "recall@20 " in lines[-1] and (tmp_path / "res.json").is_file()
    assert list((tmp_path / "scratch").iterdir()) == []  # the bank's files go with the run


def test_few_probes_lose_recall(tmp_path):
    """The recall is the IVF search's: one cell of 16 misses neighbours in the others (1,000 small clusters, so
    neighbours straddle the cells; 0.43 here)."""
    res = main(["--rows", "6000", "--queries", "300", "--recall-queries", "100", "--clusters", "1000", "--k", "20",
                "--nlist", "16", "--nprobe", "1", "--mask-fraction", "0", "--dir", str(tmp_path)])
    assert res["recall"] < 0.8 and "masked_search" not in res
