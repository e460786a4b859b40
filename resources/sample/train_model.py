"""Train the sample oil-slick segmentation model and export it to ONNX with its metadata.

Run through ``make sample-model`` (``scripts/make_sample_model.sh``), which provides the
training venv ``.venv-train`` (torch 2.13.0 CPU, onnx; never the plugin's ``.venv``)::

    .venv-train/bin/python resources/sample/train_model.py [--out resources/sample/oil_unet.onnx]

The training data are random 256 x 256 crops of synthetic scenes (``scene.py``) drawn
from ``TRAIN_SEEDS`` only; the demo seed ``scene.DEFAULT_SEED`` and the evaluation seeds
``EVAL_SEEDS`` are never used. Everything is seeded, single-process and run with two
threads, so a run reproduces the committed model (up to floating-point differences
between CPUs). See MODEL.md.
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

TRAIN_SEEDS = tuple(range(100_000, 100_080))   # 80 scenes of 1024 x 1024 px
TRAIN_SCENE_SIZE = 1024
EVAL_SEEDS = tuple(range(900_001, 900_009))     # evaluate_model.py; 8 scenes of 2048 x 2048 px
assert scene.DEFAULT_SEED not in TRAIN_SEEDS and scene.DEFAULT_SEED not in EVAL_SEEDS
assert not set(TRAIN_SEEDS) & set(EVAL_SEEDS)

CROP = 256
BATCH = 8
ITERATIONS = 1200
LEARNING_RATE = 3e-3
CHANNELS = (16, 32, 48, 64, 96)
CLASS_WEIGHTS = (1.0, 2.0, 1.5, 4.0)  # sea, oil, lookalike, ship
TORCH_SEED = 7

SCALING = {"type": "minmax", "min": -35.0, "max": 5.0, "clip": True}
NODATA_FILL = {"fill": "mean"}
TILE_SIZE = 512
TILE_OVERLAP = 15
RESOLUTION_CM = 1000


# --------------------------------------------------------------------------- preprocessing
# The same steps as the engine and evaluate_model.py: raw dB -> nodata filled with the mean
# of the valid pixels of the tile -> min-max scaling to [0, 1], clipped -> standardisation.

def fill_nodata(db, valid):
    """Replace invalid pixels by the mean of the valid ones (dB); all-invalid -> -17 dB."""
    out = db.astype(np.float32, copy=True)
    fill = float(out[valid].mean()) if valid.any() else -17.0
    out[~valid] = fill
    return out


def scale(db):
    """Raw dB -> [0, 1] (``SCALING``)."""
    lo, hi = SCALING["min"], SCALING["max"]
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- model

def build_model(torch):
    nn = torch.nn
    F = torch.nn.functional

    def block(cin, cout, dilation=1):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        """U-Net on a stride-2 stem: five levels at 1/2 .. 1/32 of the input resolution.

        The bottleneck uses dilation 2 for context; logits are upsampled bilinearly to the
        input size. Any H, W works (the decoder resizes to each skip's size).
        """

        def __init__(self, channels=CHANNELS, n_classes=4):
            super().__init__()
            ch = channels
            self.stem = nn.Sequential(nn.Conv2d(1, ch[0], 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True))
            self.enc = nn.ModuleList(
                [block(ch[0] if i == 0 else ch[i - 1], c, 2 if i == len(ch) - 1 else 1)
                 for i, c in enumerate(ch)])
            self.dec = nn.ModuleList([block(ch[i + 1] + ch[i], ch[i]) for i in range(len(ch) - 1)])
            self.head = nn.Conv2d(ch[0], n_classes, 1)

        def forward(self, x):
            size = x.shape[-2:]
            x = self.stem(x)
            skips = []
            for i, enc in enumerate(self.enc):
                if i:
                    x = F.max_pool2d(x, 2)
                x = enc(x)
                skips.append(x)
            for i in reversed(range(len(self.dec))):
                x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
                x = self.dec[i](torch.cat([x, skips[i]], 1))
            return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)

    class WithSoftmax(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    return UNet, WithSoftmax


# --------------------------------------------------------------------------- data

def make_pool():
    """Generate the training scenes; returns lists of dB arrays, class arrays, sampling points."""
    images, labels, points = [], [], []
    t0 = time.time()
    for k, seed in enumerate(TRAIN_SEEDS):
        s = scene.generate_scene(seed, TRAIN_SCENE_SIZE)
        images.append(s["sigma0_db"])
        labels.append(s["classes"])
        pts = {}
        for c in (1, 2, 3):
            rr, cc = np.nonzero(s["classes"] == c)
            step = max(1, len(rr) // 2000)
            pts[c] = np.c_[rr[::step], cc[::step]]
        points.append(pts)
        if (k + 1) % 10 == 0:
            print(f"  scenes {k + 1}/{len(TRAIN_SEEDS)}  ({time.time() - t0:.0f} s)", flush=True)
    return images, labels, points


def sample_batch(rng, images, labels, points, mean, std):
    """A batch of augmented, preprocessed crops: x (B,1,C,C) float32, y (B,C,C) int64 (255
    ignored)."""
    xs, ys = [], []
    size = images[0].shape[0]
    for _ in range(BATCH):
        i = int(rng.integers(len(images)))
        u = rng.random()
        target = 1 if u < 0.55 else 2 if u < 0.70 else 3 if u < 0.78 else 0
        pts = points[i].get(target, np.empty((0, 2)))
        if target and len(pts):
            r, c = pts[rng.integers(len(pts))] + rng.integers(-CROP // 2 + 16, CROP // 2 - 16, 2)
        else:
            r, c = rng.integers(CROP // 2, size - CROP // 2, 2)
        r0 = int(np.clip(r - CROP // 2, 0, size - CROP))
        c0 = int(np.clip(c - CROP // 2, 0, size - CROP))
        db = images[i][r0:r0 + CROP, c0:c0 + CROP]
        y = labels[i][r0:r0 + CROP, c0:c0 + CROP]
        valid = y != scene.NODATA_CLASS
        db = fill_nodata(db, valid)
        db = db + np.float32(rng.normal(0.0, 0.7))  # calibration / incidence-angle offset
        x = (scale(db) - mean) / std
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs)[:, None], np.stack(ys).astype(np.int64)


# --------------------------------------------------------------------------- export

def export(torch, model, path, mean, std):
    import onnx

    _, WithSoftmax = build_model(torch)
    wrapped = WithSoftmax(model).eval()
    dummy = torch.zeros(1, 1, TILE_SIZE, TILE_SIZE)
    tmp = path + ".tmp"
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(wrapped, (dummy,), tmp, opset_version=17, input_names=["input"],
                      output_names=["probabilities"],
                      dynamic_axes={"input": axes, "probabilities": axes}, dynamo=False)
    m = onnx.load(tmp)
    meta = {
        "model_type": "Segmentor",
        "class_names": json.dumps({str(k): v for k, v in scene.CLASS_NAMES.items()}),
        "resolution": str(RESOLUTION_CM),
        "tiles_size": str(TILE_SIZE),
        "tiles_overlap": str(TILE_OVERLAP),
        "standardization_mean": json.dumps([mean]),
        "standardization_std": json.dumps([std]),
        "seg_explainer_input_scaling": json.dumps(SCALING),
        "seg_explainer_input_layout": "NCHW",
        "seg_explainer_output_activation": "none",
        "seg_explainer_input_nodata": json.dumps(NODATA_FILL),
        "seg_explainer_training": json.dumps({
            "generator": "seg_explainer.resources.sample.scene", "train_seeds":
            [TRAIN_SEEDS[0], TRAIN_SEEDS[-1]], "scene_size": TRAIN_SCENE_SIZE}),
    }
    del m.metadata_props[:]
    for key, value in meta.items():
        prop = m.metadata_props.add()
        prop.key, prop.value = key, value
    m.producer_name = "seg_explainer train_model.py"
    m.doc_string = "Sample oil-slick segmentation U-Net on synthetic Sentinel-1 VV sigma0 (dB)."
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(HERE, "oil_unet.onnx"))
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(TORCH_SEED)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rng = np.random.default_rng(TORCH_SEED)
    t_start = time.time()

    print(f"generating {len(TRAIN_SEEDS)} training scenes of {TRAIN_SCENE_SIZE} px", flush=True)
    images, labels, points = make_pool()
    vals = np.concatenate([scale(im[lb != scene.NODATA_CLASS]) for im, lb in zip(images, labels)])
    mean, std = round(float(vals.mean()), 3), round(float(vals.std()), 3)
    del vals
    print(f"standardisation of scaled values: mean {mean}, std {std}", flush=True)

    UNet, _ = build_model(torch)
    model = UNet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: U-Net {CHANNELS}, {n_params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE,
                                                total_steps=args.iterations, pct_start=0.1)
    weights = torch.tensor(CLASS_WEIGHTS)
    model.train()
    t0, run = time.time(), []
    for it in range(1, args.iterations + 1):
        xb, yb = sample_batch(rng, images, labels, points, mean, std)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        logits = model(x)
        ce = F.cross_entropy(logits, y, weight=weights, ignore_index=scene.NODATA_CLASS)
        prob = torch.softmax(logits, 1)
        valid = (y != scene.NODATA_CLASS).unsqueeze(1).float()
        onehot = F.one_hot(torch.where(y == scene.NODATA_CLASS, 0, y), 4)
        onehot = onehot.permute(0, 3, 1, 2).float()
        inter = (prob * onehot * valid).sum((0, 2, 3))
        denom = ((prob + onehot) * valid).sum((0, 2, 3))
        dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
        loss = ce + dice[1:3].mean()  # soft Dice on oil and lookalike
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append(loss.item())
        if it % 50 == 0 or it == args.iterations:
            el = time.time() - t0
            print(f"  it {it:5d}/{args.iterations}  loss {np.mean(run[-50:]):.4f}  "
                  f"dice(oil) {1 - dice[1].item():.3f}  {el:.0f} s, "
                  f"eta {el / it * (args.iterations - it):.0f} s",
                  flush=True)
    model.eval()
    export(torch, model, args.out, mean, std)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, {n_params} parameters); "
          f"total time {(time.time() - t_start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
