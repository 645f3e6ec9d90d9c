"""Accuracy for the search: measured with the supernet, or predicted by a model fitted on such measurements.

Two accuracy predictors with the search's interface (`predict_acc(candidates)` -> one float per
candidate, batched; see tinynas.search):

- `SupernetAccuracy`: the candidate's static subnet (`SuperNet.get_active_subnet`, weights inherited)
  after batch-norm recalibration on seeded training batches, scored on the validation split that
  supernet training held out (`tinynas.data.load` with the checkpoint's `val_fraction` and `seed`).
  Exact for that supernet, cached per candidate; it costs one recalibration and one pass over the
  validation split per new candidate (about 10 to 100 ms for the small networks of the digits demo on
  one core, seconds for full-size ones).
- `AccuracyPredictor`: a small regression model fitted on (candidate, measured accuracy) pairs, as
  once-for-all does, so the evolution can query thousands of candidates for the cost of a matrix
  product. A candidate is encoded (`encode`) as, per block slot of each stage, a one-hot of its kernel
  and a one-hot of its expand ratio (zeros where the stage's depth leaves the slot out), a one-hot of
  each stage's depth, a one-hot of the resolution, the width multiplier, and log10 of its MACs;
  features are standardised on the fit's data. Models: a small MLP in PyTorch (two hidden ReLU layers
  of 64, Adam with weight decay, full batch; the default, once-for-all's kind of model) or ridge
  regression (closed form, its penalty picked by 5-fold cross-validation; fewer parameters, for a few
  dozen measurements). On a tiny digits supernet with 100 measurements the MLP's held-out rank
  correlation was 0.6 to 0.7, ridge's 0.55 to 0.65, log10 MACs alone 0.4 (tests/test_nas_accuracy.py
  keeps a bound). `fit` holds out a seeded `holdout` fraction,
  reports the held-out Spearman rank correlation and RMSE (`PredictorFit`), then refits on every
  measurement.

Which one the search uses (`choose_accuracy`, `tinynas search --accuracy auto`): the predictor needs
`samples` measurements before it answers anything, and the evolution asks at most
population x (generations + 1) distinct candidates. When that is no more than `samples`, measuring
every asked candidate costs no more than fitting the predictor and is exact: measured accuracy. For
larger searches (big populations, many generations) the predictor: `samples` random subnets measured
once, then every query is a prediction; at the end the `top` best-predicted candidates of the last
population are measured, and the best measured candidate that fits wins, from those and the
predictor's own samples (`verify`: the maximum of predictions is where the predictor overrates most).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TinyNasError
from .space import Candidate, SearchSpace


# ---- measured ---------------------------------------------------------------------------------------

MEASURED = "measured.json"     # beside a checkpoint: its subnets' measurements (SupernetAccuracy share=True)

def load_supernet(path: Path):
    """(SuperNet with the checkpoint's weights, the checkpoint dict) from a `tinynas.training` checkpoint."""
    from .supernet import SuperNet
    from .training import read_checkpoint
    path = Path(path)
    if not path.is_file():
        raise TinyNasError(f"--supernet {path}: file not found (a checkpoint.pt written by supernet training)")
    ckpt = read_checkpoint(path, "--supernet")
    space = SearchSpace.from_dict(ckpt["space"])
    net = SuperNet(space)
    net.load_state_dict(ckpt["model"])
    return net, ckpt


class SupernetAccuracy:
    """Validation accuracy of each candidate's subnet after BN recalibration (see the module docstring).

    net: a trained SuperNet; data: a tinynas.data.Dataset loaded at the space's largest resolution with
    the split the supernet was trained with. `calib_batches` x `batch_size` seeded training images
    re-estimate the BN statistics, as training's per-epoch evaluation does."""

    def __init__(self, net, data, calib_batches: int = 4, batch_size: int = 64, seed: int = 0,
                 device: str = "cpu", progress: bool = False, store: tuple[Path, str] | None = None):
        from .training import calibration_batches
        if net.space.num_classes != len(data.classes):
            raise TinyNasError(f"supernet: trained for {net.space.num_classes} classes, the data has "
                               f"{len(data.classes)}")
        if net.space.in_channels != data.in_channels:
            raise TinyNasError(f"supernet: trained on {net.space.in_channels}-channel images, the data has "
                               f"{data.in_channels} channels (--channels)")
        self.net, self.data, self.space, self.device = net.to(device).eval(), data, net.space, device
        self.calib = calibration_batches(data.train_x, seed, calib_batches, batch_size)
        self.progress = progress
        self.cache: dict = {}
        self.seconds = 0.0                      # time spent measuring
        self.store = store                      # (file, key): measurements shared by searches of one supernet
        self.loaded = 0                         # measurements read from the store
        if store is not None and store[0].is_file():
            import json
            saved = json.loads(store[0].read_text())
            if saved.get("key") == store[1]:
                self.cache = {Candidate.from_dict(d): float(a) for d, a in saved["measured"]}
                self.loaded = len(self.cache)

    @classmethod
    def from_checkpoint(cls, path, data_spec: str, channels: int | None = None, **kwargs) -> "SupernetAccuracy":
        """The supernet of `path` on `data_spec` ('digits' or a folder), split as its training split it."""
        from .data import load
        net, ckpt = load_supernet(path)
        cfg = ckpt.get("config", {})
        data = load(data_spec, max(net.space.resolutions), channels or net.space.in_channels,
                    cfg.get("val_fraction", 0.2), cfg.get("seed", 0), cfg.get("test_fraction", 0.0),
                    cfg.get("test_fold", 0))
        if ckpt.get("classes") is not None and list(ckpt["classes"]) != list(data.classes):
            raise TinyNasError(f"--supernet {path}: trained on classes {ckpt['classes'][:5]}..., the data has "
                               f"{data.classes[:5]}... (use the data it was trained on)")
        kwargs.setdefault("seed", cfg.get("seed", 0))
        kwargs.setdefault("calib_batches", cfg.get("calib_batches", 4))
        kwargs.setdefault("batch_size", cfg.get("batch_size", 64))
        if kwargs.pop("share", False):
            import hashlib
            import json
            setting = {k: kwargs[k] for k in ("seed", "calib_batches", "batch_size")}
            key = hashlib.sha256(Path(path).read_bytes()).hexdigest() + json.dumps(
                [data_spec, data.in_channels, setting, kwargs.get("device", "cpu")])
            kwargs["store"] = (Path(path).with_name(MEASURED), key)
        return cls(net, data, **kwargs)

    def save(self) -> None:
        """Write every measurement to the store (where there is one): the next search of the same supernet,
        data, recalibration and device reads them instead of measuring again."""
        if self.store is None:
            return
        import json
        rows = [[c.to_dict(), a] for c, a in self.cache.items()]
        tmp = self.store[0].with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.store[1], "measured": rows}) + "\n")
        tmp.replace(self.store[0])

    def measure(self, c: Candidate) -> float:
        import time

        import torch

        from .training import measure
        hit = self.cache.get(c)
        if hit is None:
            t0 = time.time()
            with torch.no_grad():
                hit = self.cache[c] = measure(self.net, self.space.validate(c), self.calib, self.data.val_x,
                                              self.data.val_y, self.device)
            self.seconds += time.time() - t0
        return hit

    def predict_acc(self, cands: list[Candidate]) -> list[float]:
        todo = list(dict.fromkeys(c for c in cands if c not in self.cache))
        if len(todo) > 1 and self.progress:
            from tqdm import tqdm
            todo = tqdm(todo, desc="accuracy (supernet)", leave=False, dynamic_ncols=True, disable=None)
        for c in todo:
            self.measure(c)
        return [self.cache[c] for c in cands]

    @property
    def measured(self) -> int:
        return len(self.cache)


