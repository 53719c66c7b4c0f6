"""Preference labeling in a real Label Studio server.

- `server`: start / stop / status of a loopback Label Studio (own venv, pre-migrated data-dir template).
- `client`: every label-studio-sdk call, with retries, backoff and clear errors.
- `schema`: the pairwise interface (prompt, left/right images, left/right/tie) and result validation.
- `push`: candidate pairs -> project tasks (idempotent by pair_id, gold, pre-labels).
- `pull`: annotations -> Pick-a-Pic v2 preferences.parquet, annotators.json, rejected.jsonl.
- `quality`: majority vote, per-annotator quality, Krippendorff's alpha (pure functions).
- `simulate`: simulated annotators with a known noisy preference, acting through the real API.
"""
