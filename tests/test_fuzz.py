"""Fuzzing the readers of hand-made files: any input gives a valid result or a DataError / ConfigError whose
message starts with the file, never another exception type (a traceback in front of the user).

The draws are the same on every run (tests/conftest.py: derandomized); `HYPOTHESIS_PROFILE=explore` draws new ones."""
from functools import partial

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from core.dataset import read_bad_images, read_prompts
from core.errors import DataError
from core.ids import IMG_ID_PATTERN
from core.submission import check_submission, read_submission
from models.config import DEFAULTS, ConfigError, load_config
from tests.model_fixtures import REPO

# database=None: no .hypothesis/ folder in the checkout (the profile in tests/conftest.py picks the draws)
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Field text that stresses CSV: separators, quotes, line ends, NUL, BOM, non-ASCII, spaces
FIELD = st.text(alphabet=st.sampled_from(list('ab1_-.,"\'\n\r\t \x00\ufeffé猫/\\')), max_size=12)
ID = st.one_of(st.from_regex(IMG_ID_PATTERN, fullmatch=True).map(lambda s: s[:10]), FIELD)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def csv_text(header, rows, sep, quote_all):
    def cell(x):
        return '"' + x.replace('"', '""') + '"' if quote_all else x

    return sep.join([",".join(map(cell, header))] + [",".join(map(cell, r)) for r in rows]) + sep


VALID_ID = st.from_regex(IMG_ID_PATTERN, fullmatch=True).map(lambda s: s[:10])


@st.composite
def prompts_files(draw):
    """Raw bytes, or a mostly valid prompts.csv (quoted hostile prompts, extras, BOM, CRLF), often damaged once."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    header = ["imgId", "prompt"] + draw(st.lists(st.sampled_from(["source", "seed", "imgId ", "", "x"]), max_size=2))
    ids = draw(st.lists(VALID_ID, min_size=1, max_size=5, unique=True))
    rows = [[i, draw(FIELD.filter(str.strip))] + [draw(FIELD) for _ in header[2:]] for i in ids]
    damage = draw(st.integers(0, 5))
    if damage == 1:
        rows[0][0] = draw(ID)
    elif damage == 2:
        rows.append(draw(st.lists(FIELD, max_size=5)))
    elif damage == 3:
        header = draw(st.lists(st.sampled_from(["imgId", "prompt", "x", ""]), max_size=3))
    quote = damage != 4  # unquoted: commas and newlines in prompts break rows
    text = csv_text(header, rows, draw(st.sampled_from(["\n", "\r\n"])), quote)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if damage == 5 and data:
        k = draw(st.integers(0, len(data) - 1))
        data = data[:k] + draw(st.binary(min_size=1, max_size=3)) + data[k + 1:]
    return data


def read_or_refused(reader, path, data, **kw):
    """Write `data` to `path` and read it: reader(path), or None where the reader refused the file with a DataError
    whose message starts with the file."""
    path.write_bytes(data)
    try:
        return reader(path, **kw)
    except DataError as e:
        assert str(e).startswith(f"{path}: ")
        return None


@FUZZ
@given(data=prompts_files())
def test_fuzz_read_prompts(scratch, data):
    frame = read_or_refused(read_prompts, scratch / "prompts.csv", data)
    if frame is None:
        return
    assert {"imgId", "prompt"} <= set(frame.columns) and len(frame) > 0
    assert frame["imgId"].is_unique and all(IMG_ID_PATTERN.fullmatch(i) for i in frame["imgId"])
    assert all(p.strip() for p in frame["prompt"])


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), prompts_files()))
def test_fuzz_read_bad_images(scratch, data):
    frame = read_or_refused(read_bad_images, scratch / "bad_images.csv", data)
    if frame is None:
        return
    assert {"imgId", "path", "reason"} <= set(frame.columns)
    assert all(IMG_ID_PATTERN.fullmatch(i) for i in frame["imgId"])


DIM = 3
VALUE = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", "nan", "inf", "-0", "1e999", "abc", " 0.5", "0x1p3", "1_0"]))
KEY = st.one_of(st.tuples(st.sampled_from(["a", "b", "c_d", "x.png", "", "é"]),
                          st.sampled_from(["0", "1", "2", "3", "01", "-1", "", "a", "99999999999999999999"]))
                .map(lambda t: f"{t[0]}_{t[1]}"), FIELD)


@st.composite
def submission_files(draw):
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=200))
    header = draw(st.sampled_from(["imgId_eId,val"] * 4 + ["imgId_eId,val,x", "id,val", "imgId_eId", ""]))
    if draw(st.integers(0, 3)) > 0:  # a valid core, then (sometimes) damaged rows
        ids = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, min_size=1, max_size=3))
        v = draw(st.floats(0.1, 1.0))
        rows = [f"{i}_{d},{v}" for i in ids for d in range(DIM)]
    else:
        rows = []
    extra = draw(st.lists(st.tuples(KEY, VALUE).map(lambda kv: f"{kv[0]},{kv[1]}"), max_size=4)) \
        if draw(st.booleans()) else []
    if rows and draw(st.booleans()):  # reordered rows: fine for the reader, refused by check
        rows = draw(st.permutations(rows))
    for r in extra:
        rows.insert(draw(st.integers(0, len(rows))), r)
    return ("\n".join([header] + rows) + "\n").encode()


@FUZZ
@given(data=submission_files())
def test_fuzz_read_and_check_submission(scratch, data):
    for reader in (read_submission, check_submission):
        read = read_or_refused(reader, scratch / "submission.csv", data, dim=DIM)
        if read is None:
            continue
        ids, emb = read
        assert emb.shape == (len(ids), DIM) and emb.dtype == np.float32 and np.isfinite(emb).all()
        assert len(set(ids)) == len(ids) and all(IMG_ID_PATTERN.fullmatch(i) for i in ids)


def yaml_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 1000), st.floats(allow_nan=True),
                        st.text(max_size=8), st.sampled_from(["1e-4", "ten", "none", "flip", "mlp", "cosine"]))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                        max_leaves=6)


def config_keys():
    names = []
    for k, v in DEFAULTS.items():
        names.append(k)
        if isinstance(v, dict):
            names += [f"{k}.{sub}" for sub in v]
    return st.one_of(st.sampled_from(names), st.text(max_size=10))


def leaf_defaults():
    out = {}
    for k, v in DEFAULTS.items():
        if isinstance(v, dict) and v:
            out.update({f"{k}.{sub}": d for sub, d in v.items() if not isinstance(d, dict) or not d})
        else:
            out[k] = v
    return out


def near(default):
    """A value of the default's kind, sometimes out of range."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, 2 * default + 3)
    if isinstance(default, float):
        return st.one_of(st.floats(-1, 2 * default + 1), st.just(default))
    return st.just(default)


