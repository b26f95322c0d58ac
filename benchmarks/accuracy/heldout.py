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
reference turns; "system": the preset's VAD, pyannote-seg by default) with the pipeline's own `speech`
and `embed` stages, and keeps, per conversation, DIR/<set>/cache/<vad>/<uri>.npz: the `pipeline.Embedded`
(`pipeline.save_embedded`: speech regions, the VAD's overlap regions and local speakers, every scale's
windows and embeddings), and beside it <uri>.key (JSON of model + window/VAD/embedding settings: a
mismatch, or a cache from before this format, re-embeds). Embedding mode "fast" (the default) keeps its
own cache, DIR/<set>/cache/<vad>-fast; "exact" (`--config exact`) uses DIR/<set>/cache/<vad>.
The reference RTTM is DIR/<set>/<uri>.rttm. Later runs only cluster and score: the whole dev or test
set is re-scored in seconds with any ClusteringConfig (`-s field=value`, YAML values: null, 0.7, [..];
or `--clustering FILE.yaml` holding ClusteringConfig fields, at top level or under `clustering:`).
From Python:

    from benchmarks.accuracy import heldout
    sessions = heldout.load_sessions(Path(DIR) / "dev", "oracle")
    report = heldout.rescore(sessions, heldout.load_config("general"), known=False)
    print(heldout.format_report(report))