# ---- predicted --------------------------------------------------------------------------------------

def encode(space: SearchSpace, c: Candidate) -> list[float]:
    """The predictor's features of `c` (see the module docstring); the same length for every candidate."""
    space.validate(c)
    f: list[float] = []
    for s, depths in enumerate(space.stage_depths):
        for b in range(max(depths)):
            active = b < len(c.ks[s])
            f += [float(active and c.ks[s][b] == k) for k in space.kernel_sizes]
            f += [float(active and c.e[s][b] == e) for e in space.expand_ratios]
        if len(depths) > 1:
            f += [float(len(c.ks[s]) == d) for d in depths]
    if len(space.resolutions) > 1:
        f += [float(c.r == r) for r in space.resolutions]
    return f + [float(space.width_mult), math.log10(space.macs(c))]


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 where either side is constant."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):                       # ties share their average rank
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


@dataclass
class PredictorFit:
    """How well the predictor did on the measurements `fit` held out."""
    model: str
    samples: int                   # measurements in all (the final model is fitted on all of them)
    held_out: int
    spearman: float                # rank correlation on the held-out measurements
    rmse: float                    # accuracy units (0..1)
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"model": self.model, "samples": self.samples, "held_out": self.held_out,
                "held_out_spearman": round(self.spearman, 4), "held_out_rmse": round(self.rmse, 5), **self.details}


