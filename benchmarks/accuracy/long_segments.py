"""Cluster verification with long-segment embeddings (issue 32, item 3), measured before building it: can
whole-cluster embeddings tell an over-split speaker from two speakers, or a mixed cluster from a pure one?

    python -m benchmarks.accuracy.long_segments DIR [--sets dev shared dev-long] [--vad oracle system]
        [--piece-s 10] [--min-piece-s 3]

DIR holds `heldout`'s cached sets (dev only: nothing here may look at test). Each conversation is clustered
by the pipeline's `label` stage with the default config; each cluster's speech (its base windows' turns, in
time order) is cut into pieces of `--piece-s` seconds (a remainder under `--min-piece-s` joins the last
piece) and every piece is embedded whole by the model that made the cache. Then:

- merge: for every pair of clusters in a conversation, the cosine of their mean piece embeddings, and
  whether the reference gives both clusters the same majority speaker (an over-split speaker);
- split: for every cluster of at least two pieces, the lowest cosine between two of its pieces, and whether
  a second reference speaker holds over 20 % of its speech (a mixed cluster).

A verification step pays only where a threshold separates the two kinds; the report shows both tails.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.accuracy import heldout
from diarize import pipeline
from diarize.audio import load_audio
from diarize.config import DiarizerConfig
from diarize.models import load_model
from diarize.models.base import SpeakerEmbedder
from diarize.rttm import labels_to_annotation, read_rttm

SR = 16000
MIXED_SHARE = 0.2


@dataclass
class Pair:
    uri: str
    same_speaker: bool
    cosine: float


@dataclass
class Cluster:
    uri: str
    mixed: bool
    lowest_cosine: float


def cut_pieces(
    turns: list[tuple[float, float]], wav: np.ndarray, piece_s: float, min_piece_s: float
) -> list[np.ndarray]:
    """The turns' audio joined in time order and cut into pieces of `piece_s` seconds."""
    speech = np.concatenate([wav[int(s * SR) : int(e * SR)] for s, e in turns])
    size = int(piece_s * SR)
    pieces = [speech[i : i + size] for i in range(0, len(speech), size)]
    if len(pieces) > 1 and len(pieces[-1]) < min_piece_s * SR:
        pieces[-2:] = [np.concatenate(pieces[-2:])]
    return pieces


def unit_embeddings(model: SpeakerEmbedder, pieces: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        e = torch.cat([model.embed_batch(torch.from_numpy(p.astype(np.float32))[None]) for p in pieces]).numpy()
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def measure(
    c: heldout.Cached, model: SpeakerEmbedder, cfg: DiarizerConfig, piece_s: float, min_piece_s: float
) -> tuple[list[Pair], list[Cluster]]:
    """One conversation: its clusters' pairs (merge) and its clusters of two pieces or more (split)."""
    uri = c.session.uri
    base = c.embedded.scales[-1]
    labels = pipeline.label(c.embedded, cfg).labels
    hyp = labels_to_annotation(base.starts, base.ends, labels, uri=uri)
    ref = read_rttm(c.session.rttm)[uri]
    wav = load_audio(c.session.wav)
    means, majority, clusters = {}, {}, []
    for name in hyp.labels():
        timeline = hyp.label_timeline(name).support()
        emb = unit_embeddings(model, cut_pieces([(s.start, s.end) for s in timeline], wav, piece_s, min_piece_s))
        mean = emb.mean(axis=0)
        means[name] = mean / np.linalg.norm(mean)
        chart = ref.crop(timeline).chart()
        majority[name] = chart[0][0] if chart else None
        if len(emb) > 1:
            total = sum(d for _, d in chart)
            mixed = len(chart) > 1 and chart[1][1] > MIXED_SHARE * total
            clusters.append(Cluster(uri, mixed, float(np.min(emb @ emb.T))))
    names = hyp.labels()
    pairs = [
        Pair(uri, majority[a] == majority[b], float(means[a] @ means[b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return pairs, clusters


def tails(name: str, positive: list[float], negative: list[float], high: bool) -> str:
    """The `positive` values against the nearest `negative` ones (their top if `high`, else their bottom)."""
    neg = sorted(negative, reverse=high)[:8]
    pos = sorted(positive, reverse=high)
    return (
        f"{name}: {len(positive)} against {len(negative)}\n"
        f"  {', '.join(f'{v:.3f}' for v in pos)}\n"
        f"  nearest of the others: {', '.join(f'{v:.3f}' for v in neg)}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--sets", nargs="+", default=["dev", "shared", "dev-long"], choices=["dev", "shared", "dev-long"])
    ap.add_argument("--vad", nargs="+", default=["oracle", "system"], choices=["oracle", "system"])
    ap.add_argument("--piece-s", type=float, default=10.0)
    ap.add_argument("--min-piece-s", type=float, default=3.0)
    args = ap.parse_args(argv)
    cfg = heldout.load_config("general")
    models: dict[str, SpeakerEmbedder] = {}
    pairs: list[Pair] = []
    clusters: list[Cluster] = []
    for set_name in args.sets:
        for vad in args.vad:
            for c in heldout.load_sessions(args.dir / set_name, vad, mode=cfg.embedding.mode):
                name = c.embedded.model_name
                models.setdefault(name, load_model(name, "cpu"))
                p, k = measure(c, models[name], cfg, args.piece_s, args.min_piece_s)
                pairs += p
                clusters += k
    print(f"sets {' '.join(args.sets)}, VAD {' '.join(args.vad)}; pieces of {args.piece_s:g} s")
    same = [p.cosine for p in pairs if p.same_speaker]
    print(tails("merge: over-split pairs (same speaker)", same, [p.cosine for p in pairs if not p.same_speaker], True))
    mixed = [k.lowest_cosine for k in clusters if k.mixed]
    print(
        tails(
            "split: mixed clusters' lowest piece cosine",
            mixed,
            [k.lowest_cosine for k in clusters if not k.mixed],
            False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