Scores: forgiving = 0.25 s collar each side + overlap ignored; full = no collar, overlap scored; DER
pooled over conversations (error seconds / scored seconds). Each hypothesis is what `diarize run` writes
for the conversation: the pipeline's `label` and `assemble` stages on the cache, as `pipeline.diarize`
composes them (so overlapped speech gets its second speaker from pyannote-seg's local speakers).
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
from pyannote.core import Annotation


from benchmarks import DATA
from benchmarks.accuracy.simulate import Acoustics, SimConfig, load_pool, render_conversation
from benchmarks.accuracy.splits import SIDES, speaker_files
from diarize import pipeline
from diarize.config import ClusteringConfig, ConfigError, DiarizerConfig, SpeakerCount, load_config
from diarize.embeddings import check_inputs_fit
from diarize.files import atomic_write
from diarize.models import SpeakerEmbedder
from diarize.pipeline import Embedded, load_embedded, save_embedded
from diarize.rttm import read_rttm
from diarize.score import COLLAR_PRESETS as PRESETS, FileScore, ScoreReport, score

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


def link_shared(out: Path, shared: Path = SHARED) -> list[Session]:
    """The "shared" set: the six real recordings of ../shared/data/diarization (development data, so
    tuning may look at them), linked into `out` so that they cache and re-score like a built set."""
    out.mkdir(parents=True, exist_ok=True)
    header = "uri\tcondition\tspeakers\n"
    rows = []
    with open(shared / "manifest.tsv", newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            wav = shared.parent / r["wav"]  # manifest paths are relative to shared/data
            for src in (wav, shared.parent / r["rttm"]):
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
    """One conversation and what the pipeline's `speech` and `embed` stages made of it under one VAD."""

    session: Session
    embedded: Embedded


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
            "turn_pad_s",
            "turn_join_s",
        ):  # output assembly only, nothing cached
            vad_cfg.pop(k)
        vad_cfg["pyannote_seg"].pop("batch_size")
        # Keys added by issue 33 enter only away from their defaults, so that caches built before stay valid.
        for k, default in (("overlap_rule", "score"), ("count_speech", False)):
            if vad_cfg["pyannote_seg"][k] == default:
                vad_cfg["pyannote_seg"].pop(k)
        key["vad"] = vad_cfg
    return json.dumps(key, sort_keys=True)


def embed_session(s: Session, model: SpeakerEmbedder, cfg: DiarizerConfig, vad: str) -> Embedded:
    """The pipeline's `speech` and `embed` stages on one conversation ("oracle": its reference turns are the speech)."""
    source = pipeline.open_source(s.wav, uri=s.uri)
    oracle = read_rttm(s.rttm)[s.uri] if vad == "oracle" else None
    return pipeline.embed(source, pipeline.speech(source, cfg, oracle_vad=oracle), model, cfg)


def key_path(path: Path) -> Path:
    """Where the settings of the cache file `path` are kept: <uri>.key beside <uri>.npz."""
    return path.with_suffix(".key")


def save_cached(path: Path, embedded: Embedded, key: str) -> None:
    """One conversation's cache: `embedded` at `path` (`pipeline.save_embedded`), then its settings `key`."""
    save_embedded(embedded, path)
    atomic_write(key_path(path), key)


def cached_key(path: Path) -> str | None:
    """The settings the cache file `path` was made with; None when it is missing or from an older format."""
    return key_path(path).read_text() if path.exists() and key_path(path).exists() else None


def read_cached(s: Session, path: Path) -> Cached:
    embedded = load_embedded(path)
    if embedded.speech.found_by is None:  # a cache from before `Speech.found_by`: its key says
        try:
            vad = json.loads(cached_key(path) or "{}").get("vad")
        except (ValueError, AttributeError):
            vad = None
        embedded.speech.found_by = vad.get("method") if isinstance(vad, dict) else vad
    return Cached(s, embedded)


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
        if cached_key(path) is None and partial:
            continue
        if cached_key(path) is None:
            raise FileNotFoundError(
                f"{path}: not cached; run `python -m benchmarks.accuracy.heldout {set_dir.parent}` first"
            )
        out.append(read_cached(s, path))
    return out


def ensure_cache(
    sessions: list[Session], set_dir: Path, cfg: DiarizerConfig, vad: str, model: SpeakerEmbedder
) -> float:
    """Embed every conversation whose cache is missing or stale; returns the CPU seconds spent."""
    check_inputs_fit(model, cfg)  # as `pipeline.diarize` does first: a bad window setting is a ConfigError
    key = cache_key(cfg, model.name, vad)
    folder = cache_dir(set_dir, vad, cfg.embedding.mode)
    folder.mkdir(parents=True, exist_ok=True)
    cpu = 0.0
    for s in sessions:
        path = folder / f"{s.uri}.npz"
        if cached_key(path) == key:
            continue
        t0 = time.process_time()
        save_cached(path, embed_session(s, model, cfg, vad), key)
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


def hypothesis(c: Cached, cfg: DiarizerConfig, num_speakers: int | None = None) -> Annotation:
    """What `diarize run` outputs for the conversation: the pipeline's `label` and `assemble` stages on its
    cache, composed as `pipeline.diarize` composes them."""
    clusters = pipeline.label(c.embedded, cfg, SpeakerCount(num_speakers))
    return pipeline.assemble(c.embedded, clusters, cfg).annotation


def rescore(sessions: list[Cached], cfg: DiarizerConfig, known: bool = False, name: str = "") -> SetReport:
    """Cluster every cached conversation with `cfg.clustering`, assemble its output with `cfg`, and score it
    against its reference."""
    t0 = time.process_time()
    report = SetReport(name)
    for c in sessions:
        ref = read_rttm(c.session.rttm)[c.session.uri]
        hyp = hypothesis(c, cfg, c.session.num_speakers if known else None)
        scores = {
            p: score({c.session.uri: ref}, {c.session.uri: hyp}, None, *PRESETS[p], jer=False).files[c.session.uri]
            for p in PRESETS
        }
        report.results.append(
            SessionResult(c.session.uri, c.session.condition, c.session.num_speakers, len(hyp.labels()), scores)
        )
    report.cpu_s = time.process_time() - t0
    return report


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


def add_set_option(ap: argparse.ArgumentParser) -> None:
    """`-s FIELD=VALUE` (repeatable, into `sets_`): the ClusteringConfig overrides of `clustering_overrides`."""
    ap.add_argument(
        "-s",
        "--set",
        dest="sets_",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one ClusteringConfig field (repeatable)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="where the sets live (DIR/dev, DIR/test; built on first use)")
    ap.add_argument("--sets", nargs="+", default=list(SIDES), choices=list(SETS))
    ap.add_argument("--vad", nargs="+", default=list(VADS), choices=list(VADS))
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general", help="preset or YAML for VAD, windows, embeddings, clustering")
    ap.add_argument("--clustering", type=Path, help="YAML of ClusteringConfig fields to re-score with")
    add_set_option(ap)
    ap.add_argument("--known", action="store_true", help="give the reference speaker count")
    ap.add_argument("--no-embed", action="store_true", help="only re-score; fail if a cache is missing")
    ap.add_argument("--partial", action="store_true", help="with --no-embed: score the cached conversations only")
    ap.add_argument("--json", type=Path)
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
            rep = rescore(cached, cfg, args.known, label)
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
