"""Prompt corpus builder (python -m datagen.prompts): readers, cleaning, dedup, sampling, CLI."""
import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from core.dataset import read_prompts
from core.errors import DataError
from core.folds import group_prompts
from core.io import read_json
from core.targets import text_cache
from datagen.prompts import (
    CORPUS_FILE,
    DROPPED_FILE,
    STEPS,
    Settings,
    build_corpus,
    clean_prompt,
    clip_lengths,
    exact_duplicates,
    greedy_keep_first,
    minilm_lengths,
    near_duplicates,
    parse_source,
    prompt_id,
    read_source,
    weighted_quotas,
)
from datagen.prompts.__main__ import main
from tests.conftest import SHARED_DATA
from tests.model_fixtures import REPO

PROMPTS_DIR = SHARED_DATA / "prompts"
# The real files, in a sensible priority order, with the options each needs.
REAL_SOURCES = [
    ("gpt4", "prompts_filtered_4.0.txt", None),
    ("chatgpt", "prompts_chatgpt_0330_dedup.txt", None),
    ("parti", "PartiPrompts.tsv", None),  # header: Prompt, Category, ...
    ("gustavosta", "dissim_pairs_all_gustavosta_valid.txt", "2"),  # headerless: idx, score, prompt, image
    ("coco", "coco_captions_val2017.json", None),
    ("openprompts", "openprompts_dedup_085_075_diff_pprc_085wt_075wv.txt", None),
    ("diffusiondb", "900k_dedup_08_split_dedup_wt_wv.txt", None),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One text cache for the module: each prompt is embedded once however many tests use it."""
    return tmp_path_factory.mktemp("text_cache")


def src(name, path, **kw):
    s = parse_source(f"{name}={path}")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def build(tmp_path, sources, cache, out="out", **kw):
    corpus = build_corpus(sources, tmp_path / out, Settings(cache_dir=str(cache), **kw), progress=False)
    frame = pd.read_csv(tmp_path / out / "prompts.csv", dtype=str, keep_default_na=False)
    return corpus, frame


def read_dropped(out):
    return pd.read_csv(out / DROPPED_FILE, keep_default_na=False, na_values={"cosine": [""]})


def check_counts_add_up(corpus):
    for s in corpus["sources"] + [dict(name="total", counts=corpus["total"])]:
        c = s["counts"]
        assert c["read"] == sum(c[step] for step in STEPS[1:]), s["name"]


# -- sources ---------------------------------------------------------------------------------

def test_source_spec_parsing():
    s = parse_source("coco=/data/cap.json:0.5")
    assert (s.name, str(s.path), s.weight) == ("coco", "/data/cap.json", 0.5)
    assert str(parse_source("x=a:b/c.txt").path) == "a:b/c.txt"  # a non-number after ':' is part of the path
    for bad in ("nopath", "=x.txt", "x=p.txt:-1", "x=p.txt:nan"):
        with pytest.raises(ValueError):
            parse_source(bad)


def test_each_format_reads_its_prompt_column(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufefffirst line\r\n\r\nsecond\u2028still second\n".encode())
    (tmp_path / "b.csv").write_text('id,Prompt,score\n1,"a cat, sitting",0.5\n2,"say ""hi""",0.1\n')
    (tmp_path / "c.tsv").write_text('0\t0.3\t"quoted" dog\timg0.jpg\n1\t0.2\tNA\timg1.jpg\n')
    pd.DataFrame({"text": ["pq one", None], "n": [1, 2]}).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "e.json").write_text(json.dumps({"images": [], "annotations": [{"id": 1, "caption": "A bus. "}]}))
    (tmp_path / "f.json").write_text(json.dumps(["list one", "list two"]))
    assert read_source(src("a", tmp_path / "a.txt")) == ["first line", "", "second\u2028still second"]
    assert read_source(src("b", tmp_path / "b.csv")) == ["a cat, sitting", 'say "hi"']
    assert read_source(src("b", tmp_path / "b.csv", column="score")) == ["0.5", "0.1"]
    assert read_source(src("c", tmp_path / "c.tsv", column=2)) == ['"quoted" dog', "NA"]  # raw TSV: quotes kept
    assert read_source(src("d", tmp_path / "d.parquet")) == ["pq one", ""]
    assert read_source(src("d", tmp_path / "d.parquet", column=0)) == ["pq one", ""]
    assert read_source(src("e", tmp_path / "e.json")) == ["A bus. "]
    assert read_source(src("f", tmp_path / "f.json")) == ["list one", "list two"]
    # A .txt file with a column is a headerless TSV (the Gustavosta file's layout).
    (tmp_path / "g.txt").write_text("0\t0.3\tfrom txt\tx.jpg\n")
    assert read_source(src("g", tmp_path / "g.txt", column=2)) == ["from txt"]
    # A folder: its prompt files in name order; other files are skipped; --limit counts rows per source.
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "2.txt").write_text("two\n")
    (tmp_path / "dir" / "1.txt").write_text("one\nuno\n")
    (tmp_path / "dir" / "SOURCE.md").write_text("# not prompts\n")
    s = src("dir", tmp_path / "dir")
    assert read_source(s) == ["one", "uno", "two"] and len(s.files) == 2
    assert read_source(s, limit=2) == ["one", "uno"]


