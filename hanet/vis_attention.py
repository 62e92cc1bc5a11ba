"""Pictures of `hanet predict` drawn with matplotlib (the ``vis`` extra):

* :func:`segmentation_figure`: the image, the prediction overlaid on it, and, when a
  label exists, the ground truth and an error map, with a legend of the classes;
* :func:`attention_figure`: the height attention as the paper shows it: per HANet
  site a rows x channels heat map (rows are image rows, top at the top; channels
  ordered by the row where their attention peaks) and, beside the image, the mean
  attention of each site against image row;
* :class:`ClassHeightSummary`: over a whole set of images, for each class the
  channels whose attention is highest at the class's pixels ("the channels the
  class uses"), and their mean attention against image height, next to where the
  class's pixels lie.

Attention arrays are (C, H_site) in (0, 1), H_site the site's own row count; they
are brought to image rows with the linear interpolation the model itself uses
(``align_corners=False``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HEIGHT_BINS = 24  # relative-height bins of the whole-set summary (images may differ in size)
TOP_CHANNELS = 8  # channels per class in the whole-set summary


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend, or a one-line ImportError naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("hanet predict's pictures need matplotlib: pip install 'hanet[vis]'") from None
    return plt


def to_rows(attention: np.ndarray, height: int) -> np.ndarray:
    """(C, h) attention -> (C, height): linear interpolation, align_corners=False (as
    ``hanet.ops.height_interp``)."""
    a = np.asarray(attention, dtype=np.float32)
    h = a.shape[1]
    if h == height:
        return a
    src = (np.arange(height, dtype=np.float64) + 0.5) * h / height - 0.5
    src = np.clip(src, 0, h - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, h - 1)
    t = (src - i0).astype(np.float32)
    return a[:, i0] * (1 - t) + a[:, i1] * t


def peak_order(attention_rows: np.ndarray) -> np.ndarray:
    """Channel order by the row of each channel's peak (top rows first); ties by the
    mean attention above the peak, so the picture reads as a diagonal band."""
    peak = attention_rows.argmax(1)
    return np.lexsort((-attention_rows.mean(1), peak))


def error_map(pred: np.ndarray, label: np.ndarray, image: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W, 3) uint8: correct pixels as the dimmed grey image, wrong ones red,
    ignored (unlabelled) ones dark blue."""
    grey = image.astype(np.float32).mean(-1, keepdims=True) * 0.55 + 30
    out = np.repeat(grey, 3, -1)
    wrong = (pred != label) & (label != ignore_index)
    out[wrong] = (230, 25, 25)
    out[label == ignore_index] = (20, 30, 90)
    return out.round().clip(0, 255).astype(np.uint8)


def _legend_handles(ids, names, palette):
    from matplotlib.patches import Patch

    return [Patch(facecolor=np.asarray(palette[i]) / 255.0, edgecolor="black", linewidth=0.4, label=names[i])
            for i in ids]


