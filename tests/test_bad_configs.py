"""Bad model and pipeline configs: a ConfigError / DataError naming the file, the key and what is valid."""
import glob

import pytest

from core.errors import DataError, InputError
from models.config import ConfigError, load_config
from tests.model_fixtures import REPO

CFG = REPO / "configs" / "vit_demo.yaml"


@pytest.mark.parametrize("override,match", [
    ("train.epochs=ten", r"train\.epochs must be an integer, got 'ten' \(str\)"),
    ("train.epochs=2.5", r"train\.epochs must be an integer, got 2\.5"),
    ("train.epochs=0", r"train\.epochs must be >= 1"),
    ("train.lr=-1e-3", r"train\.lr must be >= 0 \(0 keeps the weights fixed\), got -0\.001"),
    ("train.lr=.nan", r"train\.lr must be >= 0 .*, got nan"),
    ("train.lr=fast", r"train\.lr must be a number, got 'fast'"),
    ("train.batch_size=0", r"train\.batch_size must be >= 1, got 0"),
    ("train.batch_size=true", r"train\.batch_size must be an integer, got True"),
    ("train.ema_decay=1.5", r"train\.ema_decay must be in \[0, 1\)"),
    ("train.max_steps_per_epoch=0", r"train\.max_steps_per_epoch must be null or an integer >= 1"),
    ("train.num_threads=two", r"train\.num_threads must be null or an integer >= 1"),
    ("image.size=0", r"image\.size must be >= 8"),
    ("image.std=[0.5, 0, 0.5]", r"image\.std must be null or a list of 3 positive numbers"),
    ("image.interpolation=cubic", r"image\.interpolation must be one of \['bicubic'"),
    ("augment.rrc_scale=[0.9, 0.5]", r"augment\.rrc_scale must be \[low, high\]"),
    ("augment.hflip=2", r"augment\.hflip must be a probability"),
    ("head.dropout=1", r"head\.dropout must be in \[0, 1\)"),
    ("head.type=deep", r"head\.type must be linear or mlp"),
    ("grad_checkpointing=true", r"unknown config key 'grad_checkpointing'; valid keys in the top level: \["),
    ("train.epoch=3", r"unknown config key 'train\.epoch' \(did you mean \['train\.epochs'\]\?\); valid keys in "
                      r"train: \['batch_size', .*'epochs'"),
    ("trian.epochs=3", r"unknown config key 'trian' \(did you mean \['train'\]\?\)"),
    ("train=3", r"train must be a mapping"),
    ("train.epochs.x=1", r"override 'train\.epochs\.x=1': train\.epochs is not a section"),
    ("train.epochs", r"override 'train\.epochs' must look like section\.key=value"),
    ("=3", r"override '=3': '' is not a dotted key"),
    ("train..epochs=3", r"override 'train\.\.epochs=3': 'train\.\.epochs' is not a dotted key"),
    ("train.lr=[1,", r"override 'train\.lr=\[1,': the value '\[1,' is not valid YAML"),
    ("name=a/b", r"name must be a run name"),
    ("predict.tta=rotate", r"predict\.tta must be one of"),
    ("backbone.source=keras", r"backbone\.source must be timm or open_clip"),
])
def test_bad_value_or_override_is_a_config_error(override, match):
    with pytest.raises(ConfigError, match=r"vit_demo\.yaml: " + match):
        load_config(CFG, [override])


def test_good_values_still_load():
    # YAML 1.1 reads 1e-4 (no dot) as text: a number-valued key converts it
    cfg = load_config(CFG, ["train.lr=1e-4", "train.epochs=2", "augment.randaugment_magnitude=2.5",
                            "train.warmup_epochs=1"])
    assert cfg["train"]["lr"] == 1e-4 and cfg["augment"]["randaugment_magnitude"] == 2.5
    assert load_config(CFG, ["augment=null"])["augment"]["hflip"] == 0.0  # an empty section keeps the defaults
    for path in sorted(glob.glob(str(REPO / "configs" / "*.yaml"))):
        load_config(path)  # every shipped config passes the checks


