"""pHash distances of real photos (canvas.core.sample_data.PHOTOS) to their border crops, whole-image hash vs
a hash of the central 80% of each image, and between distinct photos (issue 17, item 2: measured, not
adopted). `crop X%`: X% of each dimension removed, half on each side; not resized back."""

import io
import itertools
from importlib import resources

import numpy as np
from PIL import Image

from canvas.core.sample_data import PHOTOS
from canvas.curation.hashing import hamming, phash


def centre(img, f=0.8):
    w, h = img.size
    dx, dy = int(w * (1 - f) / 2), int(h * (1 - f) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


imgs = {
    n: Image.open(io.BytesIO(resources.files(p).joinpath(q).read_bytes())).convert("RGB")
    for p, q, n, _ in PHOTOS
}
for frac in (0.025, 0.05, 0.10):
    full = []
    cen = []
    best = []
    for img in imgs.values():
        w, h = img.size
        dx, dy = int(w * frac / 2), int(h * frac / 2)  # frac of each dimension, half off each side
        c = img.crop((dx, dy, w - dx, h - dy))
        a = hamming(phash(img), phash(c))
        b = hamming(phash(centre(img)), phash(centre(c)))
        full.append(a)
        cen.append(b)
        best.append(min(a, b))
    print(
        f"crop {frac * 100:.1f}%: full mean {np.mean(full):.1f} max {max(full)} | centre80 mean {np.mean(cen):.1f} max {max(cen)} | min(full,centre) max {max(best)}"
    )
names = list(imgs)
df = [hamming(phash(imgs[a]), phash(imgs[b])) for a, b in itertools.combinations(names, 2)]
dc = [hamming(phash(centre(imgs[a])), phash(centre(imgs[b]))) for a, b in itertools.combinations(names, 2)]
print(
    "distinct: full min", min(df), "median", np.median(df), "| centre80 min", min(dc), "median", np.median(dc)
)
