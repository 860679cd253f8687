#!/usr/bin/env python3
"""Trains the shipped anomaly forecaster (models/anomaly/forecaster.onnx) on synthetic data.

The model reads a window of W per-window-normalised values of one series and forecasts the next
normalised value. The Rust detector (analytics/src/anomaly.rs) turns |forecast - actual| into an
anomaly likelihood. See MODEL_CARD.md for the exact contract.

Everything comes from SEED: the synthetic corpus, the initial weights, the minibatch order. Numpy's
BLAS and ONNX Runtime run on one thread, so two runs on the same machine write byte-identical
files. Never reads any benchmark data: the training and validation series are all generated here.

Usage: python train.py [--out DIR]   (`make models` runs it in models/.venv)
"""

import os

# One BLAS / OpenMP thread before numpy is imported: a multithreaded BLAS may sum in a different
# order from run to run, and the weights would then differ in their last bits.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# --- The contract (mirrored in model.json and MODEL_CARD.md) --------------------------------------
NAME = "offsite-anomaly-forecaster"
VERSION = "1"
SEED = 20260501
W = 64                      # values per window (model input width)
HIDDEN = (64, 32)           # hidden layer widths, ReLU
FLOOR = 1e-6                # scale = max(std, FLOOR * max(|mean|, 1))
Z_CLIP = 10.0               # training targets are clipped to [-Z_CLIP, Z_CLIP]; Rust caps errors at 10
OPSET = 17
IR_VERSION = 8
INPUT_NAME, OUTPUT_NAME = "x", "y"

# --- Corpus and training sizes ----------------------------------------------------------------------
N_TRAIN_SERIES = 6000
TRAIN_LEN = 1400
WINDOWS_PER_SERIES = 200
N_VAL_SERIES = 400
VAL_LEN = 2400
EPOCHS = 20
BATCH = 256
LR_MAX = 2e-3
LR_MIN = 2e-5
WEIGHT_DECAY = 1e-5


def log(msg):
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ==================================================================================================
# Normalisation: exactly what the Rust side does, in f64, then cast to f32 for the model.
# ==================================================================================================

def normalise(windows, nxt=None):
    """windows: float64 [N, W]. Returns (x float32 [N, W], mean [N], scale [N], z_next or None).

    mean  = sum(w) / W
    std   = sqrt(sum((w - mean)^2) / W)            (population std, two-pass)
    scale = max(std, FLOOR * max(|mean|, 1))
    x     = float32((w - mean) / scale)
    z_next = (next - mean) / scale                  (the target; clipped to +-Z_CLIP for training)
    """
    mean = windows.sum(axis=1) / windows.shape[1]
    dev = windows - mean[:, None]
    std = np.sqrt((dev * dev).sum(axis=1) / windows.shape[1])
    scale = np.maximum(std, FLOOR * np.maximum(np.abs(mean), 1.0))
    x = (dev / scale[:, None]).astype(np.float32)
    z = None if nxt is None else (nxt - mean) / scale
    return x, mean, scale, z


# ==================================================================================================
# Synthetic normal behaviour
# ==================================================================================================

# Samples per day / per week at common sampling intervals (1 min, 5 min, 10 min, 15 min, 1 h, ...).
DAILY_PERIODS = [1440, 288, 144, 96, 48, 24]


def ar_noise(rng, n, sd=1.0):
    """AR(1) or AR(2) noise with random stable coefficients, unit-ish innovation scale."""
    e = rng.standard_normal(n) * sd
    if rng.random() < 0.15:  # heavy tails now and then
        e = rng.standard_t(df=3, size=n) * sd * 0.6
    out = np.empty(n)
    if rng.random() < 0.6:
        phi = rng.uniform(-0.5, 0.97)
        prev = 0.0
        for i in range(n):
            prev = phi * prev + e[i]
            out[i] = prev
    else:
        # AR(2) from two real or complex roots inside the unit circle.
        if rng.random() < 0.5:
            r1, r2 = rng.uniform(-0.6, 0.95, size=2)
            a1, a2 = r1 + r2, -r1 * r2
        else:
            rad, ang = rng.uniform(0.5, 0.95), rng.uniform(0.1, np.pi - 0.1)
            a1, a2 = 2 * rad * np.cos(ang), -rad * rad
        p1 = p2 = 0.0
        for i in range(n):
            v = a1 * p1 + a2 * p2 + e[i]
            out[i] = v
            p2, p1 = p1, v
    return out


