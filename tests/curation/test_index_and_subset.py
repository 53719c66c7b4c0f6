"""FAISS index over curated embeddings, queries, targeted subsets and their CLI (real FAISS, tiny CLIP).

The curated folders here follow the curation output contract (DIR/curated/*.parquet with an L2-normalised
`embedding` column, DIR/report.json naming the CLIP model); their embeddings are made by the tiny CLIP
from real photos and solid-colour images, so image queries must find their own row at cosine ~1 and text
queries must match an exact brute-force search with the same model.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from canvas.cli import main
from canvas.core.errors import CanvasError
from canvas.core.formats.curated import curated_schema

TEXTS = ("a photo of a cat", "stars in deep space", "green grass", "food on a plate")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_curated(
    out: Path, records: list[tuple[str, str, bytes]], embeddings: np.ndarray, model: tuple[str, str | None]
) -> Path:
    """A curated folder in the curation contract's layout, split over two Parquet files."""
    dim = embeddings.shape[1]
    (out / "curated").mkdir(parents=True)
    half = len(records) // 2
    for part, (lo, hi) in enumerate(((0, half), (half, len(records)))):
        rows = []
        for (key, caption, data), emb in zip(records[lo:hi], embeddings[lo:hi], strict=True):
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
            rows.append(
                {
                    "key": key,
                    "caption": caption,
                    "image": data,
                    "width": width,
                    "height": height,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "phash": "0" * 16,
                    "clip_score": 0.3,
                    "nsfw_score": 0.01,
                    "cluster_id": 0,
                    "embedding": emb.astype(np.float32).tolist(),
                    "source": "photos.parquet",
                }
            )
        pq.write_table(
            pa.Table.from_pylist(rows, schema=curated_schema(dim)),
            out / "curated" / f"part-{part:05d}.parquet",
        )
    report = {
        "clip_model": model[0],
        "clip_pretrained": model[1],
        "embedding_dim": dim,
        "rows_out": len(records),
    }
    (out / "report.json").write_text(json.dumps(report))
    return out


def curated_records() -> list[tuple[str, str, bytes]]:
    """The sample set's real photos plus 24 solid-colour squares."""
    from canvas.core.sample_data import build_sample

    rows, truth = build_sample()
    records = [
        (r["key"], r["caption"], r["image"]) for r, t in zip(rows, truth, strict=True) if t.kind == "original"
    ]
    rng = np.random.default_rng(0)
    for i in range(24):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        records.append(
            (f"solid-{i:02d}", f"a plain square of colour {colour}", _png(Image.new("RGB", (96, 96), colour)))
        )
    return records


@torch.inference_mode()
def clip_image_embeddings(records: list[tuple[str, str, bytes]]) -> np.ndarray:
    from canvas.core.presets.clip import create_clip

    model, preprocess, _ = create_clip("canvas-tiny-clip", "tiny")
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(d)).convert("RGB")) for _, _, d in records])
    return torch.nn.functional.normalize(model.encode_image(pixels), dim=-1).numpy()


@torch.inference_mode()
def clip_text_embeddings(texts: list[str]) -> np.ndarray:
    from canvas.core.presets.clip import create_clip

    model, _, tokenizer = create_clip("canvas-tiny-clip", "tiny")
    return torch.nn.functional.normalize(model.encode_text(tokenizer(texts)), dim=-1).numpy()


@pytest.fixture(scope="module")
def curated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, np.ndarray, list[tuple[str, str, bytes]]]:
    records = curated_records()
    embeddings = clip_image_embeddings(records)
    out = write_curated(tmp_path_factory.mktemp("cur"), records, embeddings, ("canvas-tiny-clip", "tiny"))
    return out, embeddings, records


