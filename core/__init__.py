"""The contracts every stage reads and writes: the files that pass between the stages.

    dataset.py     the data layout (images/ + prompts.csv, bad_images.csv)
    ids.py         the imgId rule and the one reader of imgId tables (folds, groups, run and target ids ...)
    targets.py     the prompts' MiniLM embeddings (targets folder: targets.npy, ids.csv, meta.json)
    folds.py       grouped K folds (folds.csv, groups.csv)
    runs.py        a model's run directory (OOF / test predictions, metrics.json, manifest.json) and what
                   its metrics.json records about the inputs it was trained on
    metric.py      the competition metric and the one row L2-normalisation
    submission.py  submission.csv (imgId_eId,val)
    shards.py      webdataset shards of a training set (and their manifest)
    images.py      decoding an image file to the pixels every stage uses
    io.py          atomic writes, hashes, JSON; errors.py: the one error rule of every CLI

Two modules here are no format, and stay because core itself needs them and core imports nothing
above it: faults.py, the named crash points of the crash tests (core.io's atomic writes hold one; the
trainer and the pipeline use the same mechanism), and text_cache.py, the text-keyed embedding cache
core.targets embeds through.

Nothing in here imports the rest of the project, and nothing imports torch at module
level, so a stacker or a report can use it on a machine without a GPU stack.
"""

EMBEDDING_DIM = 384