def segmentation_figure(path, image: np.ndarray, pred: np.ndarray, names, palette, label: np.ndarray | None = None,
                        ignore_index: int = 255, title: str = "") -> dict:
    """Writes the segmentation picture to ``path``; returns {"pixel_acc", "miou"} of the
    image when ``label`` is given (mIoU over the classes in label or prediction), else {}."""
    from hanet.vis import colorize, overlay

    plt = require_matplotlib()
    mask = colorize(pred, list(palette), ignore_index)
    panels = [("image", image), ("prediction (overlay)", overlay(image, mask, 0.55))]
    stats = {}
    present = set(np.unique(pred).tolist())
    if label is not None:
        valid = label != ignore_index
        acc = float((pred[valid] == label[valid]).mean()) if valid.any() else float("nan")
        ious = []
        for c in sorted((set(np.unique(label[valid]).tolist()) | set(np.unique(pred[valid]).tolist()))):
            inter = np.sum((pred == c) & (label == c) & valid)
            union = np.sum(((pred == c) | (label == c)) & valid)
            ious.append(inter / union)
        stats = {"pixel_acc": acc, "miou": float(np.mean(ious)) if ious else float("nan")}
        present |= set(np.unique(label[valid]).tolist())
        panels += [("ground truth", colorize(label, list(palette), ignore_index)),
                   (f"errors: {100 * (1 - acc):.1f} % of labelled pixels", error_map(pred, label, image, ignore_index))]
    h, w = image.shape[:2]
    n = len(panels)
    ncol, nrow = n, 1  # one row: the panels side by side, as wide as the page
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 4.0, 4.0 * h / w + 1.5), squeeze=False)
    for ax, (cap, arr) in zip(axes.flat, panels):
        ax.imshow(arr, interpolation="nearest")
        ax.set_title(cap, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    ids = [c for c in sorted(present) if 0 <= c < len(names)]
    handles = _legend_handles(ids, names, palette)
    if label is not None:
        from matplotlib.patches import Patch

        handles += [Patch(facecolor=(0.9, 0.1, 0.1), label="error"), Patch(facecolor=(0.08, 0.12, 0.35), label="unlabelled")]
    per_row = 11
    fig.legend(handles=handles, loc="lower center", ncol=min(per_row, len(handles)), fontsize=8, frameon=False)
    head = title
    if stats:
        head += f"  (pixel accuracy {100 * stats['pixel_acc']:.1f} %, mIoU {100 * stats['miou']:.1f} %)"
    fig.suptitle(head, fontsize=11)
    rows_legend = (len(handles) + per_row - 1) // per_row
    fig.tight_layout(rect=(0, min(0.4, 0.09 * rows_legend + 0.02), 1, 0.9))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return stats


def attention_figure(path, image: np.ndarray, attention: dict, title: str = "") -> None:
    """Writes the height-attention picture of one image: the image with, beside it, each
    site's mean attention per image row; then per site a rows x channels heat map
    (channels ordered by their peak row), all with the image's row axis."""
    plt = require_matplotlib()
    h, w = image.shape[:2]
    sites = sorted(attention)
    rows = {s: to_rows(attention[s], h) for s in sites}
    ncol = 2 + len(sites)
    widths = [1.6 * w / h, 1.1] + [1.35] * len(sites)
    fig, axes = plt.subplots(1, ncol, figsize=(sum(widths) * 1.9 + 0.6, 4.3),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    axes = axes[0]
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=10)
    axes[0].set_xticks([])
    axes[0].set_ylabel("image row")
    y = np.arange(h)
    ax = axes[1]
    colours = plt.get_cmap("tab10")
    for k, s in enumerate(sites):
        ax.plot(rows[s].mean(0), y, color=colours(k), lw=1.6, label=f"site {s}")
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title("mean attention\nper row", fontsize=10)
    ax.set_xlabel("attention")
    ax.tick_params(labelleft=False)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    for k, s in enumerate(sites):
        ax = axes[2 + k]
        a = rows[s]
        a = a[peak_order(a)]
        lo, hi = np.percentile(a, [1, 99])
        im = ax.imshow(a.T, aspect="auto", cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="nearest",
                       extent=(-0.5, a.shape[0] - 0.5, h - 0.5, -0.5))
        ax.set_title(f"site {s}: {a.shape[0]} channels\n({attention[s].shape[1]} attention rows)", fontsize=9)
        ax.set_xlabel("channel, by peak row")
        ax.tick_params(labelleft=False)
        cb = fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03)
        cb.ax.tick_params(labelsize=7)
        if k == len(sites) - 1:
            cb.set_label("attention (1st-99th percentile)", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=100)
    plt.close(fig)


