"""OOF artifacts: the run-directory format (write, read, validate) and the OOF analysis report.

Only numpy/pandas: a stacker or a report reads a GPU box's runs on a laptop.
"""
