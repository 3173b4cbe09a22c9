"""The Kaggle pack: everything offline inference needs, in one folder to upload as a Kaggle dataset.

    python -m pipeline.kaggle.pack --help

pack.py writes the pack from the parts: code.py (the project modules inference imports), checkpoints.py
(fold checkpoints in fp16, each frozen kNN backbone once), wheels.py (packages Kaggle's image lacks) and
notebook.py (the notebook the pack carries).
"""