@st.composite
def config_docs(draw):
    doc = {}
    leaves = leaf_defaults()
    pairs = draw(st.lists(st.one_of(
        st.sampled_from(sorted(leaves)).flatmap(lambda k: st.tuples(st.just(k), near(leaves[k]))),
        st.tuples(config_keys(), yaml_values())), max_size=5))
    for key, value in pairs:
        section, _, sub = key.partition(".")
        if sub:
            node = doc.setdefault(section, {})
            if isinstance(node, dict):
                node[sub] = value
        else:
            doc[section] = value
    return doc


@FUZZ
@given(doc=config_docs(), overrides=st.lists(st.one_of(
    st.tuples(config_keys(), st.text(max_size=10)).map(lambda kv: f"{kv[0]}={kv[1]}"), st.text(max_size=15)),
    max_size=2))
@example(doc={"train": {"lr": 0.0}}, overrides=[])  # drawn 1 run in 3-5: lr 0 is valid (it freezes the weights)
def test_fuzz_load_config(scratch, doc, overrides):
    path = scratch / "c.yaml"
    base = {"backbone": {"source": "timm", "name": "convnext_atto"}}
    base.update(doc)
    path.write_text(yaml.safe_dump(base, allow_unicode=True))
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ")
        return
    # the validator's rule
    assert cfg["train"]["epochs"] >= 1 and cfg["train"]["batch_size"] >= 1 and cfg["train"]["lr"] >= 0


@FUZZ
@given(data=st.binary(max_size=120))
@example(data=b"")  # empty: the defaults, which name no backbone
@example(data=b"\xff\xfe\x00")  # not UTF-8
@example(data=b"train: [1")  # not YAML
@example(data=b"- 1\n- 2\n")  # YAML, not a mapping
@example(data=b"backbone: {source: timm, name: convnext_atto}\n")  # a valid config
def test_fuzz_config_file_bytes(scratch, data):
    path = scratch / "raw.yaml"
    path.write_bytes(data)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ")
        return
    assert cfg["name"] and cfg["train"]["epochs"] >= 1 and cfg["backbone"]["name"]  # a checked config


def test_fuzz_targets_are_real(scratch):
    """The strategies reach valid files too (else the fuzz tests would only ever see errors)."""
    good = scratch / "ok.csv"
    good.write_text("imgId,prompt\na1,\"x, \"\"y\"\"\"\n")
    assert read_prompts(good)["prompt"].tolist() == ['x, "y"']
    (scratch / "s.csv").write_text("imgId_eId,val\n" + "".join(f"a_{d},0.5\n" for d in range(DIM)))
    assert read_submission(scratch / "s.csv", dim=DIM)[0] == ["a"]
    assert load_config(REPO / "configs" / "vit_demo.yaml")["name"] == "vit_demo"
    # and the strategies themselves draw files the readers accept (find raises if none turns up)
    for strategy, reader in ((prompts_files(), read_prompts), (submission_files(), partial(read_submission, dim=DIM))):
        find(strategy, partial(_reads, reader, scratch / "found.csv"),
             settings=settings(max_examples=500, database=None))


def _reads(reader, path, data):
    path.write_bytes(data)
    try:
        reader(path)
    except DataError:
        return False
    return True