@pytest.fixture(scope="module")
def index_dir(curated, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from canvas.curation.index import build_index

    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(curated[0], out)
    return out


def test_build_remembers_the_model_and_maps_rows_to_keys(curated, index_dir: Path) -> None:
    from canvas.curation.index import CuratedIndex

    index = CuratedIndex.load(index_dir)
    _, embeddings, records = curated
    m = index.manifest
    assert (m.clip_model, m.clip_pretrained, m.embedding_dim, m.metric) == (
        "canvas-tiny-clip",
        "tiny",
        64,
        "inner_product",
    )
    assert m.factory == "Flat" and len(index) == len(records)
    assert index.rows["key"].to_pylist() == [k for k, _, _ in records]  # row i = i-th curated row, file order
    assert set(index.rows["file"].to_pylist()) == {"part-00000.parquet", "part-00001.parquet"}


def test_image_query_finds_its_own_row_first(curated, index_dir: Path, tmp_path: Path, capsys) -> None:
    _, _, records = curated
    key, _, data = records[5]
    (tmp_path / "q.png").write_bytes(data)
    assert (
        main(["index", "query", "--index", str(index_dir), "--image", str(tmp_path / "q.png"), "-k", "3"])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["rank"] for line in lines] == [1, 2, 3]
    assert lines[0]["key"] == key and lines[0]["score"] > 0.999
    assert lines[0]["score"] >= lines[1]["score"] >= lines[2]["score"]


def test_text_query_equals_exact_search_with_the_same_model(curated, index_dir: Path, capsys) -> None:
    _, embeddings, records = curated
    text = TEXTS[1]
    exact = embeddings @ clip_text_embeddings([text])[0]
    order = np.argsort(-exact)
    assert main(["index", "query", "--index", str(index_dir), "--text", text, "-k", "5"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["key"] for line in lines] == [records[i][0] for i in order[:5]]
    np.testing.assert_allclose([line["score"] for line in lines], exact[order[:5]], atol=1e-4)
    # --min-score alone returns every row at or above the threshold, and nothing else
    threshold = float(exact[order[7]] + exact[order[8]]) / 2  # between two rows, clear of float noise
    assert (
        main(["index", "query", "--index", str(index_dir), "--text", text, "--min-score", str(threshold)])
        == 0
    )
    keys = {json.loads(line)["key"] for line in capsys.readouterr().out.splitlines()}
    assert keys == {records[i][0] for i in order[:8]}


def test_subset_same_schema_topk_exclusion_and_contact_sheet(
    curated, index_dir: Path, tmp_path: Path
) -> None:
    cur, embeddings, records = curated
    text_emb = clip_text_embeddings(list(TEXTS))
    score = embeddings @ text_emb[0]
    excl = embeddings @ text_emb[1]
    # exact expectation: the best 6 rows by include score among those not closer to the exclude text
    expected = [records[i][0] for i in np.argsort(-score) if excl[i] < score[i]][:6]
    assert len(expected) == 6 and set(expected) != {records[i][0] for i in np.argsort(-score)[:6]}, "no bite"
    out = tmp_path / "subset"
    argv = ["subset", "--curated", str(cur), "--index", str(index_dir), "--text", TEXTS[0]]
    assert main([*argv, "--exclude-text", TEXTS[1], "-k", "6", "--output", str(out)]) == 0

    table = pq.read_table(out / "subset.parquet")
    assert table.schema.equals(pq.read_schema(cur / "curated" / "part-00000.parquet"))
    assert table["key"].to_pylist() == expected
    by_key = {k: (c, d) for k, c, d in records}
    assert [by_key[k][1] for k in expected] == table["image"].to_pylist()  # the rows themselves, bytes intact
    summary = json.loads((out / "subset.json").read_text())
    assert [s["key"] for s in summary["selected"]] == expected
    sheet = (out / "contact_sheet.html").read_text()
    assert sheet.count("<img ") == len(expected) and expected[0] in sheet


def test_subset_min_score_union_of_texts(curated, index_dir: Path, tmp_path: Path) -> None:
    from canvas.curation.index import CuratedIndex
    from canvas.curation.subset import SubsetQuery, select

    cur, embeddings, records = curated
    best = (embeddings @ clip_text_embeddings([TEXTS[1], TEXTS[2]]).T).max(axis=1)
    ranked = np.sort(best)
    threshold = float(ranked[-9] + ranked[-10]) / 2
    chosen = select(CuratedIndex.load(index_dir), cur, SubsetQuery([TEXTS[1], TEXTS[2]], min_score=threshold))
    assert {s.key for s in chosen} == {records[i][0] for i in np.flatnonzero(best >= threshold)}
    assert len(chosen) == 9
    assert [s.score for s in chosen] == sorted((s.score for s in chosen), reverse=True)


def test_auto_compressed_index_is_memory_mapped_and_accurate(tmp_path: Path, monkeypatch) -> None:
    """Above the flat limit `auto` builds a compressed IVF index (PCA + IVF + SQ6); loading maps its lists."""
    import faiss

    import canvas.curation.index as ci

    rng = np.random.default_rng(1)
    n, dim = 6000, 64
    # embedding-like: 60 centres, a 12-d latent spread around each, a little isotropic noise
    centres = rng.standard_normal((60, dim))
    basis = np.linalg.qr(rng.standard_normal((dim, 12)))[0]
    vectors = centres[rng.integers(0, 60, n)] + 2.0 * rng.standard_normal((n, 12)) @ basis.T
    vectors = (vectors + 0.05 * rng.standard_normal((n, dim))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tiny_png = _png(Image.new("RGB", (8, 8)))
    records = [(f"v{i:05d}", f"vector {i}", tiny_png) for i in range(n)]
    cur = write_curated(tmp_path / "cur", records, vectors, ("canvas-tiny-clip", "tiny"))
    monkeypatch.setattr(ci, "FLAT_MAX_ROWS", 1000)
    manifest = ci.build_index(cur, tmp_path / "idx")
    assert manifest.factory.startswith("PCAR38,IVF") and manifest.nprobe > 0 and manifest.metric == "l2"
    index = ci.CuratedIndex.load(tmp_path / "idx")
    ivf = faiss.extract_index_ivf(index.index)
    assert isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)  # mmap, not RAM
    assert (tmp_path / "idx" / "index.faiss").stat().st_size < vectors.nbytes / 4
    queries = vectors[:200] + 0.05 * rng.standard_normal((200, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    scores, found = index.search(queries, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all() and 0.5 < scores[0, 0] <= 1.01  # cosines, best first
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    # a broken index scores ~0; the recall target on 512-d embeddings is measured by bench/bench_index.py
    assert recall >= 0.85, recall


# -- bad input: one clear error each ---------------------------------------------------------------------


def _one_line_error(capsys, argv: list[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("canvas: error:") and err.count("\n") == 1 and "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


def test_index_from_curated_dir_without_embeddings(tmp_path: Path, capsys) -> None:
    (tmp_path / "cur" / "curated").mkdir(parents=True)
    pq.write_table(
        pa.table({"key": ["a"], "caption": ["c"], "image": [b"x"]}), tmp_path / "cur/curated/p.parquet"
    )
    (tmp_path / "cur/report.json").write_text(
        json.dumps({"clip_model": "canvas-tiny-clip", "embedding_dim": 64})
    )
    _one_line_error(
        capsys,
        ["index", "build", "--curated", str(tmp_path / "cur"), "--output", str(tmp_path / "i")],
        "no 'embedding' column",
    )
    assert not (tmp_path / "i").exists()


def test_query_or_subset_with_another_model(curated, index_dir: Path, tmp_path: Path, capsys) -> None:
    _one_line_error(
        capsys,
        [
            "index",
            "query",
            "--index",
            str(index_dir),
            "--text",
            "x",
            "--clip-model",
            "ViT-B-32",
            "--clip-pretrained",
            "openai",
        ],
        "built from canvas-tiny-clip/tiny",
    )
    # a curated set whose embeddings came from another model cannot be subset through this index
    other = tmp_path / "other"
    cur, embeddings, records = curated
    write_curated(other, records, embeddings, ("ViT-B-32", "laion2b_s34b_b79k"))
    argv = ["subset", "--curated", str(other), "--index", str(index_dir), "--text", "x", "-k", "3"]
    _one_line_error(capsys, [*argv, "--output", str(tmp_path / "s")], "ViT-B-32", "rebuild the index")
    with pytest.raises(CanvasError, match="different model"):
        from canvas.curation.index import CuratedIndex

        CuratedIndex.load(index_dir).search(np.ones((1, 512), np.float32), 3)


def test_a_pools_precomputed_embeddings_are_queried_with_the_weights_that_made_them(
    curated, tmp_path: Path, capsys
) -> None:
    """A curated pool remembers "precomputed ..." as its weights, which no model loads (the query failed
    with "Pretrained value 'precomputed b32' is not a known tag"). DataComp's are OpenAI CLIP's; for
    clip-retrieval's, --clip-pretrained names them. Here a clip-retrieval-like set made by the tiny CLIP."""
    from canvas.curation.index import CuratedIndex, build_index, query_weights

    _, embeddings, records = curated
    pool = write_curated(
        tmp_path / "pool", records, embeddings, ("canvas-tiny-clip", "precomputed clip-retrieval")
    )
    build_index(pool, tmp_path / "index")
    query = ["index", "query", "--index", str(tmp_path / "index"), "--text", TEXTS[1], "-k", "3"]
    _one_line_error(capsys, query, "made elsewhere (precomputed clip-retrieval)", "--clip_pretrained")
    assert main([*query, "--clip-pretrained", "tiny"]) == 0
    exact = embeddings @ clip_text_embeddings([TEXTS[1]])[0]
    keys = [json.loads(line)["key"] for line in capsys.readouterr().out.splitlines()]
    assert keys == [records[i][0] for i in np.argsort(-exact)[:3]]
    argv = [
        "subset",
        "--curated",
        str(pool),
        "--index",
        str(tmp_path / "index"),
        "--text",
        TEXTS[1],
        "-k",
        "3",
    ]
    assert main([*argv, "--output", str(tmp_path / "s"), "--clip-pretrained", "tiny"]) == 0
    assert pq.read_table(tmp_path / "s" / "subset.parquet")["key"].to_pylist() == keys
    datacomp = CuratedIndex.load(tmp_path / "index").manifest
    datacomp.clip_model, datacomp.clip_pretrained = "ViT-L-14", "precomputed l14"
    assert query_weights(datacomp) == "openai" and query_weights(datacomp, "my_l14.pt") == "my_l14.pt"


def test_empty_subset(curated, index_dir: Path, tmp_path: Path, capsys) -> None:
    argv = ["subset", "--curated", str(curated[0]), "--index", str(index_dir), "--text", TEXTS[0]]
    _one_line_error(
        capsys, [*argv, "--min-score", "0.9999", "--output", str(tmp_path / "s")], "subset is empty"
    )
    assert not (tmp_path / "s" / "subset.parquet").exists()


@pytest.mark.slow
def test_on_real_curation_output(sample_parquet: Path, tmp_path: Path, capsys) -> None:
    """`canvas curate`'s own output (Beam, tiny CLIP) -> index -> image query finds the row -> subset."""
    from canvas.pipelines.curate import run_curation

    report = run_curation([str(sample_parquet)], tmp_path / "cur")
    curated = pq.read_table(tmp_path / "cur" / "curated")
    assert curated.num_rows == report["kept_count"] > 5
    assert (
        main(["index", "build", "--curated", str(tmp_path / "cur"), "--output", str(tmp_path / "idx")]) == 0
    )
    manifest = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert (manifest["clip_model"], manifest["num_rows"]) == (report["clip_model"], curated.num_rows)
    row = curated.slice(3, 1).to_pylist()[0]
    (tmp_path / "q.png").write_bytes(row["image"])
    capsys.readouterr()
    assert (
        main(
            [
                "index",
                "query",
                "--index",
                str(tmp_path / "idx"),
                "--image",
                str(tmp_path / "q.png"),
                "-k",
                "1",
            ]
        )
        == 0
    )
    hit = json.loads(capsys.readouterr().out)
    assert hit["key"] == row["key"] and hit["score"] > 0.99
    argv = ["subset", "--curated", str(tmp_path / "cur"), "--index", str(tmp_path / "idx"), "--text", "a cat"]
    assert main([*argv, "-k", "4", "--output", str(tmp_path / "sub")]) == 0
    subset = pq.read_table(tmp_path / "sub" / "subset.parquet")
    assert subset.num_rows == 4 and subset.schema.equals(curated.schema)
