"""Held-out development and test sets (issue 12): simulated conversations that resemble what users bring.

    python -m benchmarks.accuracy.heldout DIR                        # build DIR/dev + DIR/test, embed, report both
    python -m benchmarks.accuracy.heldout DIR --sets test --vad oracle --known
    python -m benchmarks.accuracy.heldout DIR --sets dev-long test-long --vad oracle      # 3-6 min conversations
    python -m benchmarks.accuracy.heldout DIR --sets dev-xl test-xl --vad oracle          # 20-40 min conversations
    python -m benchmarks.accuracy.heldout DIR -s merge_threshold=0.7 -s split_threshold=null   # re-score a variant
    python -m benchmarks.accuracy.heldout DIR --clustering variant.yaml --json out.json

Dev = what thresholds may be chosen on; test = never used to choose anything. The two sets use disjoint
speakers (benchmarks/accuracy/splits.py) and different seeds. Each set has 39 conversations in 8 conditions
(CONDITIONS below): clean; overlap (25 % of turns overlap the previous one); reverb (image-method room
responses, RT60 0.2-0.7 s, one room per conversation, every speaker in another place); additive noise
at 20, 10 and 5 dB SNR (alternately babble of 5 talkers from the same side's speakers not in the
conversation, and pink noise); telephone (two-party calls, 300-3400 Hz, 8 kHz, 8-bit mu-law); and
"fewwords" (4-10 speakers, two of whom say only one or two 0.8-2 s turns). All but clean and overlap
have 10 % overlapped turns. Speaker counts 2..10 appear in every set (2: 10 conversations, 3-10: 3-4
each); conversations run 0.5-1 min plus 4.5 s per speaker above two (up to 1.6 min; telephone calls
0.5-1.5 min): about 40 min of audio per set, so that embedding a set takes ~4 min of CPU on a quiet
machine (RTF ~0.1 per VAD).

The long sets, dev-long and test-long (`--sets dev-long test-long`), hold 8 conversations of 3-6 min
each from the same two sides' speakers (clean, overlap, reverb, noise 10 dB; 2-8 speakers; ~35 min of
audio, ~7 min of CPU to embed): 680-1,050 base windows, where the NME-SC p-search runs on a subsampled
affinity and clustering time matters, which the short sets never reach. dev-xl and test-xl hold 3
conversations of 20-40 min each (clean 5, overlap 7, noise 10 dB 4 speakers; 70-85 min of audio, ~15 min
of CPU to embed): 4,200-6,600 base windows, below where clustering switches to chunks.

Caching (for clustering work). The first run embeds every conversation once per VAD ("oracle": the
reference turns; "system": the preset's VAD, pyannote-seg by default) and keeps, per conversation,
DIR/<set>/cache/<vad>/<uri>.npz: for each scale i `starts_i`, `ends_i`, `emb_i` (float32) and the
scale's window/shift/weight (`windows`, `shifts`, `weights`), the speech `regions`, the VAD's `overlap`
regions, `duration`, and `key` (JSON of model + window/VAD/embedding settings: a mismatch re-embeds).
A config with `embedding.mode: fast` (`--config fast`) keeps its own cache, DIR/<set>/cache/<vad>-fast.
The reference RTTM is DIR/<set>/<uri>.rttm. Later runs only cluster and score: the whole dev or test
set is re-scored in seconds with any ClusteringConfig (`-s field=value`, YAML values: null, 0.7, [..];
or `--clustering FILE.yaml` holding ClusteringConfig fields, at top level or under `clustering:`).
From Python:

    from benchmarks.accuracy import heldout
    sessions = heldout.load_sessions(Path(DIR) / "dev", "oracle")
    report = heldout.rescore(sessions, heldout.load_config("general"), known=False)
    print(heldout.format_report(report))

Scores: forgiving = 0.25 s collar each side + overlap ignored; full = no collar, overlap scored; DER
pooled over conversations (error seconds / scored seconds). Output assembly (overlap assignment with
pyannote-seg's overlap regions) is the pipeline's own (`diarize.overlap`) when the segmentation windows
are given (`--seg-cache`, filled by benchmarks/accuracy/overlap_bench.py); the embedding cache does not hold them,
and without them the second speaker is the nearest other speaker in context (the pre-issue-12 rule).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


from benchmarks import DATA
from benchmarks.accuracy.simulate import SR, Acoustics, SimConfig, load_pool, render_conversation
from benchmarks.accuracy.splits import SIDES, speaker_files
from diarize.config import ClusteringConfig, ConfigError, DiarizerConfig, load_config
from diarize.rttm import read_rttm
from diarize.score import COLLAR_PRESETS as PRESETS, FileScore, ScoreReport, score
from diarize.windows import ScaleWindows

SIDE_SEEDS = {"dev": 1201, "test": 1202, "dev-long": 1211, "test-long": 1212, "dev-xl": 1221, "test-xl": 1222}
SETS = tuple(SIDE_SEEDS)  # "<side>-long", "<side>-xl": the side's speakers in longer conversations (LENGTHS)
# ... and "shared": the real recordings of ../shared/data/diarization (dev data; `link_shared`)
SETS += ("shared",)
VADS = ("oracle", "system")

# condition -> (turn-taking, acoustics, speaker count of each conversation)
CONDITIONS: dict[str, tuple[SimConfig, Acoustics, list[int]]] = {
    "clean": (SimConfig(), Acoustics(), [2, 3, 4, 6, 8, 10]),
    "overlap": (SimConfig(overlap_rate=0.25), Acoustics(), [2, 3, 5, 7, 9]),
    "reverb": (SimConfig(overlap_rate=0.1), Acoustics(rt60_s=(0.2, 0.7)), [2, 4, 5, 6, 8]),
    "noise20": (SimConfig(overlap_rate=0.1), Acoustics(snr_db=20.0), [3, 5, 7, 9]),
    "noise10": (SimConfig(overlap_rate=0.1), Acoustics(snr_db=10.0), [2, 4, 6, 10]),
    "noise5": (SimConfig(overlap_rate=0.1), Acoustics(snr_db=5.0), [2, 3, 5, 8]),
    "telephone": (SimConfig(overlap_rate=0.1), Acoustics(telephone=True), [2, 2, 2, 2, 2]),
    "fewwords": (SimConfig(overlap_rate=0.1, minor_speakers=2), Acoustics(), [4, 6, 7, 8, 9, 10]),
}

# The long sets: sessions long enough (680-1,050 base windows) that the p-search runs on a subsampled
# affinity and clustering time matters, which the short sets (<= 1.6 min) never reach.
LONG_CONDITIONS: dict[str, tuple[SimConfig, Acoustics, list[int]]] = {
    "clean": (SimConfig(), Acoustics(), [2, 4, 7]),
    "overlap": (SimConfig(overlap_rate=0.25), Acoustics(), [3, 6]),
    "reverb": (SimConfig(overlap_rate=0.1), Acoustics(rt60_s=(0.2, 0.7)), [5]),
    "noise10": (SimConfig(overlap_rate=0.1), Acoustics(snr_db=10.0), [4, 8]),
}
# The xl sets: 20-40 min, 4,000-7,000 base windows, below the size where clustering switches to chunks.
XL_CONDITIONS: dict[str, tuple[SimConfig, Acoustics, list[int]]] = {
    "clean": (SimConfig(), Acoustics(), [5]),
    "overlap": (SimConfig(overlap_rate=0.25), Acoustics(), [7]),
    "noise10": (SimConfig(overlap_rate=0.1), Acoustics(snr_db=10.0), [4]),
}
# set-name suffix -> (conditions, minutes per conversation; None: the short sets' rule)
LENGTHS: dict[str, tuple[dict, tuple[float, float] | None]] = {
    "": (CONDITIONS, None),
    "-long": (LONG_CONDITIONS, (3.0, 6.0)),
    "-xl": (XL_CONDITIONS, (20.0, 40.0)),
}


def set_side(name: str) -> tuple[str, str]:
    """("dev", "-xl") for "dev-xl": whose speakers, and which length."""
    side, _, kind = name.partition("-")
    return side, f"-{kind}" if kind else ""


@dataclass(frozen=True)
class Planned:
    uri: str
    condition: str
    speakers: tuple[str, ...]
    seconds: float
    seed: int
    sim: SimConfig
    acoustics: Acoustics


def plan_set(name: str) -> list[Planned]:
    """The conversations of one set, in a fixed order; everything drawn from the set's seed."""
    rng = np.random.default_rng(SIDE_SEEDS[name])
    side, kind = set_side(name)
    conditions, length = LENGTHS[kind]
    names = sorted(SIDES[side], key=int)
    plan = []
    for cond, (sim, ac, counts) in conditions.items():
        for j, n in enumerate(counts):
            spk = tuple(names[i] for i in sorted(rng.choice(len(names), n, replace=False)))
            if length:
                minutes = rng.uniform(*length)
            elif ac.telephone:
                minutes = rng.uniform(0.5, 1.5)
            else:
                minutes = rng.uniform(0.5, 1.0) + 0.075 * (n - 2)
            if ac.snr_db is not None:
                ac = dataclasses.replace(ac, noise=("babble", "pink")[j % 2])
            i = len(plan)
            plan.append(
                Planned(
                    f"{name.replace('-', '')}_{i:02d}_{cond}_{n}spk",
                    cond,
                    spk,
                    round(float(minutes) * 60, 1),
                    SIDE_SEEDS[name] * 1000 + i,
                    sim,
                    ac,
                )
            )
    return plan


