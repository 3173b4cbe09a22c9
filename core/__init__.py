"""The competition's contract: data layout, targets, folds, metric, submission.

Nothing in here imports the rest of the project, and nothing imports torch at module
level, so a stacker or a report can use it on a machine without a GPU stack.
"""

EMBEDDING_DIM = 384