@pytest.mark.parametrize("content, column, problem", [
    ("a,b\n1,2\n", "prompt", "no column 'prompt'"),
    ("a,b\n1,2\n", 5, "column index 5 out of range"),
    ("a,b\n1,2\n", None, "which column holds the prompts"),
])
def test_bad_columns_name_the_file(tmp_path, content, column, problem):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(DataError, match=problem) as e:
        read_source(src("t", tmp_path / "t.csv", column=column))
    assert e.value.path == str(tmp_path / "t.csv")


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "x.json").write_text('{"annotations": [{"text": "no caption key"}]}')
    (tmp_path / "y.txt").write_bytes(b"\xff\xfe\xfa broken")
    (tmp_path / "empty").mkdir()
    for path, problem in [(tmp_path / "x.json", "COCO captions"), (tmp_path / "y.txt", "not UTF-8"),
                          (tmp_path / "none.txt", "not found"), (tmp_path / "empty", "no prompt files")]:
        with pytest.raises(DataError, match=problem):
            read_source(src("s", path))


# -- cleaning and lengths --------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("  a  cat\t\ton a\nmat  ", "a cat on a mat"),
    ("ＦＵＬＬ－ＷＩＤＴＨ ﬁsh", "FULL-WIDTH fish"),  # NFKC
    ("no\u00a0break\u2028line\u3000space", "no break line space"),
    ("zero\u200bwidth \x00control\x07s", "zerowidth controls"),
    ("café", "café"),
    ("   ", ""), ("\x00\x01", ""), ("!!! ...", ""), ("", ""),
    ("🙂 a smile", "🙂 a smile"),
])
def test_clean_prompt(raw, clean):
    assert clean_prompt(raw) == clean


def test_token_lengths_count_start_and_end_tokens():
    from core.targets import default_embedder_path

    assert minilm_lengths(["hello world", "a"], default_embedder_path()).tolist() == [4, 3]
    long = " ".join(["red"] * 80)
    assert clip_lengths(["a photo of a cat", long]).tolist() == [7, 82]


# -- dedup -----------------------------------------------------------------------------------

def unit(deg):
    v = np.zeros(384, np.float32)
    v[0], v[1] = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return v


def test_greedy_dedup_keeps_first_and_does_not_chain():
    # A~B (cos 20 deg = 0.94), B~C, but A!~C (cos 40 deg = 0.77): keep-first keeps A and C.
    emb = np.stack([unit(0), unit(20), unit(40)])
    kept, by, pairs, mode = near_duplicates(emb, 0.9, "exact")
    assert kept.tolist() == [True, False, True] and by.tolist() == [-1, 0, -1] and pairs == 2
    # Union-find (the fold grouping) chains all three into one group; the corpus must not.
    assert len(set(group_prompts(None, emb, threshold=0.9).tolist())) == 1
    # Priority decides: B first drops both neighbours.
    kept, by, _, _ = near_duplicates(emb[[1, 0, 2]], 0.9, "exact")
    assert kept.tolist() == [True, False, False] and by.tolist() == [-1, 0, 0]
    assert greedy_keep_first(4, [0, 1, 2], [1, 2, 3])[0].tolist() == [True, False, True, False]
    assert exact_duplicates(["a", "b", "a", "a", "b"]).tolist() == [-1, -1, 0, 0, 1]


