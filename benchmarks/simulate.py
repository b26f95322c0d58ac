"""Simulated conversations from single-speaker utterances, with an exact reference RTTM.

A conversation takes N speakers at random from a LibriSpeech-style tree (one folder per speaker holding
.wav/.flac utterances, at any depth) and lets them talk in turns: each turn is a 1.5-8 s piece of one of
the speaker's utterances (leading/trailing silence trimmed), the next speaker differs from the current one,
every speaker talks in the first N turns, pauses are 0.2-1.2 s, and with probability `overlap_rate` a turn
starts 0.2-1.0 s before the previous one ends (never before it has run 0.5 s). Each piece gets a random
peak level of -8..-1 dBFS and everything sits on a -65 dBFS white-noise floor. The RTTM holds the exact
sample positions of every piece, so with overlap it contains overlapping turns.

Audio is written block by block (memory stays bounded for 10-hour files: benchmarks/long_form.py uses
the same writer). Everything is seeded: the same arguments give the same files, byte for byte.

    python benchmarks/simulate.py OUT_DIR                       # 30 conversations, 2-7 speakers, 1-5 min
    python benchmarks/simulate.py OUT_DIR --count 60 --overlap-rate 0.2 --speakers 2 4 --minutes 0.5 2
    python benchmarks/simulate.py OUT_DIR --root /data/LibriSpeech/test-clean

OUT_DIR gets sim_XXX.wav, sim_XXX.rttm and list.tsv (uri, speakers, seconds, overlap_rate, seed).
Default root: the LibriSpeech folders of ../shared/data/speakers (57 speakers; most have one 3-35 s
utterance, so pieces of a speaker repeat in longer conversations).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_ROOTS = [REPO.parent / "shared" / "data" / "speakers" / "librispeech_test-other",
                 REPO.parent / "shared" / "data" / "speakers" / "librispeech_train-clean-100_1utt"]
SR = 16000
AUDIO_EXT = (".wav", ".flac")


@dataclass(frozen=True)
class SimConfig:
    turn_s: tuple[float, float] = (1.5, 8.0)
    pause_s: tuple[float, float] = (0.2, 1.2)
    overlap_rate: float = 0.0
    overlap_s: tuple[float, float] = (0.2, 1.0)
    level_dbfs: tuple[float, float] = (-8.0, -1.0)
    noise_dbfs: float = -65.0


def find_speakers(roots: list[Path]) -> dict[str, list[Path]]:
    """Speaker id -> utterance files: every folder that directly holds audio files is one speaker."""
    speakers: dict[str, list[Path]] = {}
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: speaker root not found")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXT)
        for f in files:
            speakers.setdefault(f.parent.name, []).append(f)
    if not speakers:
        raise FileNotFoundError(f"no .wav/.flac utterances under {', '.join(map(str, roots))}")
    return speakers


def trim(x: np.ndarray, frame: int = 320, rel_db: float = 40.0) -> np.ndarray:
    """Drop leading/trailing 20 ms frames more than rel_db below the loudest frame."""
    k = len(x) // frame
    if k == 0:
        return x
    e = 10 * np.log10((x[: k * frame].reshape(k, frame).astype(np.float64) ** 2).mean(1) + 1e-12)
    on = np.flatnonzero(e > e.max() - rel_db)
    return x[on[0] * frame: (on[-1] + 1) * frame]


def load_pool(files: dict[str, list[Path]]) -> dict[str, list[np.ndarray]]:
    from diarize.audio import load_audio

    return {spk: [trim(load_audio(f)) for f in fs] for spk, fs in files.items()}


def turns(pool: dict[str, list[np.ndarray]], seconds: float, rng: np.random.Generator,
          cfg: SimConfig) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yield (speaker, piece, gap in samples before it; negative = overlap) until `seconds` are filled."""
    names = sorted(pool)
    first = list(rng.permutation(len(names)))  # everyone speaks early, so short files hold all speakers
    pos, prev, prev_len = 0, -1, 0
    while pos < seconds * SR or first:  # every speaker gets at least one turn
        s = int(first.pop(0)) if first else int(rng.integers(len(names)))
        if s == prev:
            continue
        utts = pool[names[s]]
        for _ in range(10):  # a cut can land in a long pause: try another one
            utt = utts[int(rng.integers(len(utts)))]
            want = int(rng.uniform(*cfg.turn_s) * SR)
            off = int(rng.integers(0, max(1, len(utt) - want)))
            piece = trim(utt[off: off + want])
            if len(piece) >= SR // 2:
                break
        else:
            piece = max(utts, key=len)[:want]
        piece = piece / (np.abs(piece).max() + 1e-9) * 10 ** (rng.uniform(*cfg.level_dbfs) / 20)
        if prev >= 0 and rng.random() < cfg.overlap_rate:
            gap = -min(int(rng.uniform(*cfg.overlap_s) * SR), max(0, prev_len - SR // 2))
        else:
            gap = int(rng.uniform(*cfg.pause_s) * SR)
        if prev < 0:
            # A little silence before the first word. (Drawn a second time; kept so that the seeded
            # sets behind benchmarks/RESULTS.md stay byte for byte the same.)
            gap = int(rng.uniform(*cfg.pause_s) * SR)
        yield names[s], piece.astype(np.float64), gap
        pos += gap + len(piece)
        prev, prev_len = s, len(piece)


def write_conversation(wav: Path, pool: dict[str, list[np.ndarray]], seconds: float, seed: int,
                       cfg: SimConfig = SimConfig()) -> Path:
    """Write `wav` (16 kHz, 16-bit) and its exact reference `wav.with_suffix('.rttm')`; returns the RTTM path.

    Samples are mixed in a small carry buffer and flushed once no later turn can reach them.
    """
    import soundfile as sf

    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng(seed + 7919)
    uri = wav.stem
    lines: list[str] = []
    buf = np.zeros(0)
    buf_start = 0  # absolute sample index of buf[0]
    cursor = 0  # end of the latest turn
    noise = 10 ** (cfg.noise_dbfs / 20)
    with sf.SoundFile(str(wav), "w", SR, 1, "PCM_16") as f:
        for spk, piece, gap in turns(pool, seconds, rng, cfg):
            start = cursor + gap
            end = start + len(piece)
            if end > buf_start + len(buf):
                buf = np.concatenate([buf, noise_rng.standard_normal(end - buf_start - len(buf)) * noise])
            buf[start - buf_start: end - buf_start] += piece
            lines.append(f"SPEAKER {uri} 1 {start / SR:.4f} {len(piece) / SR:.4f} <NA> <NA> {spk} <NA> <NA>")
            cursor = end
            # A later turn can start at most overlap_s[1] before `cursor`; everything before that is final.
            safe = cursor - int(cfg.overlap_s[1] * SR) - 1 - buf_start
            if safe > 0:
                f.write(np.clip(buf[:safe], -1, 1).astype(np.float32))
                buf, buf_start = buf[safe:], buf_start + safe
        tail = np.concatenate([buf, noise_rng.standard_normal(int(cfg.pause_s[0] * SR)) * noise])
        f.write(np.clip(tail, -1, 1).astype(np.float32))
    rttm = wav.with_suffix(".rttm")
    rttm.write_text("\n".join(lines) + "\n")
    return rttm


@dataclass(frozen=True)
class Conversation:
    uri: str
    wav: Path
    rttm: Path
    num_speakers: int
    seconds: float
    seed: int


def make_set(out: Path, count: int = 30, speakers: tuple[int, int] = (2, 7), minutes: tuple[float, float] = (1, 5),
             seed: int = 0, cfg: SimConfig = SimConfig(), roots: list[Path] | None = None) -> list[Conversation]:
    """Build (or reuse, when list.tsv matches) `count` conversations; speaker counts cycle through the range."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = find_speakers(roots or DEFAULT_ROOTS)
    names = sorted(files)
    n_range = list(range(speakers[0], speakers[1] + 1))
    if n_range[-1] > len(names):
        raise ValueError(f"asked for up to {n_range[-1]} speakers but the root holds {len(names)}")
    plan = []
    for i in range(count):
        n = n_range[i % len(n_range)]
        chosen = sorted(rng.choice(len(names), n, replace=False))
        plan.append((f"sim_{i:03d}", [names[j] for j in chosen], float(rng.uniform(*minutes) * 60),
                     seed * 100003 + i))
    listing = "".join(f"{uri}\t{len(spk)}\t{sec:.1f}\t{cfg.overlap_rate:g}\t{s}\t{','.join(spk)}\n"
                      for uri, spk, sec, s in plan)
    list_tsv = out / "list.tsv"
    header = "uri\tspeakers\tseconds\toverlap_rate\tseed\tspeaker_ids\n"
    reuse = list_tsv.exists() and list_tsv.read_text() == header + listing
    convs = []
    cache: dict[str, list[np.ndarray]] = {}
    for uri, spk, sec, s in plan:
        wav = out / f"{uri}.wav"
        if not (reuse and wav.exists() and wav.with_suffix(".rttm").exists()):
            for name in spk:
                if name not in cache:
                    cache.update(load_pool({name: files[name]}))
            write_conversation(wav, {name: cache[name] for name in spk}, sec, s, cfg)
        convs.append(Conversation(uri, wav, wav.with_suffix(".rttm"), len(spk), sec, s))
    list_tsv.write_text(header + listing)
    return convs


def add_set_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--count", type=int, default=30, help="number of conversations [30]")
    ap.add_argument("--speakers", type=int, nargs=2, default=[2, 7], metavar=("MIN", "MAX"),
                    help="speaker counts, cycled over the set [2 7]")
    ap.add_argument("--minutes", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"),
                    help="length range, uniform [1 5]")
    ap.add_argument("--overlap-rate", type=float, default=0.0, help="probability a turn overlaps the previous [0]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", type=Path, action="append",
                    help="LibriSpeech-style speaker tree (repeatable) [shared/data/speakers/librispeech_*]")


def set_from_args(out: Path, args: argparse.Namespace) -> list[Conversation]:
    return make_set(out, args.count, tuple(args.speakers), tuple(args.minutes), args.seed,
                    SimConfig(overlap_rate=args.overlap_rate), args.root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    add_set_arguments(ap)
    args = ap.parse_args(argv)
    try:
        convs = set_from_args(args.out, args)
    except (FileNotFoundError, ValueError) as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
    total = sum(c.seconds for c in convs)
    print(f"{len(convs)} conversations, {total / 60:.1f} min, in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
