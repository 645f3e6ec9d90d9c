"""Turn a photo into a model input (.npy) for `tinyengine run --input`.

    python examples/image_to_npy.py MODEL.tflite [IMAGE] OUT.npy

The image is resized (area average) to the model's input height and width and
quantized with the input's own scale and zero point (pixels mapped to [0, 1]).
Without IMAGE, scikit-learn's bundled sample photo 'china.jpg' is used.
"""
import sys

import numpy as np

from tinyengine import load_model


def load_image(path):
    if path is None:
        from sklearn.datasets import load_sample_image
        return load_sample_image("china.jpg")
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = np.linspace(0, img.shape[0], h + 1).astype(int)
    xs = np.linspace(0, img.shape[1], w + 1).astype(int)
    out = np.empty((h, w, img.shape[2]), np.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = img[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].reshape(-1, img.shape[2]).mean(0)
    return out


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    model, out = argv[0], argv[-1]
    image = argv[1] if len(argv) == 3 else None
    graph = load_model(model)
    t = graph.tensors[graph.inputs[0]]
    _, h, w, c = t.shape
    x = resize(load_image(image), h, w)[..., :c] / 255.0
    if t.dtype == "float32":
        arr = x.astype(np.float32)
    else:
        q = t.quant
        info = np.iinfo(t.np_dtype)
        arr = np.clip(np.round(x / q.s) + q.zp, info.min, info.max).astype(t.np_dtype)
    np.save(out, arr.reshape(t.shape))
    print(f"{out}: {'sample photo china.jpg' if image is None else image} as {t.dtype}{list(t.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