def test_exact_and_near_dups_keep_the_first_source(tmp_path, cache):
    (tmp_path / "one.txt").write_text("chair\na red bicycle leaning on a wall\nSame  text\n")
    (tmp_path / "two.txt").write_text("a chair\nsame text\nSame text\na bowl of fruit\n")
    corpus, frame = build(tmp_path, [src("one", tmp_path / "one.txt"), src("two", tmp_path / "two.txt")], cache)
    assert frame["prompt"].tolist() == ["chair", "a red bicycle leaning on a wall", "Same text", "a bowl of fruit"]
    one, two = (s["counts"] for s in corpus["sources"])
    # "same text" is no exact copy of "Same text", but MiniLM is uncased: cosine 1, a near dup.
    assert (two["exact_dups"], two["near_dups"], one["exact_dups"], one["near_dups"]) == (1, 2, 0, 0)
    dropped = read_dropped(tmp_path / "out").set_index("prompt")
    assert dropped.loc["a chair", "duplicate_of"] == "chair" and dropped.loc["a chair", "cosine"] >= 0.9
    assert dropped.loc["same text", "duplicate_of"] == "Same text" and dropped.loc["same text", "cosine"] > 0.9999
    # Reversed priority: the other copy survives.
    _, frame = build(tmp_path, [src("two", tmp_path / "two.txt"), src("one", tmp_path / "one.txt")], cache, out="rev")
    assert "a chair" in frame["prompt"].tolist() and "chair" not in frame["prompt"].tolist()
    check_counts_add_up(corpus)


def test_length_bounds_and_clip_count(tmp_path, cache):
    long = "a castle on a hill, " + ", ".join(f"detail {i}" for i in range(40))
    (tmp_path / "p.txt").write_text(f"tree\n{long}\na small boat on a calm lake\n\t \n")
    s = src("p", tmp_path / "p.txt")
    corpus, frame = build(tmp_path, [s], cache, min_tokens=4)
    c = corpus["sources"][0]["counts"]
    assert (c["empty"], c["too_short"], c["over_clip_context"], c["kept_over_clip_context"],
            c["kept"]) == (1, 1, 1, 1, 2)
    corpus, frame = build(tmp_path, [s], cache, out="clip", max_clip_tokens=77, max_tokens=40)
    c = corpus["sources"][0]["counts"]
    assert (c["too_long"], c["too_long_clip"], c["kept"]) == (1, 0, 2)  # MiniLM bound comes first
    corpus, frame = build(tmp_path, [s], cache, out="clip2", max_clip_tokens=77)
    c = corpus["sources"][0]["counts"]
    assert (c["too_long_clip"], c["kept"]) == (1, 2) and long not in frame["prompt"].tolist()


# -- caps and sampling -----------------------------------------------------------------------

def test_weighted_quotas():
    assert weighted_quotas([100, 100], [1, 1], 50).tolist() == [25, 25]
    assert weighted_quotas([100, 100], [3, 1], 40).tolist() == [30, 10]
    assert weighted_quotas([5, 100, 100], [1, 1, 1], 65).tolist() == [5, 30, 30]  # water-filling
    assert weighted_quotas([10, 10], [1, 1], 50).tolist() == [10, 10]
    assert weighted_quotas([100, 100], [0, 1], 150).tolist() == [0, 100]
    q = weighted_quotas([7, 13, 29], [1, 2, 3], 20)
    assert q.sum() == 20 and (q <= [7, 13, 29]).all()


def test_caps_and_sampling_are_deterministic_and_nested(tmp_path, cache):
    words = ["cat", "dog", "owl", "fox", "eel", "yak", "bee", "ant", "elk", "cod"]
    (tmp_path / "a.txt").write_text("".join(f"a watercolor {w} in a {p}\n"
                                            for w in words for p in ("forest", "kitchen")))
    (tmp_path / "b.txt").write_text("".join(f"a bronze statue of {n} {w}s\n" for w in words for n in ("two", "nine")))
    sources = lambda: [src("a", tmp_path / "a.txt", cap=6), src("b", tmp_path / "b.txt", weight=2.0)]  # noqa: E731
    kw = dict(dedup_threshold=1.1, seed=3)
    corpus, f1 = build(tmp_path, sources(), cache, out="r1", max_prompts=9, **kw)
    _, f2 = build(tmp_path, sources(), cache, out="r2", max_prompts=9, **kw)
    _, f3 = build(tmp_path, sources(), cache, out="r3", max_prompts=15, **kw)
    _, f4 = build(tmp_path, sources(), cache, out="r4", max_prompts=9, dedup_threshold=1.1, seed=4)
    a, b = (s["counts"] for s in corpus["sources"])
    assert (a["capped"], a["kept"], b["kept"], a["not_sampled"] + b["not_sampled"]) == (14, 3, 6, 17)
    assert f1.equals(f2) and not f1.equals(f4)
    assert set(f1["prompt"]) <= set(f3["prompt"])
    assert corpus["embedding"]["texts"] == 40 and corpus["dedup"]["mode"] is None  # threshold > 1: no embedding
    check_counts_add_up(corpus)