def envelope(rng, n):
    """A slowly varying positive multiplier (heteroscedastic noise)."""
    k = rng.integers(1, 4)
    t = np.arange(n)
    env = np.ones(n)
    for _ in range(k):
        env += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * t / rng.uniform(100, 3000) + rng.uniform(0, 6.3))
    return np.maximum(env, 0.1)


def daily_profile(rng, t, period):
    """One day's shape: a few harmonics, or a business-hours plateau."""
    phase = 2 * np.pi * t / period
    if rng.random() < 0.3:
        start, length = rng.uniform(0, 1), rng.uniform(0.25, 0.6)
        frac = ((t / period) - start) % 1.0
        sharp = rng.uniform(20, 200)
        up = 1 / (1 + np.exp(-sharp * frac)) - 0.5
        down = 1 / (1 + np.exp(-sharp * (frac - length)))
        return 2 * (up - down + 0.5) - 1
    out = np.zeros_like(t, dtype=float)
    for h in range(1, rng.integers(1, 4) + 1):
        out += rng.uniform(0.2, 1.0) / h * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    return out


def gen_seasonal(rng, n):
    period = int(rng.choice(DAILY_PERIODS)) if rng.random() < 0.8 else int(rng.integers(8, 600))
    t = np.arange(n) + rng.integers(0, 7 * period)
    y = daily_profile(rng, t, period)
    if rng.random() < 0.5:  # weekly modulation (weekends lower)
        week = 7 * period
        day = (t // period) % 7
        weekend = (day >= 5).astype(float)
        y = y * (1 - rng.uniform(0.2, 0.8) * weekend) + rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / week)
    noise_sd = rng.uniform(0.02, 0.6)
    noise = ar_noise(rng, n, noise_sd)
    if rng.random() < 0.4:
        noise *= envelope(rng, n)
    if rng.random() < 0.3:
        noise *= 0.5 + np.abs(y)  # noise grows with the level
    return y + noise


def gen_random_walk(rng, n):
    steps = rng.standard_normal(n) if rng.random() < 0.7 else rng.standard_t(df=3, size=n)
    if rng.random() < 0.3:
        steps = steps + rng.uniform(-0.1, 0.1)  # drift
    y = np.cumsum(steps)
    if rng.random() < 0.5:
        y += rng.standard_normal(n) * rng.uniform(0.1, 2.0)
    return y


def gen_ar(rng, n):
    y = ar_noise(rng, n)
    if rng.random() < 0.4:
        y *= envelope(rng, n)
    return y


def gen_trend(rng, n):
    t = np.arange(n)
    knots = np.sort(rng.integers(0, n, size=rng.integers(0, 4)))
    slope = rng.uniform(-0.02, 0.02)
    y = slope * t
    for k in knots:
        y += rng.uniform(-0.02, 0.02) * np.maximum(t - k, 0)
    return y + ar_noise(rng, n, rng.uniform(0.1, 1.0))


def gen_square(rng, n):
    """On/off equipment: regular square wave or a random telegraph process."""
    if rng.random() < 0.5:
        period = rng.integers(6, 400)
        duty = rng.uniform(0.1, 0.9)
        t = np.arange(n) + rng.integers(0, period)
        state = ((t % period) < duty * period).astype(float)
    else:
        p_on, p_off = rng.uniform(0.002, 0.1), rng.uniform(0.002, 0.1)
        state = np.empty(n)
        s = float(rng.random() < 0.5)
        u = rng.random(n)
        for i in range(n):
            if s == 1.0 and u[i] < p_off:
                s = 0.0
            elif s == 0.0 and u[i] < p_on:
                s = 1.0
            state[i] = s
    return state + rng.standard_normal(n) * rng.uniform(0.0, 0.15)


