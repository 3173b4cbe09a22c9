"""OOF artifacts: the run-directory format (write, read, validate), the residual correlation
between runs and the OOF analysis report.

No torch and nothing from `models/`: everything here reads the files runs write, so a laptop can
analyse a GPU box's runs. Besides numpy and pandas, the report draws with matplotlib, searches
nearest prompts with faiss, counts tokens with tokenizers and makes thumbnails with PIL.
"""
