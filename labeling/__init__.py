"""Label Studio projects, task push, annotation pull, quality control, preference export."""