def gen_counts(rng, n):
    """Sparse, spiky count-like series (tweets, requests, errors)."""
    t = np.arange(n)
    period = int(rng.choice(DAILY_PERIODS))
    base = np.exp(rng.uniform(-3, 3))
    rate = base * np.exp(rng.uniform(0, 1.2) * np.sin(2 * np.pi * (t + rng.integers(0, period)) / period))
    if rng.random() < 0.5:  # bursts
        burst = np.zeros(n)
        for s in rng.integers(0, n, size=rng.integers(1, 8)):
            length = rng.integers(1, 30)
            burst[s:s + length] += base * rng.uniform(2, 20)
        rate = rate + burst
    return rng.poisson(rate).astype(float)


def gen_sawtooth(rng, n):
    """Fill and drain: disk or queue that grows then is emptied at random times."""
    y = np.empty(n)
    level = rng.uniform(0, 1)
    grow = rng.uniform(0.001, 0.05)
    p_reset = rng.uniform(0.002, 0.03)
    u = rng.random(n)
    g = rng.standard_normal(n)
    for i in range(n):
        level += grow * (1 + 0.5 * g[i])
        if u[i] < p_reset:
            level = rng.uniform(0, 0.3)
        y[i] = level
    return y + rng.standard_normal(n) * rng.uniform(0, 0.02)


def gen_steps(rng, n):
    """Piecewise-constant levels (set points) with noise."""
    y = np.empty(n)
    level = 0.0
    p = rng.uniform(0.001, 0.02)
    u = rng.random(n)
    for i in range(n):
        if u[i] < p:
            level += rng.standard_normal() * rng.uniform(1, 5)
        y[i] = level
    return y + ar_noise(rng, n, rng.uniform(0.05, 0.5))


FAMILIES = [
    (gen_seasonal, 0.30),
    (gen_random_walk, 0.12),
    (gen_ar, 0.12),
    (gen_trend, 0.08),
    (gen_square, 0.10),
    (gen_counts, 0.12),
    (gen_sawtooth, 0.06),
    (gen_steps, 0.10),
]


def gen_normal(rng, n):
    """One series of normal behaviour: a family, optionally mixed and post-processed."""
    fams, weights = zip(*FAMILIES)
    weights = np.array(weights) / sum(weights)
    y = fams[rng.choice(len(fams), p=weights)](rng, n)
    if rng.random() < 0.25:  # a second component mixed in
        other = fams[rng.choice(len(fams), p=weights)](rng, n)
        y = y + rng.uniform(0.1, 0.7) * other * (np.std(y) + 1e-9) / (np.std(other) + 1e-9)
    sd = np.std(np.diff(y)) + np.std(y) * 0.05 + 1e-9
    if rng.random() < 0.25:  # level shifts that persist: the model must adapt to them
        for s in rng.integers(0, n, size=rng.integers(1, 4)):
            y[s:] += rng.choice([-1, 1]) * rng.uniform(1, 8) * sd
    if rng.random() < 0.08:  # flat segments (a sensor holding its last value, a stopped process)
        for s in rng.integers(1, n, size=rng.integers(1, 3)):
            y[s:s + rng.integers(10, 150)] = y[s - 1]
    if rng.random() < 0.10:  # saturation (100 % CPU, a full tank)
        hi = np.quantile(y, rng.uniform(0.8, 0.97))
        y = np.minimum(y, hi)
    if rng.random() < 0.05:
        lo = np.quantile(y, rng.uniform(0.03, 0.2))
        y = np.maximum(y, lo)
    # Physical units: an arbitrary scale and offset. Offsets stay below what the window's std floor
    # would swallow, as with real sensors.
    scale = 10 ** rng.uniform(-2, 4)
    offset = rng.uniform(-1, 1) * 10 ** rng.uniform(-1, 2) * scale * (rng.random() < 0.6)
    y = y * scale + offset
    if rng.random() < 0.20:  # quantised readings
        q = np.std(np.diff(y)) * rng.uniform(0.1, 1.5) + 1e-12
        y = np.round(y / q) * q
    return y


