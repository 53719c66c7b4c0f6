"""Apache Beam pipelines that wire `curation/` into composite PTransforms."""
