"""Tiny presets: seeded, saved, reloaded through the real loaders; real names pass straight through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from canvas.core.errors import CanvasError
from canvas.core.presets import TINY_CLIP_NAME
from canvas.core.presets.clip import build_tiny_clip, create_clip
from canvas.core.presets.diffusion import build_tiny_sd
from canvas.core.presets.loading import load_pipeline


def _clip_features(model, preprocess, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))
    with torch.no_grad():
        img = model.encode_image(preprocess(image).unsqueeze(0))
        txt = model.encode_text(tokenizer(["a photo of a cat", "a red car"]))
    return img, txt


def test_tiny_clip_reloads_identically_through_open_clip(tiny_presets: dict[str, Path]) -> None:
    import open_clip

    model, preprocess, tokenizer = create_clip()
    img_a, txt_a = _clip_features(model, preprocess, tokenizer)
    # The very call that loads ViT-B-32/laion2b, on our registered name and the saved safetensors file.
    model_b, _, preprocess_b = open_clip.create_model_and_transforms(
        TINY_CLIP_NAME, pretrained=str(tiny_presets["clip"])
    )
    img_b, txt_b = _clip_features(model_b.eval(), preprocess_b, tokenizer)
    assert torch.equal(img_a, img_b) and torch.equal(txt_a, txt_b)
    assert img_a.shape == (1, 64) and txt_a.shape == (2, 64)
    assert not torch.allclose(txt_a[0], txt_a[1]), "different captions must embed differently"


def test_tiny_clip_build_is_seeded(tmp_path: Path, tiny_presets: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    rebuilt = load_file(build_tiny_clip(tmp_path))
    original = load_file(tiny_presets["clip"])
    assert rebuilt.keys() == original.keys()
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)


def test_tiny_sd_reloads_identically_and_samples_deterministically(
    tiny_presets: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_presets["sd15"])
    pipe.set_progress_bar_config(disable=True)

    def sample(p) -> np.ndarray:
        out = p(
            ["a red ball", "a blue sky"],
            num_inference_steps=4,
            generator=torch.Generator().manual_seed(7),
            output_type="np",
        )
        return out.images

    a = sample(pipe)
    pipe.save_pretrained(tmp_path / "copy")
    b = sample(StableDiffusionPipeline.from_pretrained(tmp_path / "copy"))
    assert a.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[0] - a[1]).mean() > 1e-4, "different prompts must give different images"
    assert type(load_pipeline("tiny")).__name__ == "StableDiffusionPipeline"


def test_tiny_sd_build_is_seeded(tmp_path: Path, tiny_presets: dict[str, Path]) -> None:
    from safetensors.torch import load_file

    rebuilt = build_tiny_sd(tmp_path / "sd")
    for part in (
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ):
        a, b = load_file(rebuilt / part), load_file(tiny_presets["sd15"] / part)
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_sd_tokenizer_ids_equal_open_clip_tokenizer(tiny_presets: dict[str, Path]) -> None:
    import open_clip
    from transformers import CLIPTokenizer

    hf = CLIPTokenizer.from_pretrained(tiny_presets["sd15"] / "tokenizer")
    oc = open_clip.get_tokenizer(TINY_CLIP_NAME)
    for text in [
        "a photo of a cat, running!",
        "Ünïcode and numbers 1234",
        "astronaut riding a horse on mars",
    ]:
        ids = hf(text)["input_ids"]
        assert oc([text])[0][: len(ids)].tolist() == ids
    assert hf.model_max_length == 77


def test_real_clip_name_reaches_open_clip_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    calls = []

    def fake_factory(name, pretrained=None, **kwargs):
        calls.append((name, pretrained))
        raise RuntimeError("no network here")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_factory)
    with pytest.raises(CanvasError, match="ViT-B-32"):
        create_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert calls == [("ViT-B-32", "laion2b_s34b_b79k")]


def test_real_pipeline_id_reaches_diffusers_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    calls = []

    def fake_from_pretrained(path, **kwargs):
        calls.append((path, kwargs))
        raise OSError("no network here")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", fake_from_pretrained)
    with pytest.raises(CanvasError, match="stable-diffusion-v1-5"):
        load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16)
    assert calls == [("stable-diffusion-v1-5/stable-diffusion-v1-5", {"torch_dtype": torch.float16})]


def _build_slowly(marker: str, log: str) -> None:
    import time

    from canvas.core.paths import build_once

    def build() -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one builds
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).write_text("done")

    build_once(Path(marker), build)


def test_processes_starting_together_build_a_preset_once(tmp_path: Path) -> None:
    # Two training processes launched together used to build the same preset into the same temp folder
    # and delete each other's files; the second must wait for the first and then use its result.
    import multiprocessing

    marker, log = tmp_path / "presets" / "tiny" / "sd15" / "model_index.json", tmp_path / "builds.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_build_slowly, args=(str(marker), str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    assert log.read_text() == "built\n" and marker.read_text() == "done"


def _init_preset_logged(root: str, log: str, name: str, rebuild: bool) -> None:
    import time

    from canvas.core.presets import loading

    def build(out_dir: Path) -> Path:
        with open(log, "a") as f:
            f.write(f"{name} start\n")
        time.sleep(0.5)  # long enough for the other process to arrive while this one builds
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "model_index.json").write_text("{}")
        with open(log, "a") as f:
            f.write(f"{name} end\n")
        return out_dir

    def build_clip(out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / loading.CLIP_WEIGHTS_FILE).write_text("w")

    loading.BUILDERS["tiny"] = build
    loading.build_tiny_clip = build_clip
    loading.init_preset("tiny", Path(root), rebuild=rebuild)


def test_a_rebuild_waits_for_a_build_in_progress_and_a_plain_init_reuses_the_preset(tmp_path: Path) -> None:
    # `canvas models init` (a rebuild) used to skip the build lock: in the test suite the demo's rebuild
    # replaced the shared preset folder while another worker was building it (FileNotFoundError in
    # save_pretrained). A rebuild now waits its turn; the demo builds only what is missing.
    import multiprocessing
    import time

    log = tmp_path / "builds.log"
    context = multiprocessing.get_context("fork")
    first = context.Process(target=_init_preset_logged, args=(str(tmp_path), str(log), "first", True))
    first.start()
    while not log.exists():
        time.sleep(0.05)
    second = context.Process(target=_init_preset_logged, args=(str(tmp_path), str(log), "second", True))
    second.start()
    for worker in (first, second):
        worker.join(30)
    assert (first.exitcode, second.exitcode) == (0, 0)
    assert log.read_text().split("\n")[:4] == ["first start", "first end", "second start", "second end"]
    reuse = context.Process(target=_init_preset_logged, args=(str(tmp_path), str(log), "reuse", False))
    reuse.start()
    reuse.join(30)
    assert reuse.exitcode == 0 and "reuse" not in log.read_text()


def test_a_preset_builds_whole_on_any_rank_of_a_distributed_launch(tmp_path: Path, monkeypatch) -> None:
    """Under torchrun the first process to take the build lock builds the preset, and that may be rank 1;
    transformers 5 writes model weights only on rank 0 of an initialized process group, so a rank-1 build
    left the text encoder without weights and `train ddpo --pretrained tiny-photo` failed half the time."""
    import torch.distributed

    from canvas.core.presets.loading import load_pipeline

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 1)
    pipe = load_pipeline("tiny", root=tmp_path)
    assert (tmp_path / "presets" / "tiny" / "sd15" / "text_encoder" / "model.safetensors").is_file()
    assert type(pipe).__name__ == "StableDiffusionPipeline"


def test_a_current_preset_is_copied_into_a_fresh_home_and_a_stale_one_is_built_again(tmp_path: Path) -> None:
    """`make setup` builds the presets into the user's CANVAS_HOME and the test session copies them into its
    fresh one: only under the current build key. A folder built by other builder code or libraries (another
    key) is neither copied nor reused by `init_preset(rebuild=False)`: it is built again."""
    from canvas.core.presets.build_key import BUILD_KEY_FILE, build_key
    from canvas.core.presets.loading import copy_current_presets, init_preset

    source, fresh, other = tmp_path / "user-home", tmp_path / "fresh", tmp_path / "other"
    built = init_preset("tiny", source, rebuild=False)["sd15"]
    assert (built / BUILD_KEY_FILE).read_text().strip() == build_key()

    assert copy_current_presets(source, fresh) == ["tiny"]
    weights = Path("unet") / "diffusion_pytorch_model.safetensors"
    assert (fresh / "presets/tiny/sd15" / weights).read_bytes() == (built / weights).read_bytes()
    assert type(load_pipeline("tiny", root=fresh)).__name__ == "StableDiffusionPipeline"

    (built / BUILD_KEY_FILE).write_text("a key of older builder code\n")
    unet_bytes = (built / weights).read_bytes()
    (built / weights).write_bytes(b"stale")
    assert copy_current_presets(source, other) == [] and not (other / "presets").exists()
    init_preset("tiny", source, rebuild=False)
    assert (built / BUILD_KEY_FILE).read_text().strip() == build_key()
    assert (built / weights).read_bytes() == unet_bytes  # rebuilt: seeded, so the same weights