# ==================================================================================================
# Validation series with injected anomalies
# ==================================================================================================

ANOMALY_TYPES = ["spike", "level_shift", "drift", "variance", "flatline"]


def inject(rng, y):
    """Injects 1..3 anomalies at random places; returns (series, label per point: -1 normal, else type)."""
    y = y.copy()
    n = len(y)
    labels = np.full(n, -1, dtype=np.int64)
    k = rng.integers(1, 4)
    # Non-overlapping slots well after the first window.
    slots = np.linspace(3 * W, n - 250, k + 1).astype(int)
    for j in range(k):
        t = int(rng.integers(slots[j], max(slots[j] + 1, slots[j + 1] - 250)))
        win = y[t - W:t]
        sd_win = np.std(win) + 1e-12
        sd_inno = np.std(np.diff(win)) / np.sqrt(2) + 1e-12
        kind = int(rng.integers(len(ANOMALY_TYPES)))
        name = ANOMALY_TYPES[kind]
        sign = rng.choice([-1.0, 1.0])
        if name == "spike":
            length = int(rng.integers(1, 4))
            y[t:t + length] += sign * rng.uniform(3, 8) * sd_win
            labels[t:t + length] = kind
        elif name == "level_shift":
            y[t:] += sign * rng.uniform(2, 6) * sd_win
            labels[t:t + 3] = kind
        elif name == "drift":
            length = int(rng.integers(50, 200))
            ramp = np.minimum(np.arange(n - t), length) / length
            y[t:] += sign * rng.uniform(2, 6) * sd_win * ramp
            labels[t:t + length] = kind
        elif name == "variance":
            length = int(rng.integers(50, 200))
            y[t:t + length] += rng.standard_normal(length) * rng.uniform(3, 6) * max(sd_inno, 0.1 * sd_win)
            labels[t:t + length] = kind
        else:  # flatline
            length = int(rng.integers(30, 200))
            y[t:t + length] = y[t - 1]
            labels[t:t + length] = kind
    return y, labels


# ==================================================================================================
# Data sets
# ==================================================================================================

def make_training_set(rng):
    xs, zs = [], []
    for s in range(N_TRAIN_SERIES):
        y = gen_normal(rng, TRAIN_LEN)
        pos = rng.integers(W, TRAIN_LEN, size=WINDOWS_PER_SERIES)
        idx = pos[:, None] + np.arange(-W, 0)[None, :]
        x, _, _, z = normalise(y[idx], y[pos])
        xs.append(x)
        zs.append(np.clip(z, -Z_CLIP, Z_CLIP))
        if (s + 1) % 1000 == 0:
            log(f"  generated {s + 1}/{N_TRAIN_SERIES} training series")
    return np.concatenate(xs), np.concatenate(zs)


def make_validation_set(rng):
    """All windows of each validation series, with the next value's label and series id."""
    xs, zs, labels, sid = [], [], [], []
    for s in range(N_VAL_SERIES):
        y, lab = inject(rng, gen_normal(rng, VAL_LEN))
        pos = np.arange(W, VAL_LEN)
        idx = pos[:, None] + np.arange(-W, 0)[None, :]
        x, _, _, z = normalise(y[idx], y[pos])
        xs.append(x)
        zs.append(z)
        labels.append(lab[pos])
        sid.append(np.full(len(pos), s))
    return np.concatenate(xs), np.concatenate(zs), np.concatenate(labels), np.concatenate(sid)


