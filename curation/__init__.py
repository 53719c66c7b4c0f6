"""Engine-agnostic curation blocks: decode/validate, filters, hashes, CLIP embedding, scores, SemDeDup. No Beam import."""
