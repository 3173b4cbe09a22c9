"""pipeline.check_offline: the offline submission equals the stacker's, row by row."""
import numpy as np

from core.submission import write_submission
from pipeline.check_offline import main


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_equal_up_to_order_and_fp16_noise_passes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(12)]
    emb = _unit(rng.normal(size=(12, 384)))
    write_submission(tmp_path / "ref.csv", ids, emb)
    noisy = _unit(emb + rng.normal(scale=1e-3, size=emb.shape).astype(np.float16).astype(np.float64) * 0.01)
    write_submission(tmp_path / "off.csv", ids[::-1], noisy[::-1])
    assert main([str(tmp_path / "off.csv"), str(tmp_path / "ref.csv")]) == 0
    assert "12 images" in capsys.readouterr().out


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