# ==================================================================================================
# The MLP: numpy, float64, Adam
# ==================================================================================================

def init_params(rng):
    sizes = (W,) + HIDDEN + (1,)
    params = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        std = np.sqrt(2.0 / a) if i < len(sizes) - 2 else np.sqrt(1.0 / a)
        params.append(rng.standard_normal((a, b)) * std)
        params.append(np.zeros(b))
    return params


def forward(params, x):
    acts = [x]
    h = x
    n_layers = len(params) // 2
    for i in range(n_layers):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n_layers - 1:
            h = np.maximum(h, 0.0)
        acts.append(h)
    return acts


def train(rng, x, z, x_hold, z_hold):
    params = init_params(rng)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = len(x)
    steps_per_epoch = n // BATCH
    total = EPOCHS * steps_per_epoch
    step = 0
    n_layers = len(params) // 2
    for epoch in range(EPOCHS):
        perm = rng.permutation(n)
        t0 = time.time()
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * BATCH:(b + 1) * BATCH]
            xb = x[idx].astype(np.float64)
            zb = z[idx]
            acts = forward(params, xb)
            pred = acts[-1][:, 0]
            diff = pred - zb
            loss_sum += float(np.mean(diff * diff))
            # Backward pass of the mean squared error.
            g = (2.0 / len(idx)) * diff[:, None]
            grads = [None] * len(params)
            for i in reversed(range(n_layers)):
                grads[2 * i] = acts[i].T @ g + WEIGHT_DECAY * params[2 * i]
                grads[2 * i + 1] = g.sum(axis=0)
                if i > 0:
                    g = (g @ params[2 * i].T) * (acts[i] > 0)
            step += 1
            lr = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + np.cos(np.pi * step / total))
            for k, p in enumerate(params):
                m[k] = b1 * m[k] + (1 - b1) * grads[k]
                v[k] = b2 * v[k] + (1 - b2) * grads[k] * grads[k]
                mh = m[k] / (1 - b1 ** step)
                vh = v[k] / (1 - b2 ** step)
                p -= lr * mh / (np.sqrt(vh) + eps)
        hold = forward(params, x_hold.astype(np.float64))[-1][:, 0]
        hold_mse = float(np.mean((hold - z_hold) ** 2))
        log(f"  epoch {epoch + 1:2d}/{EPOCHS}: train mse {loss_sum / steps_per_epoch:.4f}, "
            f"held-out mse {hold_mse:.4f} ({time.time() - t0:.1f} s)")
    # Weights of dead ReLU units decay towards 0 and end as tiny numbers whose sign depends on the
    # last bits of the arithmetic; flush them to +0.0 so the file does not depend on those bits.
    return [(np.where(np.abs(p) < 1e-30, 0.0, p) + 0.0).astype(np.float32) for p in params]


# ==================================================================================================
# ONNX export
# ==================================================================================================

def export_onnx(params, path):
    n_layers = len(params) // 2
    inits, nodes = [], []
    cur = INPUT_NAME
    for i in range(n_layers):
        wn, bn = f"dense{i}.weight", f"dense{i}.bias"
        inits.append(numpy_helper.from_array(params[2 * i], wn))
        inits.append(numpy_helper.from_array(params[2 * i + 1], bn))
        last = i == n_layers - 1
        out = OUTPUT_NAME if last else f"dense{i}.out"
        nodes.append(helper.make_node("Gemm", [cur, wn, bn], [out], name=f"dense{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"relu{i}.out"], name=f"relu{i}"))
            cur = f"relu{i}.out"
    graph = helper.make_graph(
        nodes,
        "forecaster",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", W])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", 1])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="offsite models/anomaly/train.py",
        producer_version=VERSION,
        doc_string=(f"Next-step forecaster: x = {W} window values normalised by the window's mean and "
                    f"population std (std floored at {FLOOR:g}*max(|mean|,1)); y = forecast of the "
                    "next value in the same normalised units."),
    )
    model.ir_version = IR_VERSION
    model.model_version = int(VERSION)
    helper.set_model_props(model, {"name": NAME, "version": VERSION, "window": str(W)})
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_predict(sess, x, chunk=65536):
    out = [sess.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + chunk]})[0] for i in range(0, len(x), chunk)]
    return np.concatenate(out)[:, 0]


