"""The model-config schema keeps every config's hash and its error texts.

The hashes below were recorded before the schema was declared in one place: a finished run is
skipped only while its config hash is unchanged, so a schema change that moved any of them would
retrain every existing run. They are sha256 over the JSON of the settings as read from YAML text
(no float is computed), so they are the same on every machine.
"""
import glob
from pathlib import Path

import pytest

from models.config import ConfigError, config_hash, load_config
from tests.model_fixtures import REPO

SHIPPED = {
    "convnext_demo.yaml": "06af84125a31d7cece81bcfb30e57d2c8839f4582ec36ab01cbe4fd8ac9582e3",
    "convnext_xxl.yaml": "96b6cdfd933963f36bc064b658371c17d9644546402a663e2f04eb8a5d2d20a8",
    "eva02_l.yaml": "9252f1e3706ea166b08169ee472476a5ae2a47bc2badea52660caf28fdf6fcb6",
    "eva_demo.yaml": "c358685f71a0983055f81c33ddbbd463e287e22d04632ac9f619e04f5895d03e",
    "knn_clip_h14.yaml": "144566a7e884fb80e4afe619840e12dfb68485891af89bdc8e9951d911f4727b",
    "knn_demo.yaml": "0cb1b92b9e4a0dda50457e5857fd82101d5f629337da2ed0568a5ca30c1d46d1",
    "retrieval_clip_h14.yaml": "04d4da1ddadb26cf9b1f4b31af4c4ee1ac4c73b201d83bf25d569716a7ed54ef",
    "retrieval_demo.yaml": "1e541a4882dc5c2aaa51351009fc6e13c1c33d8e403f2857c5dcbffdb9ec22f4",
    "vit_demo.yaml": "3f166941e347f49693bd6745015a81348d6faae03bf0df600ea79dc3ecf12f6b",
    "vit_h14.yaml": "f4474d841da302acba8031ecc6609b6312ef298640c39e0e2582ac7c33074d5c",
}
VIT, KNN = SHIPPED["vit_demo.yaml"], SHIPPED["knn_demo.yaml"]

WITH_OVERRIDES = [
    ("knn_demo", ["knn.index=ivf"], "bb034fa10b86e73b78fe4d73bf18d951326ea9ccab0ae02f9dc5df13ea12447d"),
    ("knn_demo", ["knn.index=auto", "knn.nprobe=8", "knn.nlist=null"], KNN),  # hash-neutral values
    ("knn_demo", ["knn.index=ivf", "knn.nprobe=16", "knn.nlist=64"],
     "4d5c70d41dd923b34c04211b9e32d9c4723a1ddd4260d88eef32b65451428084"),
    ("knn_demo", ["knn.features_from=null", "knn.backbone={name: convnext_atto}"],
     "1bb053ce71d2fe46950c528258515de1856bc2070906a8bec34919c288d76659"),
    ("vit_demo", ["data.sample_per_prompt=0"], VIT),  # 0 and null both mean off
    ("vit_demo", ["data.sample_per_prompt=1"], "ea5fc06dad17f061aa09656491a2a728d6a7eaf38150c9d7fc5f427a44142527"),
    ("vit_demo", ["predict.tta=flip"], "69914fe985a3549f528a03661246ab952a77c9b9bfb31e8e6cbaf2df17c9ba65"),
    ("vit_demo", ["predict.tta=[none, flip]"], "69914fe985a3549f528a03661246ab952a77c9b9bfb31e8e6cbaf2df17c9ba65"),
    ("vit_demo", ["predict.tta=[none, flip, norm2, resize]"],
     "5696c9c9b04d7140aadb192ef9485d73c45566218c5f7f6e28a96daaa953bd41"),
    ("vit_demo", ["predict.tta='none, crops'"], "22799a6a8c92513a1d4187e6c82c8ff73ae8693e0bfa1b63d37bcbfefd1fb6fd"),
    ("vit_demo", ["train.clip_grad=1.0"], "0dc6517ec57bb12c7db8bd49beff34dad58ee8cfd7b1e202805d6ad1307622a9"),
    ("vit_demo", ["train.clip_grad=null", "train.checkpoint_every=30min"], VIT),
    ("vit_demo", ["train.warmup_epochs=1"], "e0770255f734ea7c61591cc9c1a36198eff4af12e1ed25664513116e1518a537"),
    ("vit_demo", ["train.lr=1e-4"], "e1ef94cda3b80419c46f54f72d73ca647202d29b2bfd8b82c16a005d8d198fdf"),
    ("vit_demo", ["augment.randaugment_magnitude=2.5"],
     "684df380a2e5f5198c3050d3eaac4b5ab617c52fb041677c7043628e1b67a1c4"),
    ("vit_demo", ["image.mean=[0.5, 0.5, 0.5]", "image.std=[0.25, 0.25, 0.25]"],
     "cb3462085801310d9a09beb5e729995cf2bf3cc4775f064b95b164a8c170cc59"),
    ("vit_demo", ["augment=null", "name=other", "out=elsewhere"],
     "48791a1526eee34fa8359390cf9ffd516d716f7fdd4ea515381fba5682dc8e4e"),
    # where outputs, caches and data go, threads and monitoring: never in the hash
    ("vit_demo", ["data.source=stream", "data.workers=2", "data.shuffle_buffer=10", "train.num_threads=1",
                  "train.eval_every=0", "predict.batch_size=7", "data.cache_dir=c", "data.train=t", "data.test=u",
                  "data.targets=v", "data.folds=w"], VIT),
    ("eva_demo", ["backbone.kwargs={img_size: 32, depth: 2}", "backbone.pretrained=true",
                  "train.max_steps_per_epoch=2", "train.precision=fp32", "train.ema_decay=0.9", "head.dropout=0.1",
                  "loss.mse_weight=0.5"], "b2998e4a55b9c3fa50eadc52477ef70c204de115b29ab841498f266cbe2c9d6b"),
]


