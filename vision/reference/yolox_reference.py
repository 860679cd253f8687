#!/usr/bin/env python3
"""Reference person boxes for the Rust YOLOX pipeline (vision/tests/reference.rs).

Decodes fixed frames of a clip, writes each as raw BGR (rows packed, no padding) and runs the same
ONNX model with Python onnxruntime, with pre- and post-processing written here independently of the
Rust code: OpenCV's bilinear resize into a top-left letterbox padded with 114, the YOLOX grid
decoding, and OpenCV's NMS. Writes OUT/reference.json:

    {"model": ..., "frames": [{"index": 350, "file": "frame_00350.bgr", "width": 768,
      "height": 432, "boxes": [{"x1": .., "y1": .., "x2": .., "y2": .., "score": ..}]}]}

with boxes normalised to the frame (0..1), best first.

With --frames-dir instead of --video, the frames are not decoded here but read from DIR/frames.json
([{"index": .., "file": "x.bgr", "width": .., "height": ..}], raw BGR files beside it: frames that
GStreamer decoded, as the camera pipeline hands them to the Rust detector). With --time-runs K each
frame's model run is repeated K times and reference.json gains "inference_ms_median" (ONNX Runtime
with one intra-op thread, as the edge agent runs it).
"""

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime

STRIDES = (8, 16, 32)


def letterbox(frame, in_w, in_h):
    h, w = frame.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = int(round(w * scale)), int(round(h * scale))
    canvas = np.full((in_h, in_w, 3), 114, dtype=np.uint8)
    if (new_w, new_h) == (w, h):
        canvas[:h, :w] = frame
    else:
        # Bilinear resampling kept in float so nothing is rounded before the model sees it.
        resized = cv2.resize(frame.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = canvas.astype(np.float32)
        canvas[:new_h, :new_w] = resized
    blob = canvas.astype(np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(blob), scale


def decode(raw, in_w, in_h):
    """Rows of (dx, dy, log w, log h, objectness, classes...) to centre boxes in input pixels."""
    centres, strides = [], []
    for s in STRIDES:
        gw, gh = in_w // s, in_h // s
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        centres.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((gw * gh, 1), s))
    grid = np.concatenate(centres).astype(np.float32)
    stride = np.concatenate(strides).astype(np.float32)
    if raw.shape[0] != grid.shape[0]:
        sys.exit(f"model output has {raw.shape[0]} rows, the grid {grid.shape[0]}")
    xy = (raw[:, 0:2] + grid) * stride
    wh = np.exp(raw[:, 2:4]) * stride
    return xy, wh


def detect(session, frame, threshold, nms_iou, class_id, timings=None, runs=0):
    inp = session.get_inputs()[0]
    _, _, in_h, in_w = inp.shape
    blob, scale = letterbox(frame, in_w, in_h)
    raw = session.run(None, {inp.name: blob})[0][0]
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {inp.name: blob})
        timings.append((time.perf_counter() - t0) * 1000.0)
    xy, wh = decode(raw, in_w, in_h)
    scores = raw[:, 4] * raw[:, 5 + class_id]
    keep = scores >= threshold
    xy, wh, scores = xy[keep], wh[keep], scores[keep]
    rects = [[float(cx - w / 2), float(cy - h / 2), float(w), float(h)] for (cx, cy), (w, h) in zip(xy, wh)]
    chosen = cv2.dnn.NMSBoxes(rects, scores.tolist(), threshold, nms_iou) if rects else []
    fh, fw = frame.shape[:2]
    boxes = []
    for i in np.array(chosen).reshape(-1):
        x, y, w, h = rects[i]
        clip = lambda v, size: min(max(v / scale, 0.0), size) / size
        boxes.append({"x1": clip(x, fw), "y1": clip(y, fh), "x2": clip(x + w, fw), "y2": clip(y + h, fh),
                      "score": float(scores[i])})
    boxes.sort(key=lambda b: -b["score"])
    return boxes


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video")
    p.add_argument("--frames-dir", help="read raw BGR frames listed in DIR/frames.json instead of decoding --video")
    p.add_argument("--time-runs", type=int, default=0, help="time each frame's model run this many times")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", help="with --video: comma-separated frame indices, e.g. 0,140,350")
    p.add_argument("--threshold", type=float, default=0.35)
    p.add_argument("--nms-iou", type=float, default=0.45)
    p.add_argument("--class-id", type=int, default=0)
    a = p.parse_args()

    if bool(a.video) == bool(a.frames_dir) or (a.video and not a.frames):
        p.error("give either --video with --frames, or --frames-dir")
    os.makedirs(a.out, exist_ok=True)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])

    timings = []
    if a.frames_dir:
        with open(os.path.join(a.frames_dir, "frames.json")) as f:
            listed = json.load(f)
        frames = []
        for fr in listed:
            data = np.fromfile(os.path.join(a.frames_dir, fr["file"]), dtype=np.uint8)
            if data.size != fr["width"] * fr["height"] * 3:
                sys.exit(f"{fr['file']}: {data.size} bytes, not {fr['width']}x{fr['height']} BGR")
            frame = data.reshape(fr["height"], fr["width"], 3)
            boxes = detect(session, frame, a.threshold, a.nms_iou, a.class_id, timings, a.time_runs)
            frames.append(dict(fr, boxes=boxes))
        write(a, session, frames, timings)
        return

    wanted = sorted({int(i) for i in a.frames.split(",")})
    # Read every frame in order up to the last wanted one: seeking in an MP4 may land elsewhere.
    cap = cv2.VideoCapture(a.video)
    if not cap.isOpened():
        sys.exit(f"cannot open {a.video}")
    frames, index = [], 0
    while wanted and index <= wanted[-1]:
        ok, frame = cap.read()
        if not ok:
            sys.exit(f"{a.video} ends at frame {index}, before {wanted[-1]}")
        if index in wanted:
            name = f"frame_{index:05d}.bgr"
            with open(os.path.join(a.out, name), "wb") as f:
                f.write(np.ascontiguousarray(frame).tobytes())
            boxes = detect(session, frame, a.threshold, a.nms_iou, a.class_id, timings, a.time_runs)
            frames.append({"index": index, "file": name, "width": frame.shape[1], "height": frame.shape[0],
                           "boxes": boxes})
        index += 1

    write(a, session, frames, timings)


def write(a, session, frames, timings):
    result = {"model": os.path.basename(a.model), "onnxruntime": onnxruntime.__version__, "frames": frames}
    if timings:
        result["inference_ms_median"] = float(np.median(timings))
        result["inference_runs"] = len(timings)
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(result, f, indent=1)
    for fr in frames:
        print(f"frame {fr['index']}: {len(fr['boxes'])} person(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
