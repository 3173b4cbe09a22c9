"""The IVF bank index's build: exact-size inverted lists hold what faiss's incremental add() built, and a
memory-mapped bank's pages leave the resident set after each chunk (core.mapped)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from core.mapped import drop_mapped_pages, take_rows
from core.metric import l2_normalize
from models import knn_index
from tests.synthetic import clustered_unit_vectors, mixture


def incremental_ivf(rows, centroids, chunk):
    """The build before exact list sizes: faiss's add() chunk by chunk (it assigns the cells, lists grow as filled)."""
    faiss = knn_index.import_faiss()
    quantizer = faiss.IndexFlatIP(rows.shape[1])
    quantizer.add(centroids)
    index = faiss.IndexIVFScalarQuantizer(quantizer, rows.shape[1], len(centroids), faiss.ScalarQuantizer.QT_fp16,
                                          faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    for s in range(0, len(rows), chunk):
        index.add(l2_normalize(rows[s:s + chunk]))
    return index


def inverted_lists(index):
    """Each list's (ids, codes) as numpy arrays, and the address of its codes' buffer."""
    faiss = knn_index.import_faiss()
    lists = faiss.downcast_InvertedLists(index.invlists)
    out = []
    for i in range(index.nlist):
        m = lists.list_size(i)
        ids = faiss.rev_swig_ptr(lists.get_ids(i), m).copy() if m else np.empty(0, np.int64)
        codes = faiss.rev_swig_ptr(lists.get_codes(i), m * index.code_size).copy() if m else np.empty(0, np.uint8)
        out.append((ids, codes, int(lists.get_codes(i))))
    return out


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.npy"
    clustered_unit_vectors(path, 5000, 32, mixture(60, 32, seed=0), seed=1)
    return path


@pytest.mark.parametrize("subset", [False, True])
def test_exact_size_build_equals_incremental_add(bank_file, monkeypatch, subset):
    monkeypatch.setattr(knn_index, "BANK_CHUNK", 700)  # several chunks, the last one short
    reserved = {}

    def spy(faiss, index, sizes):  # the lists' buffers right after reservation: the adds must never move them
        knn_index.reserve_lists.__wrapped__(faiss, index, sizes)
        reserved.update({i: address for i, (_, _, address) in enumerate(inverted_lists(index)) if sizes[i]})

    spy.__wrapped__ = knn_index.reserve_lists
    monkeypatch.setattr(knn_index, "reserve_lists", spy)
    bank = np.load(bank_file, mmap_mode="r")
    rows = np.flatnonzero(np.arange(len(bank)) % 3 != 1) if subset else None  # a kNN fold's bank rows
    view = bank if rows is None else bank[rows]
    cells = knn_index.train_cells(view, 24)
    new = knn_index.BankIndex(bank, "ivf", nprobe=6, centroids=cells, rows=rows)
    old = incremental_ivf(view, cells, 700)

    assert reserved, "the build reserved no list"
    n, got, want = len(view), inverted_lists(new._ivf), inverted_lists(old)
    assert new._ivf.ntotal == old.ntotal == n and new._ivf.invlists.compute_ntotal() == n
    assert np.array_equal(np.sort(np.concatenate([ids for ids, _, _ in got])), np.arange(n))  # every row once
    assign = old.quantizer.assign(l2_normalize(view), 1).ravel()
    for i, ((ids, codes, address), (ids0, codes0, _)) in enumerate(zip(got, want)):
        assert np.array_equal(ids, ids0) and np.array_equal(codes, codes0), f"list {i}"
        assert np.array_equal(ids, np.flatnonzero(assign == i)), f"list {i}: not its cell's rows, in row order"
        if len(ids):
            assert reserved[i] == address, f"list {i} reallocated while filled: reserved too small"
    q = np.load(bank_file)[::37] + np.float16(0.01)
    for nprobe in (1, 6):
        new.nprobe = nprobe
        sims, idx = new.search(q, 10)
        params = knn_index.import_faiss().SearchParametersIVF(nprobe=nprobe)
        ref_sims, ref_idx = old.search(l2_normalize(q), 10, params=params)  # BankIndex.search normalises too
        assert np.array_equal(idx, ref_idx) and np.array_equal(sims, ref_sims)


def test_reserve_lists_takes_only_an_empty_index(bank_file):
    bank = np.load(bank_file)
    index = knn_index.BankIndex(bank, "ivf", centroids=knn_index.train_cells(bank, 8))._ivf
    with pytest.raises(ValueError, match="empty IVF index"):
        knn_index.reserve_lists(knn_index.import_faiss(), index, np.ones(8, dtype=np.int64))


def _mapped_rss_kib(path):
    """Resident KiB of the mappings of `path` in this process (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if not head[0].endswith(":"):  # a mapping's header line: address range, perms, offset, dev, inode[, path]
            inside = len(head) > 5 and head[5] == str(path)
        elif inside and head[0] == "Rss:":
            total += int(head[1])
    return total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_drop_mapped_pages_unmaps_a_read_only_map_and_keeps_its_data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(2 << 20, dtype=np.float32).reshape(-1, 256))  # 8 MiB
    mm = np.load(path, mmap_mode="r")
    total = float(np.asarray(mm[1000:], dtype=np.float64).sum())  # touches most pages
    assert _mapped_rss_kib(path) > 4096
    assert drop_mapped_pages(mm[1000:2000])  # a view of the map: the whole map's pages go
    assert _mapped_rss_kib(path) < 64
    assert float(np.asarray(mm[1000:], dtype=np.float64).sum()) == total  # read again from the page cache
    assert not drop_mapped_pages(np.asarray(mm[[1, 2]]))  # a copy: nothing mapped under it
    cow = np.load(path, mmap_mode="c")
    cow[0, 0] = -1.0  # a private change that MADV_DONTNEED would discard
    assert not drop_mapped_pages(cow) and cow[0, 0] == -1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_take_rows_reads_random_rows_of_a_map_and_leaves_none_resident(tmp_path):
    path = tmp_path / "x.npy"
    x = np.random.default_rng(0).standard_normal((40_000, 64)).astype(np.float16)  # 5 MiB
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    idx = np.random.default_rng(1).integers(0, len(x), (300, 7))  # not a multiple of GATHER_ROWS
    got = take_rows(mm, idx)
    assert got.shape == (300, 7, 64) and np.array_equal(got, x[idx]) and not isinstance(got, np.memmap)
    assert _mapped_rss_kib(path) < 64  # rows all over the file were read, their pages dropped
    assert np.array_equal(take_rows(x, idx[0]), x[idx[0]])  # in memory: plain indexing