def test_every_shipped_config_keeps_its_hash():
    shipped = sorted(Path(p).name for p in glob.glob(str(REPO / "configs" / "*.yaml")))
    assert shipped == sorted(SHIPPED), "a config was added or removed: record its hash here"
    for name, expected in SHIPPED.items():
        assert config_hash(load_config(REPO / "configs" / name)) == expected, name


@pytest.mark.parametrize("config,overrides,expected", WITH_OVERRIDES)
def test_overridden_configs_keep_their_hash(config, overrides, expected):
    assert config_hash(load_config(REPO / "configs" / f"{config}.yaml", overrides)) == expected


def test_input_identities_enter_the_hash():
    cfg = load_config(REPO / "configs" / "vit_demo.yaml")
    assert config_hash(cfg, {"folds": {"sha256": "ab"}, "train_images": "cd"}) == \
        "56300cfc37fbd7edbf1a54a41d8b7d18fbe90aba00811acf7cda56e8271ab71b"


# One of each kind: wrong type, out of range, bad choice, nullable keys, unknown keys with and without a
# close match, the keys' own parsers (tta, checkpoint_every) and the rules between keys. Recorded before the
# schema; since it, every refused value is shown (`, got <value>`), choices of more than two are listed, and
# numbers are finite.
ERRORS = [
    ("train.epochs=ten", "train.epochs must be an integer, got 'ten' (str)"),
    ("train.epochs=2.5", "train.epochs must be an integer, got 2.5 (float)"),
    ("train.epochs=null", "train.epochs must be an integer, got None (NoneType)"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.lr=fast", "train.lr must be a number, got 'fast' (str)"),
    ("train.lr=-1e-3", "train.lr must be >= 0 (0 keeps the weights fixed), got -0.001"),
    ("train.lr=.nan", "train.lr must be >= 0 (0 keeps the weights fixed), got nan"),
    ("train.batch_size=true", "train.batch_size must be an integer, got True (bool)"),
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    ("train.ema_decay=1.5", "train.ema_decay must be in [0, 1), got 1.5"),
    ("train.layer_decay=0", "train.layer_decay must be in (0, 1], got 0"),
    ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch must be null or an integer >= 1, got 0"),
    ("train.num_threads=two", "train.num_threads must be null or an integer >= 1, got 'two'"),
    ("train.eval_every=-1", "train.eval_every must be >= 0 (0: no monitoring evaluation), got -1"),
    ("train.precision=fp8", "train.precision must be one of ['auto', 'fp32', 'bf16', 'fp16'], got 'fp8'"),
    ("train.clip_grad=0", "train.clip_grad must be null or a positive number, got 0"),
    ("train.clip_grad=.inf", "train.clip_grad must be null or a positive number, got inf"),
    ("train.checkpoint_every=1.5", "train.checkpoint_every must be null, optimizer updates (an integer >= 0) or "
                                   "minutes ('30min'), got 1.5"),
    ("train.checkpoint_every=ten", "train.checkpoint_every: 'ten'; use optimizer updates (500) or minutes ('30min')"),
    ("train.checkpoint_every=-3", "train.checkpoint_every must be >= 0, got -3"),
    ("seed=1.5", "seed must be an integer, got 1.5 (float)"),
    ("model=svm", "model must be one of ['backbone', 'knn', 'retrieval'], got 'svm'"),
    ("backbone.source=keras", "backbone.source must be timm or open_clip, got 'keras'"),
    ("backbone.name=null", "backbone.name is required"),
    ("backbone.grad_checkpointing=1", "backbone.grad_checkpointing must be true or false, got 1 (int)"),
    ("backbone.kwargs=3", "backbone.kwargs must be a mapping, got 3 (int)"),
    ("backbone.pretrained=3", "backbone.pretrained must be null, true, a pretrained tag or a checkpoint file, got 3"),
    ("backbone.drop_path_rate=1", "backbone.drop_path_rate must be in [0, 1), got 1"),
    ("image.size=0", "image.size must be >= 8, got 0"),
    ("image.mean=[1,2]", "image.mean must be null or a list of 3 numbers, got [1, 2]"),
    ("image.std=[0.5, 0, 0.5]", "image.std must be null or a list of 3 positive numbers, got [0.5, 0, 0.5]"),
    ("image.interpolation=cubic",
     "image.interpolation must be one of ['bicubic', 'bilinear', 'lanczos', 'nearest'], got 'cubic'"),
    ("image.interpolation=3", "image.interpolation must be a string, got 3 (int)"),
    ("augment.rrc_scale=[0.9, 0.5]", "augment.rrc_scale must be [low, high] with 0 < low <= high <= 1, got [0.9, 0.5]"),
    ("augment.rrc_ratio=[2,1]", "augment.rrc_ratio must be [low, high] with 0 < low <= high, got [2, 1]"),
    ("augment.hflip=2", "augment.hflip must be a probability in [0, 1], got 2"),
    ("augment.randaugment_magnitude=x", "augment.randaugment_magnitude must be a number, got 'x' (str)"),
    ("augment.randaugment_magnitude=11", "augment.randaugment_magnitude must be in [0, 10], got 11"),
    ("head.type=deep", "head.type must be linear or mlp, got 'deep'"),
    ("head.dropout=1", "head.dropout must be in [0, 1), got 1"),
    ("loss.type=l1", "loss.type must be cosine or residual_mse, got 'l1'"),
    ("loss.mse_weight=-1", "loss.mse_weight must be >= 0, got -1"),
    ("predict.tta=rotate", "predict.tta must be one of ['crops', 'flip', 'none'] or a list of distinct views from "
                           "['none', 'flip', 'crops', 'norm2', 'resize'], got ['rotate']"),
    ("predict.tta=[flip, flip]", "predict.tta must be one of ['crops', 'flip', 'none'] or a list of distinct views "
                                 "from ['none', 'flip', 'crops', 'norm2', 'resize'], got ['flip', 'flip']"),
    ("knn.index=hnsw", "knn.index must be one of ['auto', 'flat', 'ivf'], got 'hnsw'"),
    ("knn.nprobe=0", "knn.nprobe must be >= 1, got 0"),
    ("knn.nlist=1.5", "knn.nlist must be null or an integer >= 1, got 1.5"),
    ("knn.temperature=0", "knn.temperature must be a positive number, got 0"),
    ("knn.backbone=3", "knn.backbone must be null or a backbone section, got 3"),
    ("data.source=disk", "data.source must be one of ['auto', 'cache', 'stream', 'shards'], got 'disk'"),
    ("data.sample_per_prompt=3", "data.sample_per_prompt must be null/0 (off) or 1, got 3"),
    ("data.workers=-1", "data.workers must be null or an integer >= 0, got -1"),
    ("data.sample_per_prompt=true", "data.sample_per_prompt must be null/0 (off) or 1, got True"),
    ("data.train=''", "data.train must be a path, got ''"),
    ("data.train=null", "data.train must be a string, got None (NoneType)"),
    ("name=3", "name must be a string, got 3 (int)"),
    ("out=3", "out must be a string, got 3 (int)"),
    ("backbone.name=3", "backbone.name must be null or a string, got 3"),
    ("predict.tta=3", "predict.tta must be a string or a list, got 3 (int)"),
    ("name=a/b", "name must be a run name (a folder name: no slashes), got 'a/b'"),
    ("train=3", "train must be a mapping (key: value lines), got 3"),
    ("grad_checkpointing=true", "unknown config key 'grad_checkpointing'; valid keys in the top level: "
                                "['augment', 'backbone', 'data', 'head', 'image', 'knn', 'loss', 'model', 'name', "
                                "'out', 'predict', 'retrieval', 'seed', 'train']"),
    ("train.epoch=3", "unknown config key 'train.epoch' (did you mean ['train.epochs']?); valid keys in train: "
                      "['batch_size', 'checkpoint_every', 'clip_grad', 'early_stopping_patience', 'ema_decay', "
                      "'epochs', 'eval_every', 'grad_accum', 'inner_val_fraction', 'layer_decay', "
                      "'linear_probe_epochs', 'lr', 'max_steps_per_epoch', 'min_lr', 'num_threads', 'precision', "
                      "'warmup_epochs', 'weight_decay']"),
    ("trian.epochs=3", "unknown config key 'trian' (did you mean ['train']?); valid keys in the top level: "
                       "['augment', 'backbone', 'data', 'head', 'image', 'knn', 'loss', 'model', 'name', 'out', "
                       "'predict', 'retrieval', 'seed', 'train']"),
    ("train.epochs.x=1", "override 'train.epochs.x=1': train.epochs is not a section"),
]


@pytest.mark.parametrize("override,message", ERRORS)
def test_error_texts(override, message):
    path = REPO / "configs" / "vit_demo.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(path, [override])
    assert str(e.value) == f"{path}: {message}"


def test_knn_needs_one_feature_source():
    path = REPO / "configs" / "knn_demo.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(path, ["knn.backbone={name: x}"])
    assert str(e.value) == f"{path}: knn needs exactly one of knn.features_from or knn.backbone"


def test_retrieval_section_keeps_other_hashes_and_checks_its_keys():
    """The retrieval section came after runs were finished: at its defaults it leaves every hash as it was (the
    shipped hashes above); its keys are checked like the others and the rules between them hold."""
    path = REPO / "configs" / "vit_demo.yaml"
    assert config_hash(load_config(path, ["retrieval.k=20", "retrieval.query=run", "retrieval.bank=x.csv"])) == VIT
    assert config_hash(load_config(path, ["retrieval.k=21"])) != VIT
    for override, message in [("retrieval.query=text", "retrieval.query must be run or clip, got 'text'"),
                              ("retrieval.alpha=1.5", "retrieval.alpha must be in [0, 1], got 1.5"),
                              ("model=retrieval", "retrieval needs retrieval.bank (a prompts.csv)")]:
        with pytest.raises(ConfigError) as e:
            load_config(path, [override])
        assert str(e.value) == f"{path}: {message}"
    with pytest.raises(ConfigError, match="retrieval.query: run needs retrieval.run"):
        load_config(path, ["model=retrieval", "retrieval.bank=b.csv"])
    with pytest.raises(ConfigError, match="query: clip needs an open_clip model"):
        load_config(REPO / "configs" / "convnext_demo.yaml", ["model=retrieval", "retrieval.bank=b.csv",
                                                              "retrieval.query=clip"])
