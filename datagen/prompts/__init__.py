"""Prompt corpus builder: many prompt files -> one cleaned, deduplicated prompts.csv.

    python -m datagen.prompts --source gpt4=prompts_filtered_4.0.txt --source coco=captions.json:0.5 --out DIR

Writes DIR/prompts.csv (imgId,prompt,source; imgId = a hash of the prompt), DIR/dropped.csv (every
dropped row, why, and the kept prompt it duplicates) and DIR/corpus.json (counts per source after
each step, settings, seconds). See build.py for the steps.
"""
from datagen.prompts.build import CORPUS_FILE, DROPPED_FILE, OUTPUT_COLUMNS, STEPS, Settings, build_corpus, prompt_id
from datagen.prompts.clean import CLIP_CONTEXT, clean_prompt, clip_lengths, minilm_lengths
from datagen.prompts.dedup import exact_duplicates, greedy_keep_first, near_duplicates
from datagen.prompts.sample import weighted_quotas
from datagen.prompts.sources import Source, parse_source, read_file, read_source

__all__ = [
    "CLIP_CONTEXT", "CORPUS_FILE", "DROPPED_FILE", "OUTPUT_COLUMNS", "STEPS", "Settings", "Source", "build_corpus",
    "clean_prompt", "clip_lengths", "exact_duplicates", "greedy_keep_first", "minilm_lengths", "near_duplicates",
    "parse_source", "prompt_id", "read_file", "read_source", "weighted_quotas",
]