# -- the real prompt files, end to end -------------------------------------------------------

def real_args(out, cache, limit=60, *extra):
    args = ["--out", str(out), "--cache", str(cache), "--limit", str(limit)]
    for name, file, column in REAL_SOURCES:
        args += ["--source", f"{name}={PROMPTS_DIR / file}"]
        if column is not None:
            args += ["--column", f"{name}={column}"]
    return args + list(extra)


@pytest.fixture(scope="module")
def real_build(tmp_path_factory, cache):
    if not (PROMPTS_DIR / "SOURCE.md").is_file():
        pytest.fail(f"shared prompts not found at {PROMPTS_DIR} (set SHARED_DATA)")
    out = tmp_path_factory.mktemp("real")
    assert main(real_args(out / "a", cache)) == 0
    return out


def test_real_files_build_end_to_end(real_build, cache):
    out = real_build / "a"
    corpus = read_json(out / CORPUS_FILE)
    frame = read_prompts(out / "prompts.csv")  # the layout core.dataset reads
    assert list(frame.columns) == ["imgId", "prompt", "source"]
    assert [s["counts"]["read"] for s in corpus["sources"]] == [60] * 7
    assert corpus["total"]["kept"] == len(frame) > 300 and corpus["embedding"]["texts"] == 60 * 7
    check_counts_add_up(corpus)
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in frame["imgId"])
    assert frame["imgId"].tolist() == [prompt_id(p) for p in frame["prompt"]]
    by_source = frame.groupby("source")["prompt"].apply(list)
    assert not any(re.fullmatch(r"[\d.]+", p) for p in by_source["gustavosta"])  # column 2, not idx/score
    assert by_source["parti"][0] == "bond"  # the header row is not a prompt
    assert all(p == clean_prompt(p) for p in frame["prompt"])
    # Exact keep-first guarantee: no two kept prompts are neighbours; each near dup has a kept one.
    emb, found = text_cache(cache).lookup(frame["prompt"].tolist())
    assert found.all()
    sims = emb @ emb.T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.9
    dropped = read_dropped(out)
    near = dropped[dropped["reason"] == "near_dups"]
    assert len(near) == corpus["total"]["near_dups"] and (near["cosine"] >= 0.9).all()
    assert set(near["duplicate_of"]) <= set(frame["prompt"])


def test_real_rebuild_reads_the_cache_and_is_identical(real_build, cache):
    assert main(real_args(real_build / "b", cache)) == 0
    assert read_json(real_build / "b" / CORPUS_FILE)["embedding"]["embedded"] == 0
    assert (real_build / "a" / "prompts.csv").read_bytes() == (real_build / "b" / "prompts.csv").read_bytes()


def test_real_fast_mode(real_build, cache):
    assert main(real_args(real_build / "fast", cache, 60, "--dedup-mode", "fast")) == 0
    corpus = read_json(real_build / "fast" / CORPUS_FILE)
    check_counts_add_up(corpus)
    assert corpus["dedup"]["mode"] == "fast" and corpus["embedding"]["embedded"] == 0
    # The IVF search only reports true pairs, so it can find fewer duplicates, never false ones.
    exact = read_json(real_build / "a" / CORPUS_FILE)
    assert 0 < corpus["dedup"]["pairs"] <= exact["dedup"]["pairs"]


def test_cli_bad_input_exits_2_naming_the_file(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    env_cmd = [sys.executable, "-m", "datagen.prompts", "--out", str(tmp_path / "o"), "--no-cache"]
    missing = subprocess.run(env_cmd + ["--source", f"x={tmp_path / 'missing.txt'}"], cwd=REPO,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith(f"error: {tmp_path / 'missing.txt'}: ")
    assert "Traceback" not in missing.stderr
    bad = subprocess.run(env_cmd + ["--source", f"t={tmp_path / 't.tsv'}", "--column", "t=prompt"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith(f"error: {tmp_path / 't.tsv'}: no column 'prompt'")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:  # usage errors: argparse's exit 2
        main(["--out", str(tmp_path / "o"), "--source", f"t={tmp_path / 't.tsv'}", "--cap", "nosuch=3"])
    assert e.value.code == 2
