"""CLIP image and text embeddings through open_clip (loaded by `canvas.core.presets.create_clip`, safetensors).

`ClipEmbedder.setup()` loads the model once (one per worker process); `embed()` takes a batch of encoded
images and captions and returns L2-normalised image and text embeddings and their cosine (the CLIP score).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from canvas.core.threads import set_worker_threads
from canvas.curation.decode import open_rgb


@dataclass
class ClipConfig:
    """The CLIP embedding stage (needed by the CLIP-score filter and semantic dedup)."""

    enabled: bool = field(
        default=True,
        metadata={"help": "compute CLIP embeddings (off also turns off clip_score and semdedup)"},
    )
    batch_size: int = field(default=32, metadata={"help": "images per model call (RunInference batch size)"})
    threads: int = field(
        default=0, metadata={"help": "torch threads per worker process; 0 = its share of the machine's cores"}
    )
    precomputed: str = field(
        default="auto",
        metadata={
            "help": "use a DataComp pool's .npz embeddings instead of embedding: b32 | l14 | auto (b32 when "
            "the input is a pool without images, else embed with the model)"
        },
    )
    precomputed_rows: str = field(
        default="auto",
        metadata={
            "help": "how a pool's image embeddings reach SemDeDup and the curated files. reread: records "
            "travel without them and those stages read each row again from the pool's own files by (file, "
            "row), ~1/4 of a record's bytes in every grouping (local files, arrays stored uncompressed: "
            "np.savez, np.save). carry: every record carries its embedding (any filesystem). auto: reread "
            "where the files allow it, else carry"
        },
    )


@dataclass(frozen=True)
class ClipOutput:
    image_embedding: np.ndarray  # (d,) float32, unit norm
    text_embedding: np.ndarray  # (d,) float32, unit norm
    score: float  # cosine(image, text)


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text`, computed only up to the longest caption's end token.

    The text tower is causal and pools at the end token, so positions after it cannot change the result;
    captions are ~15 tokens of 77, so this cuts text cost ~4x. Falls back to `encode_text` for models
    that are not the standard open_clip `CLIP` with argmax pooling.
    """
    pool = getattr(model, "text_pool_type", None)
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if pool != "argmax" or not all(getattr(model, n, None) is not None for n in needed):
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end token has the largest id
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
    if model.text_projection is not None:
        x = (
            model.text_projection(x)
            if isinstance(model.text_projection, torch.nn.Linear)
            else x @ model.text_projection
        )
    return x


class ClipEmbedder:
    """open_clip model + its own preprocessing and tokenizer."""

    def __init__(self, model_name: str, pretrained: str | None, threads: int = 0) -> None:
        self.model_name = model_name
        self.pretrained = pretrained
        self.threads = threads
        self.model = None

    def setup(self) -> ClipEmbedder:
        from canvas.core.presets.clip import create_clip

        set_worker_threads(self.threads)
        # "none": the architecture with random weights (benchmarks measure speed, not quality), seeded so
        # that every worker and every run holds the same model (same input + config -> same output).
        pretrained = None if self.pretrained in (None, "", "none") else self.pretrained
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.model, self.preprocess, self.tokenizer = create_clip(self.model_name, pretrained)
        return self

    @property
    def embedding_dim(self) -> int:
        assert self.model is not None, "call setup() first"
        proj = getattr(self.model.visual, "output_dim", None)
        if proj is None:
            raise RuntimeError("cannot read the embedding dimension")
        return int(proj)

    @torch.inference_mode()
    def encode_images(self, images: list) -> np.ndarray:
        """PIL RGB images -> (n, d) unit-norm float32."""
        pixels = torch.stack([self.preprocess(img) for img in images])
        feats = self.model.encode_image(pixels)
        return torch.nn.functional.normalize(feats.float(), dim=-1).numpy()

    @torch.inference_mode()
    def encode_texts(self, captions: list[str]) -> np.ndarray:
        tokens = self.tokenizer(captions)
        feats = encode_text_trimmed(self.model, tokens)
        return torch.nn.functional.normalize(feats.float(), dim=-1).numpy()

    def embed(self, batch: list[tuple[bytes, str | None]]) -> list[ClipOutput]:
        """(encoded image, caption) pairs -> embeddings and scores. Images were validated by `decode`."""
        assert self.model is not None, "call setup() first"
        images = [open_rgb(data) for data, _ in batch]
        img = self.encode_images(images)
        txt = self.encode_texts([caption or "" for _, caption in batch])
        scores = (img * txt).sum(axis=1)
        return [ClipOutput(i, t, float(s)) for i, t, s in zip(img, txt, scores, strict=True)]