@pytest.mark.parametrize("text,match", [
    ("train: [1, 2\n", r"not a valid YAML file"),
    ("- a\n- b\n", r"a config is a YAML mapping"),
    ("train:\n  epochs: ten\n", r"train\.epochs must be an integer"),
    ("backbone:\n  name: x\n  colour: red\n", r"unknown config key 'backbone\.colour'"),
    (b"name: caf\xe9\n", r"not a valid YAML file"),
])
def test_bad_config_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=r"bad\.yaml: " + match):
        load_config(path)
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_config_error_is_an_input_error():
    assert issubclass(ConfigError, InputError) and issubclass(DataError, InputError)


@pytest.mark.parametrize("section,match", [
    ({"source": "timm", "name": "convnext_atoo"},
     r"unknown timm model 'convnext_atoo'; closest names: \['convnext_atto'"),
    ({"source": "timm", "name": "convnext_atto.bogus_tag"}, r"timm model 'convnext_atto' has no pretrained tag "
                                                           r"'bogus_tag'; its tags: \['d2_in1k'\]"),
    ({"source": "timm", "name": "convnext_atto", "pretrained": "d2_in1k"},
     r"pretrained 'd2_in1k' is neither true nor a checkpoint file.*write name: convnext_atto\.d2_in1k"),
    ({"source": "open_clip", "name": "ViT-H-41"}, r"unknown open_clip model 'ViT-H-41'; closest names: \[.*'ViT-H-14'"),
    ({"source": "open_clip", "name": "ViT-H-14", "pretrained": "laion2b"},
     r"open_clip model 'ViT-H-14' has no pretrained tag 'laion2b'; its tags: \['laion2b_s32b_b79k'"),
    ({"source": "open_clip", "name": "demo-ViT-4L-192-p8", "pretrained": True},
     r"has no pretrained tag True; its tags: none"),
    ({"source": "keras", "name": "x"}, r"unknown backbone source 'keras'"),
])
def test_unknown_model_names_and_tags_suggest_valid_ones(section, match):
    from models.backbones import BackboneError, check_backbone

    with pytest.raises(BackboneError, match=match):
        check_backbone(section)
    assert issubclass(BackboneError, InputError)


def test_shipped_backbones_pass_the_name_checks():
    from models.backbones import check_backbone
    from models.knn import frozen_backbone_section

    for path in sorted(glob.glob(str(REPO / "configs" / "*.yaml"))):
        cfg = load_config(path)
        section = cfg["backbone"] if cfg["model"] == "backbone" else frozen_backbone_section(cfg)
        if section:
            check_backbone(section)


@pytest.mark.parametrize("text,match", [
    ("data: [1\n", r"the pipeline config is not valid YAML"),
    ("- 1\n", r"the pipeline config must be a YAML mapping"),
    ("data: {demo: {n_train: 5, n_test: 2, size: 8}}\nfolds: {}\n", r"missing section 'models'"),
    ("data: {demo: {n_train: 5, n_test: 2, size: 8}}\nfolds: {}\nmodels: []\n", r"models must be a non-empty list"),
    ("data: {demo: {n_train: 5, n_test: 2, size: 8}}\nfolds: {k: 2, kk: 3}\nmodels: [a.yaml]\n",
     r"unknown key\(s\) \['kk'\] in folds; valid keys: \['k', 'threshold', 'mode', 'seed'\]"),
    ("data: {train: x}\nfolds: {}\nmodels: [a.yaml]\n", r"data needs \['test'\]"),
    ("data: {demo: {n_train: 5}}\nfolds: {}\nmodels: [a.yaml]\n", r"data needs \['n_test', 'size'\]"),
    ("data: {}\nfolds: {}\nmodels: [a.yaml]\nextra: 1\n", r"unknown key\(s\) \['extra'\] in the pipeline config"),
])
def test_bad_pipeline_config(tmp_path, text, match):
    from pipeline.config import load_pipeline

    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=r"p\.yaml: " + match):
        load_pipeline(path)


def test_knn_frozen_backbone_is_checked_as_it_is_built():
    """`knn.backbone` may name only the model: the early name check sees the section the run builds
    (the backbone defaults under it), not the bare one (whose missing source would be refused)."""
    from models.backbones import BackboneError, check_backbone
    from models.knn import frozen_backbone_section

    cfg = load_config(REPO / "configs/knn_demo.yaml", ["knn.features_from=null", "knn.backbone={name: convnext_atto}"])
    assert frozen_backbone_section(cfg)["source"] == cfg["backbone"]["source"] == "timm"
    check_backbone(frozen_backbone_section(cfg))
    with pytest.raises(BackboneError):
        check_backbone(cfg["knn"]["backbone"])