class AccuracyPredictor:
    """Accuracy from a candidate's encoding: ridge regression or a small MLP (see the module docstring)."""

    MODELS = ("ridge", "mlp")

    def __init__(self, space: SearchSpace, model: str = "mlp", seed: int = 0):
        if model not in self.MODELS:
            raise TinyNasError(f"accuracy predictor: model must be one of {', '.join(self.MODELS)}, got {model!r}")
        self.space, self.model, self.seed = space, model, seed
        self._predict = None
        self.report: PredictorFit | None = None

    def features(self, cands: list[Candidate]) -> np.ndarray:
        return np.array([encode(self.space, c) for c in cands], dtype=np.float64)

    def fit(self, cands: list[Candidate], accs: list[float], holdout: float = 0.25) -> PredictorFit:
        """Held-out rank correlation and RMSE, then the model refitted on every measurement."""
        if len(cands) != len(accs):
            raise TinyNasError(f"accuracy predictor: {len(cands)} candidates but {len(accs)} accuracies")
        n_out = int(round(len(cands) * holdout))
        if len(cands) - n_out < 4 or n_out < 2:
            raise TinyNasError(f"accuracy predictor: {len(cands)} measurements are too few to fit and check "
                               f"(at least 8 with holdout {holdout})")
        x, y = self.features(cands), np.asarray(accs, dtype=np.float64)
        order = list(range(len(cands)))
        random.Random(f"tinynas-predictor:{self.seed}").shuffle(order)
        test, train = np.array(order[:n_out]), np.array(order[n_out:])
        predict, details = self._fit(x[train], y[train])
        pred = predict(x[test])
        self.report = PredictorFit(self.model, len(cands), n_out, spearman(pred, y[test]),
                                   float(np.sqrt(np.mean((pred - y[test]) ** 2))), details)
        self._predict, _ = self._fit(x, y)
        return self.report

    def predict_acc(self, cands: list[Candidate]) -> list[float]:
        if self._predict is None:
            raise TinyNasError("accuracy predictor: not fitted (call fit with measured accuracies first)")
        return [float(v) for v in self._predict(self.features(cands))]

    # ---- models ------------------------------------------------------------------------------------
    def _fit(self, x: np.ndarray, y: np.ndarray):
        mu, sd = x.mean(0), x.std(0)
        sd[sd == 0] = 1.0
        z = (x - mu) / sd
        fit = _ridge if self.model == "ridge" else _mlp
        predict, details = fit(z, y, self.seed)
        return (lambda xn: predict((xn - mu) / sd)), details


def _ridge_solve(z: np.ndarray, y: np.ndarray, lam: float):
    ym = y.mean()
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - ym))
    return w, ym


RIDGE_PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _ridge(z: np.ndarray, y: np.ndarray, seed: int):
    """Ridge regression on standardised features; the penalty with the least 5-fold cross-validated error."""
    folds = np.arange(len(y)) % 5
    random.Random(f"tinynas-ridge:{seed}").shuffle(folds)
    best = None
    for lam in RIDGE_PENALTIES:
        err = 0.0
        for k in range(5):
            tr, te_ = folds != k, folds == k
            if not te_.any() or tr.sum() < 2:
                continue
            w, b = _ridge_solve(z[tr], y[tr], lam)
            err += float(((z[te_] @ w + b - y[te_]) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, lam)
    w, b = _ridge_solve(z, y, best[1])
    return (lambda zn: zn @ w + b), {"ridge_penalty": best[1]}


def _mlp(z: np.ndarray, y: np.ndarray, seed: int, hidden: int = 64, epochs: int = 600):
    """Two hidden ReLU layers on standardised features and targets, Adam with weight decay, full batch."""
    import torch
    g = torch.Generator().manual_seed(seed)
    ym, ys = float(y.mean()), float(y.std()) or 1.0
    xt = torch.tensor(z, dtype=torch.float32)
    yt = torch.tensor((y - ym) / ys, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.0))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xt).squeeze(1), yt)
        loss.backward()
        opt.step()
    net.eval()

    def predict(zn):
        with torch.no_grad():
            return net(torch.tensor(zn, dtype=torch.float32)).squeeze(1).double().numpy() * ys + ym
    return predict, {"mlp_hidden": hidden, "mlp_epochs": epochs}


def fit_predictor(measured: SupernetAccuracy, samples: int, model: str = "mlp", seed: int = 0,
                  holdout: float = 0.25) -> AccuracyPredictor:
    """A predictor fitted on `samples` distinct seeded random subnets (uniform over the space) measured
    with `measured`."""
    rng = random.Random(f"tinynas-predictor-samples:{seed}")
    draw = measured.space.sample
    cands: list = []
    seen: set = set()
    for _ in range(samples * 20):
        if len(cands) == samples:
            break
        c = draw(rng)
        if c not in seen:
            seen.add(c)
            cands.append(c)
    predictor = AccuracyPredictor(measured.space, model, seed)
    predictor.fit(cands, measured.predict_acc(cands), holdout)
    return predictor


def verify(measured: SupernetAccuracy, ranked: list[Candidate], top: int, fits) -> tuple[Candidate, float]:
    """The best measured candidate that fits: the `top` first of `ranked` (a predictor's best first) are
    measured, and compete with every candidate measured before (the predictor's own samples) for which
    `fits(c)` holds. The evolution picks the predictor's maximum, which overrates its winner by the
    predictor's error (the largest errors win), so the final choice is made on measurements."""
    measured.predict_acc(ranked[:top])
    pool = [c for c in dict.fromkeys(list(ranked[:top]) + list(measured.cache)) if fits(c)]
    best = max(pool, key=lambda c: measured.cache[c])
    return best, measured.cache[best]


def choose_accuracy(population: int, generations: int, samples: int) -> str:
    """'supernet' where the search asks no more candidates than the predictor needs measured, else 'predictor'."""
    return "supernet" if population * (generations + 1) <= samples else "predictor"