# ==================================================================================================
# Metrics
# ==================================================================================================

def roc_auc(scores, positive):
    """ROC AUC by the rank-sum (Mann-Whitney) statistic, ties given their mean rank."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    uniq, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)                       # 1-based rank of each distinct value's last copy
    mean_rank = last_rank - (counts - 1) / 2.0          # mean rank of its copies
    r = mean_rank[inv]
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def causal_mean(score, sid, n):
    """Mean of the last n scores of the same series, the current one included (Rust's short window)."""
    out = np.empty_like(score)
    for s in np.unique(sid):
        idx = np.where(sid == s)[0]
        c = np.concatenate([[0.0], np.cumsum(score[idx])])
        k = np.arange(1, len(idx) + 1)
        lo = np.maximum(k - n, 0)
        out[idx] = (c[k] - c[lo]) / (k - lo)
    return out


def auc_by_type(score, labels, keep=None):
    if keep is not None:
        score, labels = score[keep], labels[keep]
    normal = labels < 0
    r = {"all": round(roc_auc(score, ~normal), 4)}
    for k, t in enumerate(ANOMALY_TYPES):
        sel = normal | (labels == k)
        r[t] = round(roc_auc(score[sel], labels[sel] == k), 4)
    return r


def evaluate(pred, z, labels, sid, window_last):
    """How well |error| (capped at Z_CLIP, as in Rust) separates anomalous from normal points.

    Three views, each as ROC AUC (anomalies of one type against all normal points):
      points: every labelled point of an anomaly;
      onsets: only the first point of each anomaly (a forecaster sees the onset; it then adapts);
      mean10: the error averaged over the last 10 points of the series (Rust's short window).
    The same for two trivial forecasters: the last value (Rust's fallback) and the window mean (0).
    """
    prev_lab = np.concatenate([[-1], labels[:-1]])
    prev_sid = np.concatenate([[-1], sid[:-1]])
    is_onset = (labels >= 0) & ((prev_lab != labels) | (prev_sid != sid))
    keep_onset = is_onset | (labels < 0)
    scores = {
        "model": np.minimum(np.abs(z - pred), Z_CLIP),
        "last_value": np.minimum(np.abs(z - window_last), Z_CLIP),
        "window_mean": np.minimum(np.abs(z), Z_CLIP),
    }
    res = {}
    for name, score in scores.items():
        res[name] = {
            "points": auc_by_type(score, labels),
            "onsets": auc_by_type(score, labels, keep_onset),
            "mean10": auc_by_type(causal_mean(score, sid, 10), labels),
        }
    # Event recall at a global threshold giving 1 % false positives on normal points.
    err = scores["model"]
    normal = labels < 0
    thr = float(np.quantile(err[normal], 0.99))
    events = {}
    for k, t in enumerate(ANOMALY_TYPES):
        ev = is_onset & (labels == k)
        hit = 0
        for i in np.where(ev)[0]:
            j = i
            while j < len(labels) and labels[j] == k and sid[j] == sid[i]:
                j += 1
            hit += bool(err[i:j].max() > thr)
        events[t] = {"events": int(ev.sum()), "detected": hit}
    return res, thr, events


# ==================================================================================================

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="directory for forecaster.onnx, model.json and reference.json")
    args = ap.parse_args()
    t_start = time.time()
    np.random.seed(SEED)  # not used, but nothing else can slip in unseeded
    root = np.random.SeedSequence(SEED)
    ss_train, ss_val, ss_init, ss_ref = root.spawn(4)

    log(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    log(f"generating {N_TRAIN_SERIES} training series of {TRAIN_LEN} samples, W={W}")
    x, z = make_training_set(np.random.default_rng(ss_train))
    n_hold = len(x) // 20
    x_tr, z_tr, x_hold, z_hold = x[n_hold:], z[n_hold:], x[:n_hold], z[:n_hold]
    log(f"  {len(x_tr)} training windows, {n_hold} held-out windows")
    log(f"generating {N_VAL_SERIES} validation series of {VAL_LEN} samples with injected anomalies")
    xv, zv, labv, sidv = make_validation_set(np.random.default_rng(ss_val))
    log(f"  {len(xv)} validation points, {int((labv >= 0).sum())} anomalous")

    log(f"training MLP {W}-{'-'.join(map(str, HIDDEN))}-1 (ReLU) for {EPOCHS} epochs")
    params = train(np.random.default_rng(ss_init), x_tr, z_tr, x_hold, z_hold)

    onnx_path = os.path.join(args.out, "forecaster.onnx")
    sha, size = export_onnx(params, onnx_path)
    log(f"wrote forecaster.onnx ({size} bytes, sha256 {sha})")

    sess = ort_session(onnx_path)
    # The exported graph must compute what numpy computes (float32).
    probe = xv[:4096]
    ref_np = forward([p.astype(np.float32) for p in params], probe)[-1][:, 0]
    max_diff = float(np.max(np.abs(ort_predict(sess, probe) - ref_np)))
    log(f"onnxruntime vs numpy max |diff| on 4096 windows: {max_diff:.2e}")
    if max_diff > 1e-4:
        sys.exit(f"onnxruntime disagrees with numpy by {max_diff}")

    log("validating on the synthetic anomaly set")
    pred_v = ort_predict(sess, xv)
    hold_pred = ort_predict(sess, x_hold)
    hold_mse = float(np.mean((hold_pred - z_hold) ** 2))
    hold_mse_last = float(np.mean((x_hold[:, -1] - z_hold) ** 2))
    hold_mse_zero = float(np.mean(z_hold ** 2))
    auc, thr, events = evaluate(pred_v, zv, labv, sidv, xv[:, -1].astype(np.float64))
    for name, views in auc.items():
        for view, r in views.items():
            log(f"  ROC AUC {name:11s} {view:6s}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
    log(f"  event recall at 1 % FPR (|err| > {thr:.3f}): "
        + ", ".join(f"{t} {e['detected']}/{e['events']}" for t, e in events.items()))
    log(f"  held-out normal MSE: model {hold_mse:.4f}, last value {hold_mse_last:.4f}, "
        f"window mean {hold_mse_zero:.4f}")

    # Reference windows for the Rust inference test: raw values, normalised input, output.
    rng_ref = np.random.default_rng(ss_ref)
    refs = []
    fams = [f for f, _ in FAMILIES]
    for i, fam in enumerate(fams):
        raw = fam(rng_ref, W) * 10 ** rng_ref.uniform(-1, 3) + rng_ref.uniform(-50, 50)
        refs.append((fam.__name__[4:], raw))
    refs.append(("flat", np.full(W, 42.5)))
    refs.append(("ramp", np.arange(W, dtype=np.float64) * 0.25 - 3.0))
    raw = np.stack([r for _, r in refs])
    xr, mean_r, scale_r, _ = normalise(raw)
    yr = sess.run([OUTPUT_NAME], {INPUT_NAME: xr})[0]
    reference = {
        "model": NAME,
        "version": VERSION,
        "onnx_sha256": sha,
        "window": W,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "tolerance": {"x": 1e-6, "y": 1e-5},
        "note": ("raw: the window's values as f64; mean, scale: the normalisation; x: the model input "
                 "(float32, (raw - mean) / scale); y: onnxruntime's output for x (float32). Floats are "
                 "printed so that they parse back to the exact f64 / f32 values."),
        "cases": [
            {
                "name": name,
                "raw": [float(v) for v in raw[i]],
                "mean": float(mean_r[i]),
                "scale": float(scale_r[i]),
                "x": [float(v) for v in xr[i]],
                "y": [float(v) for v in yr[i]],
            }
            for i, (name, _) in enumerate(refs)
        ],
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
        f.write("\n")

    card = {
        "name": NAME,
        "version": VERSION,
        "file": "forecaster.onnx",
        "sha256": sha,
        "size_bytes": size,
        "format": {"onnx_opset": OPSET, "ir_version": IR_VERSION, "runtime": "onnxruntime 1.32.0"},
        "task": "next-step forecast of the per-window normalised value; anomaly score = |y - z_next|",
        "window": W,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["N", W],
                  "meaning": "the last W values of one series, oldest first, normalised (see normalisation)"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", 1],
                   "meaning": "forecast of the next value, in the same normalised units"},
        "normalisation": {
            "mean": "sum(w) / W",
            "std": "sqrt(sum((w_i - mean)^2) / W)  (population std, two-pass, f64)",
            "scale": f"max(std, {FLOOR:g} * max(|mean|, 1))",
            "x_i": "float32((w_i - mean) / scale)",
            "z_next": "(next - mean) / scale",
            "error": f"min(|z_next - y|, {Z_CLIP:g})",
            "floor": FLOOR,
            "error_cap": Z_CLIP,
        },
        "architecture": {"layers": [W, *HIDDEN, 1], "activation": "relu",
                         "ops": "Gemm, Relu, Gemm, Relu, Gemm"},
        "training": {
            "seed": SEED,
            "data": ("synthetic only, generated by train.py from the seed: daily/weekly seasonality at "
                     "1-min..1-h sampling, random walks, trends, AR(1)/AR(2) noise, heavy-tailed noise, "
                     "heteroscedastic noise, square waves and telegraph on/off processes, sparse "
                     "Poisson counts with bursts, fill-and-drain sawtooths, piecewise-constant set "
                     "points, persistent level shifts, flat segments, saturation, quantisation, "
                     "arbitrary units and offsets. No benchmark data."),
            "series": N_TRAIN_SERIES,
            "series_length": TRAIN_LEN,
            "windows": int(len(x_tr)),
            "target_clip": Z_CLIP,
            "loss": "mean squared error",
            "optimiser": (f"Adam, batch {BATCH}, {EPOCHS} epochs, cosine lr {LR_MAX:g} -> {LR_MIN:g}, "
                          f"weight decay {WEIGHT_DECAY:g}"),
        },
        "validation": {
            "data": (f"{N_VAL_SERIES} held-out synthetic series of {VAL_LEN} samples (same generator, "
                     "another seed stream) with 1-3 injected anomalies each: spikes (1-3 points, 3-8 "
                     "window std), level shifts (2-6 window std, first 3 points labelled), drifts "
                     "(ramp to 2-6 window std over 50-200 points, ramp labelled), variance changes "
                     "(extra noise 3-6x the innovation std for 50-200 points), flat lines (30-200 "
                     "points)"),
            "points": int(len(xv)),
            "anomalous_points": int((labv >= 0).sum()),
            "score": "min(|z_next - y|, 10) per point",
            "roc_auc_views": {
                "points": "every labelled anomalous point vs every normal point",
                "onsets": "only the first point of each anomaly vs every normal point",
                "mean10": "the score averaged over the series' last 10 points (current included)",
                "all": "all anomaly types together; per type: that type's points vs normal points",
            },
            "roc_auc": auc,
            "threshold_at_1pct_fpr": round(thr, 4),
            "event_recall_at_1pct_fpr": events,
            "heldout_normal_mse": {"model": round(hold_mse, 4), "last_value": round(hold_mse_last, 4),
                                   "window_mean": round(hold_mse_zero, 4)},
        },
        "reproduce": "make models (byte-identical on the same CPU architecture and numpy/OpenBLAS build)",
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")
    log(f"wrote model.json and reference.json; done in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
