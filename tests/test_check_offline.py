"""pipeline.check_offline: the offline submission equals the stacker's, row by row."""
import re

import numpy as np

from core.submission import write_submission
from pipeline.check_offline import main


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_cosine(ref, cosines, rng):
    """Unit rows at exactly these cosines to `ref`'s rows, then through float16 (the kNN bank's storage)."""
    u = rng.normal(size=ref.shape)
    u = _unit(u - (u * ref).sum(1, keepdims=True) * ref)  # orthogonal to each reference row
    c = np.asarray(cosines, dtype=np.float64)[:, None]
    return _unit((c * ref + np.sqrt(1 - c**2) * u).astype(np.float16).astype(np.float64))


def test_equal_up_to_order_and_fp16_noise_passes(tmp_path, capsys):
    """The default floor, 1 - 1e-3, at its edge: rows at cosine 0.9995 (after an fp16 cast) pass, in any
    row order; one row at 0.998 fails, and is the one named."""
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(12)]
    emb = _unit(rng.normal(size=(12, 384)))
    write_submission(tmp_path / "ref.csv", ids, emb)
    close = at_cosine(emb, [0.9995] * 12, rng)
    write_submission(tmp_path / "off.csv", ids[::-1], close[::-1])
    assert main([str(tmp_path / "off.csv"), str(tmp_path / "ref.csv")]) == 0
    out = capsys.readouterr().out
    assert "12 images" in out
    low = float(re.search(r"row cosine min ([0-9.]+)", out).group(1))
    assert abs(low - 0.9995) < 1e-5  # the fp16 cast moves the cosine by ~1e-6: the edge is tested, not the noise
    far = close.copy()
    far[3] = at_cosine(emb[3:4], [0.998], rng)[0]
    write_submission(tmp_path / "off.csv", ids, far)
    assert main([str(tmp_path / "off.csv"), str(tmp_path / "ref.csv")]) == 2
    err = capsys.readouterr().err
    assert "1 of 12 images differ" in err and "worst: img3 (0.99" in err


def test_a_differing_image_or_id_set_is_an_error(tmp_path, capsys):
    rng = np.random.default_rng(1)
    ids = [f"img{i}" for i in range(6)]
    emb = _unit(rng.normal(size=(6, 384)))
    write_submission(tmp_path / "ref.csv", ids, emb)
    other = emb.copy()
    other[3] = _unit(rng.normal(size=(1, 384)))[0]
    write_submission(tmp_path / "off.csv", ids, other)
    assert main([str(tmp_path / "off.csv"), str(tmp_path / "ref.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "off.csv" in err and "1 of 6 images differ" in err and "img3" in err
    write_submission(tmp_path / "few.csv", ids[:5], emb[:5])
    assert main([str(tmp_path / "few.csv"), str(tmp_path / "ref.csv")]) == 2
    assert "imgIds differ" in capsys.readouterr().err
