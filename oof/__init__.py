"""OOF analysis: the residual correlation between runs and the OOF analysis report.

It reads the files runs and the stacker write (the run directory is core.runs's format) and sits
above both: it imports core and ensemble, nothing imports it but the pipeline's summary. No torch
and nothing from `models/`, so a laptop can analyse a GPU box's runs. Besides numpy and pandas,
the report draws with matplotlib, searches nearest prompts with faiss, counts tokens with
tokenizers and makes thumbnails with PIL.
"""