class ClassHeightSummary:
    """Accumulates, over many images, per site and class: the mean attention of each
    channel at the class's pixels, the mean attention of each channel per relative
    height bin, and where the class's pixels lie; :meth:`figure` draws, per site, the
    mean attention of each class's top channels against height."""

    def __init__(self, names, palette, bins: int = HEIGHT_BINS, top: int = TOP_CHANNELS):
        self.names, self.palette, self.bins, self.top = list(names), list(palette), bins, top
        self.n_cls = len(self.names)
        self.at_class: dict[int, np.ndarray] = {}  # site -> (K, C) sum of attention over class pixels
        self.overall: dict[int, np.ndarray] = {}  # site -> (C,) sum over all pixels
        self.profile: dict[int, np.ndarray] = {}  # site -> (C, bins) sum of attention per height bin
        self.pixels = np.zeros(self.n_cls)  # pixels of each class
        self.where = np.zeros((self.n_cls, bins))  # pixels of each class per height bin
        self.rows_per_bin = np.zeros(bins)  # image rows per height bin (all images)
        self.images = 0
        self.total = 0

    def add(self, attention: dict, labels: np.ndarray) -> None:
        """One image: its attention {site: (C, h)} and its class map (H, W) (prediction
        or ground truth; values outside 0..K-1 are left out)."""
        h = labels.shape[0]
        bin_of_row = np.minimum(np.arange(h) * self.bins // h, self.bins - 1)
        counts = np.zeros((self.n_cls, h))  # class pixels per row
        for r in range(h):
            row = labels[r]
            row = row[row < self.n_cls]
            counts[:, r] = np.bincount(row, minlength=self.n_cls)[: self.n_cls]
        per_row = labels.shape[1]
        self.pixels += counts.sum(1)
        np.add.at(self.where.T, bin_of_row, counts.T)
        self.images += 1
        self.total += h * per_row
        onehot_bins = np.zeros((h, self.bins))
        onehot_bins[np.arange(h), bin_of_row] = 1.0
        for s, att in attention.items():
            a = to_rows(att, h).astype(np.float64)  # (C, h)
            if s not in self.at_class:
                c = a.shape[0]
                self.at_class[s] = np.zeros((self.n_cls, c))
                self.overall[s] = np.zeros(c)
                self.profile[s] = np.zeros((c, self.bins))
            self.at_class[s] += counts @ a.T
            self.overall[s] += a.sum(1) * per_row
            self.profile[s] += a @ onehot_bins
        self.rows_per_bin += onehot_bins.sum(0)

    def classes(self, min_fraction: float = 0.005, most: int = 8) -> list[int]:
        """The ``most`` most frequent classes with at least ``min_fraction`` of the
        pixels, ordered from the top of the image down (by median height)."""
        frac = self.pixels / max(1, self.total)
        keep = [int(k) for k in np.argsort(-frac, kind="stable") if frac[k] >= min_fraction][:most]
        return sorted(keep, key=lambda k: (self._median_bin(k), k))

    def _median_bin(self, k: int) -> int:
        cdf = np.cumsum(self.where[k]) / max(self.where[k].sum(), 1e-12)
        return int(np.searchsorted(cdf, 0.5))

    def summary(self) -> dict:
        """Per site and class: the top channels (by attention at the class's pixels
        minus their mean attention over all pixels), their mean attention per height
        bin (top bin first), the bin where it peaks, and the class's median height
        (0 top, 1 bottom)."""
        out = {"images": self.images, "height_bins": self.bins, "sites": {}}
        centres = (np.arange(self.bins) + 0.5) / self.bins
        for s in sorted(self.at_class):
            mean_all = self.overall[s] / max(1, self.total)
            prof = self.profile[s] / np.maximum(self.rows_per_bin, 1)[None, :]
            site = {}
            for k in self.classes(min_fraction=0.0005, most=self.n_cls):
                score = self.at_class[s][k] / self.pixels[k] - mean_all
                top = np.argsort(-score)[: self.top]
                curve = prof[top].mean(0)
                site[self.names[k]] = {
                    "channels": [int(c) for c in top],
                    "attention_by_height": [round(float(v), 4) for v in curve],
                    "peak_height": round(float(centres[int(curve.argmax())]), 3),
                    "class_median_height": round(float(centres[min(self._median_bin(k), self.bins - 1)]), 3),
                    "gain_at_class": round(float(score[top].mean()), 4),
                }
            out["sites"][str(s)] = site
        return out

    def figure(self, path, title: str = "") -> dict:
        """Writes the whole-set picture; returns :meth:`summary`."""
        plt = require_matplotlib()
        summ = self.summary()
        sites = list(summ["sites"])
        ncol = len(sites) + 1
        fig, axes = plt.subplots(1, ncol, figsize=(3.2 * ncol + 1.6, 5.0), sharey=True, squeeze=False)
        axes = axes[0]
        centres = (np.arange(self.bins) + 0.5) / self.bins
        classes = self.classes()
        ax = axes[0]
        for k in classes:
            dist = self.where[k] / self.where[k].sum()
            ax.plot(dist, centres, color=np.asarray(self.palette[k]) / 255.0, lw=1.6)
        ax.set_title("where each class is\n(share of its pixels)", fontsize=10)
        ax.set_xlabel("pixel share per height bin")
        ax.set_ylabel("image height (0 = top row, 1 = bottom row)")
        ax.set_ylim(1, 0)
        ax.grid(alpha=0.3)
        for ax, s in zip(axes[1:], sites):
            for k in classes:
                d = summ["sites"][s][self.names[k]]
                colour = np.asarray(self.palette[k]) / 255.0
                curve = d["attention_by_height"]
                ax.plot(curve, centres, color=colour, lw=1.8)
                m = self._median_bin(k)  # where the class is: a dot on its curve at its median height
                ax.plot([curve[m]], [centres[m]], "o", color=colour, ms=6, mec="black", mew=0.6)
            ax.set_title(f"site {s}: mean attention of each\nclass's top {self.top} channels", fontsize=10)
            ax.set_xlabel("attention")
            ax.grid(alpha=0.3)
        handles = _legend_handles(classes, self.names, self.palette)
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, title="class")
        fig.suptitle((title or f"height attention by class over {self.images} images") +
                     "\ndots: each class's median height on its curve", fontsize=11)
        fig.tight_layout(rect=(0, 0, 0.86, 0.92))
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return summ


