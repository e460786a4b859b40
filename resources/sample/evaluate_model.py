"""Measure the sample model on held-out synthetic scenes: per-class IoU and time per tile.

Uses onnxruntime only (no torch) and the preprocessing the model's metadata describes:
nodata filled with the mean of the tile's valid pixels, raw dB -> min-max scaling to [0, 1]
(clipped) -> standardisation. Scenes are processed in ``tiles_size`` tiles with
``tiles_overlap`` percent overlap, overlapping probabilities averaged, argmax taken, and
IoU counted over valid pixels of all scenes together::

    .venv/bin/python resources/sample/evaluate_model.py [--model resources/sample/oil_unet.onnx]

The evaluation seeds (``EVAL_SEEDS``, 2048 x 2048 px scenes) are never used in training
and differ from the demo seed.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if __package__:
    from . import scene
else:  # run as a script: the generator sits beside this file
    sys.path.insert(0, HERE)
    import scene

EVAL_SEEDS = tuple(range(900_001, 900_009))
EVAL_SIZE = 2048


def load(model_path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    return sess, meta


def preprocess(db, valid, meta):
    """Raw dB tile (H, W) -> standardised float32 (H, W), as the metadata says."""
    x = db.astype(np.float32, copy=True)
    if json.loads(meta.get("seg_explainer_input_nodata", '{"fill": "mean"}'))["fill"] == "mean":
        x[~valid] = x[valid].mean() if valid.any() else -17.0
    sc = json.loads(meta["seg_explainer_input_scaling"])
    if sc["type"] == "minmax":
        x = (x - sc["min"]) / (sc["max"] - sc["min"])
        if sc.get("clip", False):
            x = np.clip(x, 0.0, 1.0)
    elif sc["type"] == "divide":
        x = x / sc["divisor"]
    mean = json.loads(meta["standardization_mean"])[0]
    std = json.loads(meta["standardization_std"])[0]
    return ((x - mean) / std).astype(np.float32)


def tile_starts(n, tile, stride):
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, stride))
    return starts + [n - tile]


def predict(sess, meta, db, valid):
    """Class probabilities (4, H, W) of a scene, tiled with overlap and averaged."""
    tile = int(meta["tiles_size"])
    stride = int(round(tile * (1 - int(meta["tiles_overlap"]) / 100.0)))
    h, w = db.shape
    acc = np.zeros((4, h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    name = sess.get_inputs()[0].name
    for r in tile_starts(h, tile, stride):
        for c in tile_starts(w, tile, stride):
            x = preprocess(db[r:r + tile, c:c + tile], valid[r:r + tile, c:c + tile], meta)
            p = sess.run(None, {name: x[None, None]})[0][0]
            acc[:, r:r + tile, c:c + tile] += p
            cnt[r:r + tile, c:c + tile] += 1
    return acc / cnt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(HERE, "oil_unet.onnx"))
    args = parser.parse_args(argv)
    sess, meta = load(args.model)
    names = {int(k): v for k, v in json.loads(meta["class_names"]).items()}
    n = len(names)
    conf = np.zeros((n, n), np.int64)  # rows truth, columns prediction
    t0 = time.time()
    for seed in EVAL_SEEDS:
        s = scene.generate_scene(seed, EVAL_SIZE)
        valid = s["valid"]
        pred = predict(sess, meta, s["sigma0_db"], valid).argmax(0)
        truth = s["classes"][valid].astype(np.int64)
        conf += np.bincount(truth * n + pred[valid], minlength=n * n).reshape(n, n)
        print(f"  seed {seed}: done ({time.time() - t0:.0f} s)", flush=True)

    # Inference time of one 512 x 512 tile (batch 1), median of 20 runs after 3 warm-ups.
    tile = int(meta["tiles_size"])
    x = np.random.default_rng(0).normal(0, 1, (1, 1, tile, tile)).astype(np.float32)
    name = sess.get_inputs()[0].name
    times = []
    for i in range(23):
        t = time.perf_counter()
        sess.run(None, {name: x})
        if i >= 3:
            times.append(time.perf_counter() - t)

    print(f"\nheld-out seeds {EVAL_SEEDS[0]}..{EVAL_SEEDS[-1]} ({len(EVAL_SEEDS)} scenes of "
          f"{EVAL_SIZE} x {EVAL_SIZE} px, tiles {tile} px, overlap {meta['tiles_overlap']} %)")
    print(f"{'class':<10} {'IoU':>6} {'precision':>10} {'recall':>7} {'pixels':>10}")
    for k in range(n):
        tp = conf[k, k]
        fp = conf[:, k].sum() - tp
        fn = conf[k, :].sum() - tp
        iou = tp / max(tp + fp + fn, 1)
        prec = tp / max(tp + fp, 1)
        rec = tp / max(tp + fn, 1)
        print(f"{names[k]:<10} {iou:6.3f} {prec:10.3f} {rec:7.3f} {conf[k].sum():10d}")
    ious = [conf[k, k] / max(conf[:, k].sum() + conf[k, :].sum() - conf[k, k], 1) for k in range(n)]
    print(f"{'mean':<10} {np.mean(ious):6.3f}")
    print(f"\ninference per {tile} x {tile} tile (batch 1, onnxruntime CPU, 2 threads): "
          f"median {np.median(times) * 1000:.0f} ms, min {np.min(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
