"""`hanet predict`: segment a folder of images (no dataset needed) and draw, per
image, the colour mask, an overlay, each HANet site's height attention (rows x
channels), and a per-class summary of the last site; plus an index.html.  The
model runs through :class:`hanet.Segmenter`, once per image (attention included)."""
from __future__ import annotations

import html
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from hanet.inference import InferenceConfig
from hanet.vis import attention_heatmap, colorize, overlay


def class_summary(attention: np.ndarray | torch.Tensor, pred: np.ndarray, names: list[str],
                  per_class_channels: bool) -> list:
    """(class, pixels, mean attention) of each predicted class under the last site's
    attention (C, H): a class's own channel when the site rescales the class logits
    (site 4), else the channel mean, taken at the rows of the class's pixels."""
    att = attention.float().cpu().numpy() if isinstance(attention, torch.Tensor) else np.asarray(attention, np.float32)
    # att: (C, H_site), the site's own row resolution
    site_row = np.arange(pred.shape[0]) * att.shape[1] // pred.shape[0]  # image row -> site row
    rows_of = np.broadcast_to(site_row[:, None], pred.shape)
    out = []
    mean_att = att.mean(0)
    for c in np.unique(pred):
        mask = pred == c
        rows = rows_of[mask]
        profile = att[c] if per_class_channels and c < att.shape[0] else mean_att
        out.append((names[c] if c < len(names) else str(c), int(mask.sum()), float(profile[rows].mean())))
    return sorted(out, key=lambda t: -t[1])


def draw_summary(summary: list, palette_of: dict, title: str) -> Image.Image:
    font = ImageFont.load_default()
    bar_w, row_h, label_w = 300, 18, 120
    img = Image.new("RGB", (label_w + bar_w + 60, 30 + row_h * max(1, len(summary))), "white")
    d = ImageDraw.Draw(img)
    d.text((5, 5), title, fill="black", font=font)
    for i, (name, pixels, value) in enumerate(summary):
        y = 28 + i * row_h
        d.text((5, y + 2), name, fill="black", font=font)
        d.rectangle([label_w, y + 2, label_w + int(bar_w * value), y + row_h - 3], fill=palette_of.get(name, (90, 90, 90)))
        d.text((label_w + bar_w + 5, y + 2), f"{value:.2f}", fill="black", font=font)
    return img


def _page(entries: list[dict], title: str, overview: list | None = None, note: str = "") -> str:
    """index.html: the whole-set pictures (``overview``), then one <section> per image
    with its figures and links to its plain files (``e["files"]``)."""
    def figure(cap, src):
        return (f'<figure><a href="{html.escape(src)}"><img src="{html.escape(src)}" alt="{html.escape(cap)}"></a>'
                f"<figcaption>{html.escape(cap)}</figcaption></figure>")

    rows = []
    for e in entries:
        cells = "".join(figure(cap, src) for cap, src in e["pictures"])
        files = " &middot; ".join(f'<a href="{html.escape(src)}">{html.escape(cap)}</a>' for cap, src in e.get("files", ()))
        rows.append(f'<section><h2>{html.escape(e["name"])}</h2><div class="row">{cells}</div>'
                    + (f'<p class="files">files: {files}</p>' if files else "") + "</section>")
    top = ""
    if overview:
        top = '<div class="overview"><div class="row">' + "".join(figure(c, s) for c, s in overview) + "</div></div>"
    if note:
        top += f'<p class="note">{html.escape(note)}</p>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html.escape(title) +
            "</title><style>body{font-family:sans-serif;margin:1em;background:#fafafa}"
            ".row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}figure{margin:0;background:#fff}"
            "img{max-width:100%;max-height:430px;height:auto;border:1px solid #ccc}"
            "figcaption{font-size:12px;color:#444}.files{font-size:12px}.note{color:#a33}"
            "section{border-top:1px solid #ddd;padding-top:4px}</style></head>"
            "<body><h1>" + html.escape(title) + "</h1>\n" + top + "\n" + "\n".join(rows) + "\n</body></html>\n")


def predict_folder(model, sources: list[str], out: str, classes, infer: InferenceConfig | None = None,
                   progress: bool = True, skip_corrupt: bool = False) -> Path:
    """Writes the pictures of every image in `sources` under `out`; returns index.html's path.
    One :class:`~hanet.segmenter.Segmenter` call per image: the prediction and the
    attention pictures come from the same forward pass (no attention pictures where
    the inference settings make no whole-image pass, e.g. sliding windows).
    ``skip_corrupt``: leave out (and report) unreadable images instead of failing."""
    from hanet.data import ImageFolder
    from hanet.segmenter import Segmenter

    dataset = ImageFolder(sources, skip_corrupt=skip_corrupt)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter = Segmenter(model, config=infer or InferenceConfig(), classes=classes)
    names, palette = list(classes.names), list(classes.palette)
    palette_of = dict(zip(names, palette))
    sites = segmenter.sites
    last_is_class_site = bool(sites) and sites[-1] == 4
    entries = []
    try:  # the figures (matplotlib, the vis extra); without it the plain pictures only
        from hanet.vis_attention import PagePictures

        figures, note = PagePictures(out_dir, classes), ""
    except ImportError as exc:
        figures, note = None, f"figures left out: {exc}"
        warnings.warn(f"hanet predict: {note}", stacklevel=2)
    items = range(len(dataset))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="predict")
    used = set()
    for i in items:
        sample = dataset[i]
        stem = sample["name"]
        while stem in used:  # same file name in two folders
            stem += "_"
        used.add(stem)
        result = segmenter(sample["image"], return_attention=True)
        pred, rgb = result.labels, result.image
        mask = colorize(pred, palette)
        pictures = [("input", sample["path"])]
        for kind, arr in (("mask", mask), ("overlay", overlay(rgb, mask))):
            path = out_dir / f"{stem}_{kind}.png"
            Image.fromarray(arr).save(path)
            pictures.append((kind, path.name))
        if result.attention:
            for s, att in result.attention.items():
                heat = attention_heatmap(att, cell=max(1, 256 // att.shape[1]), height=256)
                path = out_dir / f"{stem}_attention_site{s}.png"
                Image.fromarray(heat).save(path)
                pictures.append((f"attention, site {s} (rows x channels)", path.name))
            summary = class_summary(result.attention[sites[-1]], pred, names, last_is_class_site)
            title = f"mean attention of site {sites[-1]} at each predicted class's pixels"
            path = out_dir / f"{stem}_attention_classes.png"
            draw_summary(summary, palette_of, title).save(path)
            pictures.append((f"per-class attention, site {sites[-1]}", path.name))
        # the input picture: link to a copy so the page works when moved
        src = out_dir / f"{stem}_input.png"
        Image.fromarray(rgb).save(src)
        pictures[0] = ("input", src.name)
        if figures is None:
            entries.append({"name": stem, "pictures": pictures})
        else:
            shown = figures.add(stem, sample["path"], rgb, pred, result.attention)
            entries.append({"name": stem, "pictures": shown, "files": pictures})
    overview = figures.finish() if figures is not None else []
    index = out_dir / "index.html"
    index.write_text(_page(entries, f"hanet predictions ({len(entries)} images)", overview, note))
    return index