def find_label(image_path, classes) -> np.ndarray | None:
    """The train-id label of an image in the Cityscapes layout
    (``.../leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` ->
    ``.../gtFine/<split>/<city>/<name>_gtFine_labelIds.png``), or None when there is none."""
    from PIL import Image

    p = Path(image_path)
    if not p.name.endswith("_leftImg8bit.png") or "leftImg8bit" not in p.parts[:-1]:
        return None
    parts = list(p.parts)
    i = len(parts) - 1 - parts[::-1].index("leftImg8bit", 1)
    parts[i] = "gtFine"
    parts[-1] = p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    gt = Path(*parts)
    if not gt.is_file():
        return None
    try:
        return np.asarray(classes.to_train_ids(np.asarray(Image.open(gt))))
    except (OSError, ValueError):
        return None


class PagePictures:
    """What `hanet predict` draws with matplotlib: per image, the segmentation and the
    attention pictures; at the end, the whole-set class-height picture and its JSON."""

    def __init__(self, out_dir, classes):
        require_matplotlib()
        self.out = Path(out_dir)
        self.classes = classes
        self.names, self.palette = list(classes.names), list(classes.palette)
        self.summary = ClassHeightSummary(self.names, self.palette)
        self.scores: list[dict] = []

    def add(self, stem: str, image_path, image: np.ndarray, pred: np.ndarray, attention: dict | None) -> list:
        """Draws one image's pictures; returns [(caption, file name)]."""
        label = find_label(image_path, self.classes) if image_path else None
        if label is not None and label.shape != pred.shape:
            label = None
        pics = []
        seg = self.out / f"{stem}_segmentation.png"
        stats = segmentation_figure(seg, image, pred, self.names, self.palette, label,
                                    self.classes.ignore_index, title=stem)
        if stats:
            self.scores.append({"name": stem, **stats})
        pics.append(("image, prediction" + (", ground truth, errors" if label is not None else ""), seg.name))
        if attention:
            att = self.out / f"{stem}_height_attention.png"
            attention_figure(att, image, attention, title=f"{stem}: height attention per HANet site")
            pics.append(("height attention per site", att.name))
            self.summary.add(attention, label if label is not None else pred)
        return pics

    def finish(self) -> list:
        """Draws the whole-set picture (if any attention was seen); returns [(caption, file name)]."""
        if not self.summary.images:
            return []
        path = self.out / "attention_by_class.png"
        src = "ground truth" if self.scores else "predicted classes"
        summ = self.summary.figure(path, title=f"height attention by class over {self.summary.images} images "
                                               f"(classes from the {src})")
        summ["class_source"] = src
        summ["per_image"] = self.scores
        (self.out / "attention_by_class.json").write_text(json.dumps(summ, indent=1) + "\n")
        return [("the channels each class uses, against height (whole set)", path.name)]
