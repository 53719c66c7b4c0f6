"""The files that pass between stages, one module per format: its schema (pyarrow), file names and the
reader/validator every stage uses, so a producer and its consumers cannot drift apart.

- `curated`: `canvas curate`'s `DIR/curated/*.parquet` and `DIR/rejected/*.parquet` shards (schemas,
  shard naming, which shard holds a key).
- `candidates`: `canvas generate`'s `DIR/candidates.parquet` (schema; the columns `label push` needs,
  checked before any row is read).
- `prompts`: prompt files read by `canvas generate`, `canvas train ddpo` and `canvas eval` (.txt, .txt.gz,
  or a Parquet's `caption`/`prompt` column; one rule set).

- `preferences`: `canvas label pull`'s `preferences.parquet` (Pick-a-Pic v2 columns and types, then ours),
  read by `canvas train reward|dpo`.

Base layer: these modules import nothing of ours but `canvas.core`; Beam's FileSystems is imported only
inside the functions that read a `scheme://` path, so a local read does not load Beam.
"""