@dataclass(frozen=True)
class Session:
    uri: str
    condition: str
    num_speakers: int
    wav: Path
    rttm: Path


SHARED = DATA / "diarization"


def link_shared(out: Path) -> list[Session]:
    """The "shared" set: the six real recordings of ../shared/data/diarization (development data, so
    tuning may look at them), linked into `out` so that they cache and re-score like a built set."""
    out.mkdir(parents=True, exist_ok=True)
    header = "uri\tcondition\tspeakers\n"
    rows = []
    with open(SHARED / "manifest.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            wav = SHARED.parent / r["wav"]  # manifest paths are relative to shared/data
            for src in (wav, SHARED.parent / r["rttm"]):
                dst = out / src.name
                if not dst.exists():
                    dst.symlink_to(src)
            rows.append(f"{wav.stem}\t{wav.parent.name}\t{r['n_speakers']}\n")
    (out / "list.tsv").write_text(header + "".join(rows))
    return list_sessions(out)


def build_set(out: Path, name: str) -> list[Session]:
    """Write (or reuse, when list.tsv matches the plan) the set's conversations into `out`."""
    if name == "shared":
        return link_shared(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_set(name)
    header = "uri\tcondition\tspeakers\tseconds\tseed\tspeaker_ids\tsim\tacoustics\n"
    listing = "".join(
        f"{p.uri}\t{p.condition}\t{len(p.speakers)}\t{p.seconds}\t{p.seed}\t{','.join(p.speakers)}\t"
        f"{json.dumps(dataclasses.asdict(p.sim))}\t{json.dumps(dataclasses.asdict(p.acoustics))}\n"
        for p in plan
    )
    list_tsv = out / "list.tsv"
    reuse = list_tsv.exists() and list_tsv.read_text() == header + listing
    files = speaker_files(set_side(name)[0])
    cache: dict[str, list[np.ndarray]] = {}

    def pool(names) -> dict[str, list[np.ndarray]]:
        for name in names:
            if name not in cache:
                cache.update(load_pool({name: files[name]}))
        return {name: cache[name] for name in names}

    sessions = []
    for p in plan:
        wav = out / f"{p.uri}.wav"
        if not (reuse and wav.exists() and wav.with_suffix(".rttm").exists()):
            cohort = (
                pool(sorted(set(files) - set(p.speakers)))
                if p.acoustics.noise == "babble" and p.acoustics.snr_db is not None
                else None
            )
            render_conversation(wav, pool(p.speakers), p.seconds, p.seed, p.sim, p.acoustics, cohort)
        sessions.append(Session(p.uri, p.condition, len(p.speakers), wav, wav.with_suffix(".rttm")))
    list_tsv.write_text(header + listing)
    return sessions


# --------------------------------------------------------------------------- embedding cache
@dataclass
class Cached:
    """One conversation's cached windows and embeddings under one VAD."""

    session: Session
    scales: list[ScaleWindows]
    embeddings: list[np.ndarray]  # per scale, (N_s, D)
    overlap: np.ndarray  # (K, 2) overlapped-speech regions from the VAD (empty for oracle)
    duration: float


def cache_key(cfg: DiarizerConfig, model_name: str, vad: str) -> str:
    key = {
        "model": model_name,
        "windows": dataclasses.asdict(cfg.windows),
        "min_embed_s": cfg.embedding.min_embed_s,
        "vad": "oracle",
    }
    from diarize.models.base import cpu_has_native_bf16

    bf16 = cpu_has_native_bf16()  # the cpu_bf16 settings apply only there (keys elsewhere stay as they were)
    if cfg.embedding.mode == "fast":
        e = cfg.embedding
        key["fast"] = [e.fast_chunk_s, e.fast_context_s, e.fast_local_context_s]
    if cfg.embedding.cpu_bf16 and bf16:
        key["cpu_bf16"] = True
    if vad != "oracle":
        vad_cfg = dataclasses.asdict(cfg.vad)
        if vad_cfg["pyannote_seg"].pop("cpu_bf16") and bf16:
            vad_cfg["pyannote_seg"]["cpu_bf16"] = True
        vad_cfg.pop("device")
        for k in (
            "overlap_min_solo_s",
            "overlap_min_similarity",
            "overlap_fallback",
        ):  # output assembly only, nothing cached
            vad_cfg.pop(k)
        vad_cfg["pyannote_seg"].pop("batch_size")
        # Keys added by issue 33 enter only away from their defaults, so that caches built before stay valid.
        for k, default in (("overlap_rule", "score"), ("count_speech", False)):
            if vad_cfg["pyannote_seg"][k] == default:
                vad_cfg["pyannote_seg"].pop(k)
        key["vad"] = vad_cfg
    return json.dumps(key, sort_keys=True)


def embed_session(s: Session, model, cfg: DiarizerConfig, vad: str, path: Path, key: str) -> None:
    """Run VAD, windows and embeddings as diarize.pipeline.diarize does, and save them to `path`."""
    from diarize.audio import load_audio
    from diarize.embeddings import embed_blocks
    from diarize.regions import clip
    from diarize.vad import oracle_regions, speech_regions
    from diarize.windows import multiscale_windows

    audio = load_audio(s.wav)
    duration = len(audio) / SR
    if vad == "oracle":
        regions, overlap = oracle_regions(read_rttm(s.rttm)[s.uri]), np.zeros((0, 2))
    else:
        regions, overlap = speech_regions(audio, cfg.vad)
    regions, overlap = clip(regions, 0.0, duration), clip(overlap, 0.0, duration)
    scales = multiscale_windows(regions, cfg.windows)
    embs = embed_blocks([audio], scales, model, cfg.embedding, regions=regions)  # the pipeline's own, one block
    save_cached(path, scales, embs, regions, overlap, duration, key)


def save_cached(
    path: Path,
    scales: list[ScaleWindows],
    embs: list[np.ndarray],
    regions: np.ndarray,
    overlap: np.ndarray,
    duration: float,
    key: str,
) -> None:
    """Write one conversation's cache file (format: module docstring); atomic."""
    arrays: dict[str, np.ndarray] = {
        "windows": np.array([sc.window for sc in scales]),
        "shifts": np.array([sc.shift for sc in scales]),
        "weights": np.array([sc.weight for sc in scales]),
        "regions": regions,
        "overlap": np.asarray(overlap),
        "duration": np.array(duration),
        "key": np.array(key),
    }
    for i, (sc, e) in enumerate(zip(scales, embs)):
        arrays[f"starts_{i}"], arrays[f"ends_{i}"], arrays[f"emb_{i}"] = sc.starts, sc.ends, e.astype(np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def read_cached(s: Session, path: Path) -> Cached:
    z = np.load(path)
    scales = [
        ScaleWindows(float(w), float(sh), float(wt), z[f"starts_{i}"], z[f"ends_{i}"])
        for i, (w, sh, wt) in enumerate(zip(z["windows"], z["shifts"], z["weights"]))
    ]
    return Cached(
        s, scales, [z[f"emb_{i}"] for i in range(len(scales))], z["overlap"].reshape(-1, 2), float(z["duration"])
    )


def cache_dir(set_dir: Path, vad: str, mode: str = "exact") -> Path:
    """Where a set's embeddings for one VAD and embedding mode live (exact: cache/<vad>, fast: cache/<vad>-fast)."""
    return set_dir / "cache" / (vad if mode == "exact" else f"{vad}-{mode}")


def list_sessions(set_dir: Path) -> list[Session]:
    with open(set_dir / "list.tsv", newline="") as f:
        return [
            Session(
                r["uri"], r["condition"], int(r["speakers"]), set_dir / f"{r['uri']}.wav", set_dir / f"{r['uri']}.rttm"
            )
            for r in csv.DictReader(f, delimiter="\t")
        ]


def load_sessions(set_dir: Path, vad: str, partial: bool = False, mode: str = "exact") -> list[Cached]:
    """Every conversation of a built and embedded set (raises if one is not cached, unless `partial`)."""
    out = []
    for s in list_sessions(set_dir):
        path = cache_dir(set_dir, vad, mode) / f"{s.uri}.npz"
        if not path.exists() and partial:
            continue
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: not cached; run `python -m benchmarks.accuracy.heldout {set_dir.parent}` first"
            )
        out.append(read_cached(s, path))
    return out


def ensure_cache(sessions: list[Session], set_dir: Path, cfg: DiarizerConfig, vad: str, model) -> float:
    """Embed every conversation whose cache is missing or stale; returns the CPU seconds spent."""
    key = cache_key(cfg, model.name, vad)
    folder = cache_dir(set_dir, vad, cfg.embedding.mode)
    folder.mkdir(parents=True, exist_ok=True)
    cpu = 0.0
    for s in sessions:
        path = folder / f"{s.uri}.npz"
        if path.exists() and str(np.load(path)["key"]) == key:
            continue
        t0 = time.process_time()
        embed_session(s, model, cfg, vad, path, key)
        cpu += time.process_time() - t0
        print(f"  embedded {s.uri} ({vad} VAD) {time.process_time() - t0:.1f} s CPU", file=sys.stderr, flush=True)
    return cpu


# --------------------------------------------------------------------------- clustering + scoring
@dataclass
class SessionResult:
    uri: str
    condition: str
    speakers: int
    estimated: int
    scores: dict[str, FileScore]  # preset -> score


@dataclass
class SetReport:
    name: str
    results: list[SessionResult] = field(default_factory=list)
    cpu_s: float = 0.0  # clustering + output + scoring


def hypothesis(c: Cached, cfg: DiarizerConfig, num_speakers: int | None, local=None):
    """Clustering and output assembly of diarize.pipeline.diarize on cached embeddings. The cache
    holds no segmentation windows: without `local` (models.pyannet.LocalSpeakers) the second
    speaker in an overlap is the nearest one in context (benchmarks/accuracy/overlap_bench.py has both)."""
    from diarize.clustering import cluster
    from diarize.config import SpeakerCount
    from diarize.overlap import overlap_aware_annotation
    from diarize.rttm import labels_to_annotation

    res = cluster(c.embeddings, c.scales, cfg.clustering, SpeakerCount(num_speakers))
    base = c.scales[-1]
    if cfg.vad.overlap_assignment and len(c.overlap) and len(base):
        return overlap_aware_annotation(
            base.starts,
            base.ends,
            res.labels,
            c.embeddings[-1],
            c.overlap,
            uri=c.session.uri,
            context_s=cfg.vad.overlap_context_s,
            local=local,
            min_solo_s=cfg.vad.overlap_min_solo_s,
            min_similarity=cfg.vad.overlap_min_similarity,
            fallback=cfg.vad.overlap_fallback,
        )
    return labels_to_annotation(base.starts, base.ends, res.labels, uri=c.session.uri)


def rescore(
    sessions: list[Cached], cfg: DiarizerConfig, known: bool = False, name: str = "", local: dict | None = None
) -> SetReport:
    """Cluster every cached conversation with `cfg.clustering` and score it against its reference.
    `local`: uri -> the segmentation windows' LocalSpeakers (see `load_local`), for the pipeline's
    overlap assignment; without it the second speaker is the nearest one in context."""
    t0 = time.process_time()
    report = SetReport(name)
    for c in sessions:
        ref = read_rttm(c.session.rttm)[c.session.uri]
        hyp = hypothesis(c, cfg, c.session.num_speakers if known else None, (local or {}).get(c.session.uri))
        scores = {
            p: score({c.session.uri: ref}, {c.session.uri: hyp}, None, *PRESETS[p], jer=False).files[c.session.uri]
            for p in PRESETS
        }
        report.results.append(
            SessionResult(c.session.uri, c.session.condition, c.session.num_speakers, len(hyp.labels()), scores)
        )
    report.cpu_s = time.process_time() - t0
    return report


def load_local(folder: Path, sessions: list[Cached]) -> dict:
    """uri -> LocalSpeakers from segmentation windows cached by benchmarks/accuracy/overlap_bench.py
    (FOLDER/<uri>.npz: window `starts` in samples, `logp` (C, F, 7), `n` samples); missing files are skipped."""
    from diarize.models.pyannet import frame_scores

    out = {}
    for c in sessions:
        path = folder / f"{c.session.uri}.npz"
        if path.exists():
            z = np.load(path)
            out[c.session.uri] = frame_scores(z["starts"], z["logp"].astype(np.float32), int(z["n"])).local
    return out


def pooled(results: list[SessionResult], preset: str) -> dict[str, float]:
    return ScoreReport(files={r.uri: r.scores[preset] for r in results}).total.percent()


def format_report(report: SetReport) -> str:
    """Markdown tables: per condition and pooled; count confusion; exact count per true count."""
    rs = report.results
    lines = [
        f"### {report.name}",
        "",
        "| condition | conv. | forgiving DER (miss / FA / conf.) | full DER (miss / FA / conf.) | exact count "
        "| over / under |",
        "|---|---|---|---|---|---|",
    ]
    groups = list(dict.fromkeys(r.condition for r in rs))
    for g in groups + ["**all**"]:
        sub = rs if g == "**all**" else [r for r in rs if r.condition == g]
        cells = []
        for p in PRESETS:
            t = pooled(sub, p)
            cells.append(f"{t['der']:.2f} % ({t['miss']:.2f} / {t['false_alarm']:.2f} / {t['confusion']:.2f})")
        ok = sum(r.speakers == r.estimated for r in sub)
        over, under = sum(r.estimated > r.speakers for r in sub), sum(r.estimated < r.speakers for r in sub)
        lines.append(
            f"| {g} | {len(sub)} | {cells[0]} | {cells[1]} | {ok}/{len(sub)} = {100 * ok / len(sub):.0f} % "
            f"| {over} / {under} |"
        )
    true_ns = sorted({r.speakers for r in rs})
    est_ns = sorted({r.estimated for r in rs} | set(true_ns))
    lines += [
        "",
        "Count confusion (rows: true count, columns: estimated; last column: exact):",
        "",
        "| true \\ est. | " + " | ".join(str(e) for e in est_ns) + " | exact |",
        "|---" * (len(est_ns) + 2) + "|",
    ]
    for n in true_ns:
        sub = [r for r in rs if r.speakers == n]
        ok = sum(r.estimated == n for r in sub)
        lines.append(
            f"| {n} | "
            + " | ".join(str(sum(r.estimated == e for r in sub) or "") for e in est_ns)
            + f" | {ok}/{len(sub)} |"
        )
    wrong = [r for r in rs if r.estimated != r.speakers]
    if wrong:
        lines += ["", "Count errors: " + ", ".join(f"{r.uri} {r.speakers}->{r.estimated}" for r in wrong)]
    return "\n".join(lines)


def report_json(report: SetReport) -> dict:
    return {
        "name": report.name,
        "cpu_s": report.cpu_s,
        "sessions": [
            {
                "uri": r.uri,
                "condition": r.condition,
                "speakers": r.speakers,
                "estimated": r.estimated,
                **{p: r.scores[p].percent() for p in PRESETS},
            }
            for r in report.results
        ],
        "total": {p: pooled(report.results, p) for p in PRESETS},
        "exact_count_rate": sum(r.speakers == r.estimated for r in report.results) / max(1, len(report.results)),
    }


# --------------------------------------------------------------------------- CLI
def clustering_overrides(cfg: DiarizerConfig, yaml_path: Path | None, sets: list[str]) -> DiarizerConfig:
    """`cfg` with ClusteringConfig fields replaced from a YAML file and then from `field=value` strings."""
    import yaml

    changes: dict = {}
    if yaml_path is not None:
        data = yaml.safe_load(yaml_path.read_text()) or {}
        changes.update(data.get("clustering", data) if isinstance(data, dict) else {})
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"-s {item}: expected field=value")
        k, v = item.split("=", 1)
        changes[k.strip()] = None if v.strip() in ("None", "none") else yaml.safe_load(v)
    names = {f.name for f in dataclasses.fields(ClusteringConfig)}
    unknown = set(changes) - names
    if unknown:
        raise ConfigError(f"unknown clustering field(s) {sorted(unknown)}; known: {sorted(names)}")
    return dataclasses.replace(cfg, clustering=dataclasses.replace(cfg.clustering, **changes))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="where the sets live (DIR/dev, DIR/test; built on first use)")
    ap.add_argument("--sets", nargs="+", default=list(SIDES), choices=list(SETS))
    ap.add_argument("--vad", nargs="+", default=list(VADS), choices=list(VADS))
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general", help="preset or YAML for VAD, windows, embeddings, clustering")
    ap.add_argument("--clustering", type=Path, help="YAML of ClusteringConfig fields to re-score with")
    ap.add_argument(
        "-s",
        "--set",
        dest="sets_",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one ClusteringConfig field (repeatable)",
    )
    ap.add_argument("--known", action="store_true", help="give the reference speaker count")
    ap.add_argument("--no-embed", action="store_true", help="only re-score; fail if a cache is missing")
    ap.add_argument("--partial", action="store_true", help="with --no-embed: score the cached conversations only")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--seg-cache",
        type=Path,
        help="system VAD: segmentation windows cached by overlap_bench.py (SEG_CACHE/<set>/lp/<uri>.npz), "
        "so that overlap assignment is the pipeline's (without: nearest speaker in context)",
    )
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")
    try:
        cfg = clustering_overrides(load_config(args.config), args.clustering, args.sets_)
    except (ConfigError, OSError) as e:
        print(f"heldout: {e}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    model = None
    out = []
    print(
        f"config={args.config} model={args.model} count={'known' if args.known else 'unknown'} "
        f"clustering={json.dumps(dataclasses.asdict(cfg.clustering))}"
    )
    for side in args.sets:
        set_dir = args.dir / side
        sessions = build_set(set_dir, side) if not args.no_embed else list_sessions(set_dir)
        minutes = sum(float(__import__("soundfile").info(str(s.wav)).duration) for s in sessions) / 60
        for vad in args.vad:
            embed_cpu = 0.0
            if not args.no_embed:
                if model is None:
                    from diarize.models import load_model

                    model = load_model(args.model, "cpu")
                embed_cpu = ensure_cache(sessions, set_dir, cfg, vad, model)
            cached = load_sessions(set_dir, vad, partial=args.partial, mode=cfg.embedding.mode)
            if len(cached) < len(sessions):
                print(f"\nPARTIAL: {len(cached)} of {len(sessions)} conversations cached")
            label = (
                f"{side} set, {'oracle VAD' if vad == 'oracle' else cfg.vad.method + ' VAD'}, "
                f"{'known' if args.known else 'unknown'} count"
            )
            local = load_local(args.seg_cache / side / "lp", cached) if args.seg_cache and vad == "system" else None
            rep = rescore(cached, cfg, args.known, label, local)
            print()
            print(format_report(rep))
            print(
                f"\n{len(sessions)} conversations, {minutes:.1f} min; CPU: embedding {embed_cpu:.0f} s "
                f"(0 = cached), clustering + scoring {rep.cpu_s:.1f} s"
            )
            out.append({"set": side, "vad": vad, **report_json(rep), "embed_cpu_s": embed_cpu})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
