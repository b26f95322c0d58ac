"""Choose clustering thresholds on development data only: a grid over ClusteringConfig fields, scored on
cached embeddings of the dev sets (benchmarks/accuracy/heldout.py must have embedded them first).

    python -m benchmarks.accuracy.heldout /tmp/heldout --sets dev shared --config general      # embed once
    python -m benchmarks.accuracy.choose_clustering /tmp/heldout --config general \
        -g merge_threshold=0.55,0.6,0.65,0.7 -g split_threshold=null,0.4,0.45,0.5

Every combination is re-scored on each (set, VAD) cache; the table is sorted by the mean forgiving DER over
them, and a row is marked when a count on the shared recordings is off by more than one. Test sets are
refused: nothing may be chosen on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import warnings
from pathlib import Path

import yaml


from benchmarks.accuracy import heldout
from diarize.config import load_config


_CURRENT: list[int] = [0]  # the conversation being clustered, for the NME-SC memo below


def memoize_nme_sc() -> None:
    """The p-search does not depend on the merge/split thresholds and is two thirds of the clustering
    time: run it once per conversation and search setting, not once per grid point."""
    from diarize import clustering

    original, memo = clustering.nme_sc, {}

    def nme_sc(affinity, cfg, max_k, fixed_ratio=None):  # noqa: ANN001, ANN202
        key = (_CURRENT[0], len(affinity), max_k, fixed_ratio, cfg.max_rp_threshold, cfg.sparse_search_volume,
               cfg.nme_mat_size, cfg.nme_vote, cfg.device)  # fmt: skip
        if key not in memo:
            memo[key] = original(affinity, cfg, max_k, fixed_ratio)
        return memo[key]

    clustering.nme_sc = nme_sc


def forgiving(sessions: list[heldout.Cached], cfg) -> tuple[float, list[tuple[int, int]]]:
    """Pooled forgiving DER (%) and (true, estimated) counts per conversation, of what `diarize run` outputs
    (`heldout.hypothesis`: the pipeline's `label` and `assemble` stages on the cache)."""
    from diarize.rttm import read_rttm
    from diarize.score import COLLAR_PRESETS, score

    refs, hyps, counts = {}, {}, []
    for c in sessions:
        uri = c.session.uri
        _CURRENT[0] = id(c)  # the same conversation under another VAD is another Cached
        hyps[uri] = heldout.hypothesis(c, cfg)
        refs[uri] = read_rttm(c.session.rttm)[uri]
        counts.append((c.session.num_speakers, len(hyps[uri].labels())))
    return score(refs, hyps, None, *COLLAR_PRESETS["forgiving"], jer=False).total.percent()["der"], counts


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        key, _, values = item.partition("=")
        grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--config", default="general", help="preset or YAML whose embedding cache is scored")
    ap.add_argument("--sets", nargs="+", default=["dev", "shared"])
    ap.add_argument("--vad", nargs="+", default=["oracle", "system"])
    ap.add_argument("-g", "--grid", action="append", default=[], metavar="FIELD=V1,V2,...")
    args = ap.parse_args(argv)
    if any(s.startswith("test") for s in args.sets):
        print("choose_clustering: test sets are never used to choose anything", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")  # count-limit and uem notices, one per conversation and setting
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    memoize_nme_sc()
    cfg = load_config(args.config)
    cached = {
        (s, v): heldout.load_sessions(args.dir / s, v, mode=cfg.embedding.mode) for s in args.sets for v in args.vad
    }
    grid = parse_grid(args.grid)
    keys = list(grid)
    cols = [f"{s}/{v}" for s, v in cached]
    print("| " + " | ".join(keys) + " | mean fg | " + " | ".join(f"{c} fg, exact" for c in cols) + " | worst shared |")
    print("|---" * (len(keys) + len(cols) + 2) + "|")
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        c = dataclasses.replace(cfg, clustering=dataclasses.replace(cfg.clustering, **dict(zip(keys, values))))
        cells, fgs, worst = [], [], 0
        for (s, v), sessions in cached.items():
            fg, counts = forgiving(sessions, c)
            exact = sum(est == true for true, est in counts)
            fgs.append(fg)
            cells.append(f"{fg:.2f} %, {exact}/{len(counts)}")
            if s == "shared":
                worst = max([worst] + [abs(est - true) for true, est in counts])
        mean = sum(fgs) / len(fgs)
        line = f"| {' | '.join(map(str, values))} | {mean:.2f} | {' | '.join(cells)} | {worst}{' !' if worst > 1 else ''} |"
        rows.append((mean, line))
        print(line, flush=True)
    print("\nsorted by mean forgiving DER:")
    for _, line in sorted(rows)[:10]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
