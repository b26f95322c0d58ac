"""Simulated conversations from single-speaker utterances, with an exact reference RTTM.

A conversation takes N speakers at random from a LibriSpeech-style tree (one folder per speaker holding
.wav/.flac utterances, at any depth) and lets them talk in turns: each turn is a 1.5-8 s piece of one of
the speaker's utterances (leading/trailing silence trimmed), the next speaker differs from the current one,
every speaker talks in the first N turns, pauses are 0.2-1.2 s, and with probability `overlap_rate` a turn
starts 0.2-1.0 s before the previous one ends (never before it has run 0.5 s). Each piece gets a random
peak level of -8..-1 dBFS and everything sits on a -65 dBFS white-noise floor. The RTTM holds the exact
sample positions of every piece, so with overlap it contains overlapping turns.

Audio is written block by block (memory stays bounded for 10-hour files: benchmarks/accuracy/long_form.py uses
the same writer). Everything is seeded: the same arguments give the same files, byte for byte.

    python -m benchmarks.accuracy.simulate OUT_DIR                       # 30 conversations, 2-7 speakers, 1-5 min
    python -m benchmarks.accuracy.simulate OUT_DIR --count 60 --overlap-rate 0.2 --speakers 2 4 --minutes 0.5 2
    python -m benchmarks.accuracy.simulate OUT_DIR --root /data/LibriSpeech/test-clean

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

from benchmarks import DATA

DEFAULT_ROOTS = [
    DATA / "speakers" / "librispeech_test-other",
    DATA / "speakers" / "librispeech_train-clean-100_1utt",
]
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
    # Speakers who say little: this many speakers (drawn per conversation) get only 1 or 2 turns
    # (alternating) of minor_turn_s each. 0 keeps the turn draws, and so the seeded sets, as before.
    minor_speakers: int = 0
    minor_turn_s: tuple[float, float] = (0.8, 2.0)


@dataclass(frozen=True)
class Acoustics:
    """What the room, the background and the channel do to a conversation (`render_conversation`).

    rt60_s: reverberation time range; each speaker gets its own image-method room impulse response
        (pyroomacoustics ShoeBox, one random room and microphone per conversation). None: dry.
    snr_db: additive noise at this speech-to-noise ratio (speech power measured over the reference
        speech); `noise` is "babble" (5 talkers from a cohort the conversation does not use) or "pink".
    telephone: 300-3400 Hz band, 8 kHz, 8-bit mu-law, back to 16 kHz (applied last, to everything).
    """

    rt60_s: tuple[float, float] | None = None
    snr_db: float | None = None
    noise: str = "babble"
    telephone: bool = False


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
    return x[on[0] * frame : (on[-1] + 1) * frame]


def load_pool(files: dict[str, list[Path]]) -> dict[str, list[np.ndarray]]:
    from diarize.audio import load_audio

    return {spk: [trim(load_audio(f)) for f in fs] for spk, fs in files.items()}


def turns(
    pool: dict[str, list[np.ndarray]], seconds: float, rng: np.random.Generator, cfg: SimConfig
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yield (speaker, piece, gap in samples before it; negative = overlap) until `seconds` are filled."""
    names = sorted(pool)
    first = list(rng.permutation(len(names)))  # everyone speaks early, so short files hold all speakers
    # Speakers who say little, and how many turns each may take (1, 2, 1, ...). No draw when there are
    # none, so the seeded sets without them stay as they were.
    minor: dict[int, int] = {}
    if cfg.minor_speakers:
        chosen = rng.choice(len(names), max(0, min(cfg.minor_speakers, len(names) - 2)), replace=False)
        minor = {int(m): 1 + i % 2 for i, m in enumerate(chosen)}
    taken = [0] * len(names)
    pos, prev, prev_len = 0, -1, 0
    while pos < seconds * SR or first:  # every speaker gets at least one turn
        s = int(first.pop(0)) if first else int(rng.integers(len(names)))
        if s == prev or (s in minor and taken[s] >= minor[s]):
            continue
        taken[s] += 1
        utts = pool[names[s]]
        for _ in range(10):  # a cut can land in a long pause: try another one
            utt = utts[int(rng.integers(len(utts)))]
            want = int(rng.uniform(*(cfg.minor_turn_s if s in minor else cfg.turn_s)) * SR)
            off = int(rng.integers(0, max(1, len(utt) - want)))
            piece = trim(utt[off : off + want])
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


def write_conversation(
    wav: Path, pool: dict[str, list[np.ndarray]], seconds: float, seed: int, cfg: SimConfig = SimConfig()
) -> Path:
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
            buf[start - buf_start : end - buf_start] += piece
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


# --------------------------------------------------------------------------- room, noise, channel
MAX_IMAGE_ORDER = 40  # image-source order cap: higher orders cost O(order^3) and add only the far tail


def room_impulse_responses(
    speakers: list[str], rt60_s: tuple[float, float], rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One shoebox room (4-9 x 3.5-7 x 2.5-3.5 m), one microphone, each speaker somewhere else in it.

    Returns ({speaker: impulse response starting ~1 ms before its direct path}, room facts). The
    direct-path delay is cut so the reference RTTM (dry turn boundaries) stays aligned with the audio.
    """
    import pyroomacoustics as pra

    dim = np.array([rng.uniform(4, 9), rng.uniform(3.5, 7), rng.uniform(2.5, 3.5)])
    rt60 = float(rng.uniform(*rt60_s))
    absorption, order = pra.inverse_sabine(rt60, dim)
    room = pra.ShoeBox(dim, fs=SR, materials=pra.Material(absorption), max_order=min(order, MAX_IMAGE_ORDER))
    mic = np.array([rng.uniform(1, dim[0] - 1), rng.uniform(1, dim[1] - 1), rng.uniform(0.8, 1.5)])
    room.add_microphone(mic)
    dists = []
    for _ in speakers:
        for _ in range(100):  # at least 0.7 m from the microphone, 0.5 m from the walls
            src = np.array([rng.uniform(0.5, dim[0] - 0.5), rng.uniform(0.5, dim[1] - 0.5), rng.uniform(1.1, 1.8)])
            if np.linalg.norm(src - mic) >= 0.7:
                break
        room.add_source(src)
        dists.append(float(np.linalg.norm(src - mic)))
    room.compute_rir()
    rirs = {}
    for i, spk in enumerate(speakers):
        h = np.asarray(room.rir[0][i], dtype=np.float64)
        rirs[spk] = h[max(0, int(np.argmax(np.abs(h))) - SR // 1000) :]
    return rirs, {"rt60": rt60, "room": [float(x) for x in dim], "max_distance": max(dists)}


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a 1/f power spectrum (flat below 20 Hz), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec /= np.sqrt(np.maximum(f, 20.0))
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def babble_noise(n: int, cohort: dict[str, list[np.ndarray]], rng: np.random.Generator, talkers: int = 5) -> np.ndarray:
    """`talkers` cohort speakers talking at once without pauses (their utterances looped), unit RMS."""
    names = sorted(cohort)
    out = np.zeros(n)
    for j in rng.choice(len(names), min(talkers, len(names)), replace=False):
        utts = cohort[names[int(j)]]
        parts, total = [], 0
        while total < n:
            u = utts[int(rng.integers(len(utts)))]
            u = u[int(rng.integers(0, max(1, len(u) // 2))) :]
            parts.append(u / (np.sqrt(np.mean(u**2)) + 1e-12))
            total += len(u)
        out += np.concatenate(parts)[:n]
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def telephone_channel(x: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz, 300-3400 Hz band (zero phase, so turn boundaries do not move), 8-bit mu-law -> 16 kHz."""
    from scipy.signal import butter, resample_poly, sosfiltfilt

    y = resample_poly(x, 1, 2)
    y = sosfiltfilt(butter(6, [300, 3400], btype="band", fs=SR // 2, output="sos"), y)
    mu = 255.0
    y = np.clip(y, -1, 1)
    code = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu) * 127) / 127
    y = np.sign(code) * ((1 + mu) ** np.abs(code) - 1) / mu
    return resample_poly(y, 2, 1)[: len(x)]


def render_conversation(
    wav: Path,
    pool: dict[str, list[np.ndarray]],
    seconds: float,
    seed: int,
    cfg: SimConfig = SimConfig(),
    acoustics: Acoustics = Acoustics(),
    cohort: dict[str, list[np.ndarray]] | None = None,
) -> dict:
    """Like `write_conversation`, in memory, plus room, noise and channel; writes `wav` and its RTTM.

    The reference RTTM holds the dry turn boundaries (reverberation tails are not speech). Speech is
    mixed, then reverberated per speaker (each reverberant piece keeps its dry RMS), noise is added at
    `snr_db`, then the -65 dBFS floor, then the telephone channel; finally the file is scaled down if its
    peak is above -1 dBFS. Returns facts about the conversation (rt60, room, snr, ...). Seeded.
    """
    import soundfile as sf
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    placed = []  # (speaker, first sample, piece)
    cursor = 0
    for spk, piece, gap in turns(pool, seconds, rng, cfg):
        placed.append((spk, cursor + gap, piece))
        cursor += gap + len(piece)
    n = cursor + int(cfg.pause_s[0] * SR)
    arng = np.random.default_rng([seed, 1])  # acoustics draw from their own stream
    facts: dict = {}
    rirs: dict[str, np.ndarray] = {}
    if acoustics.rt60_s is not None:
        rirs, facts = room_impulse_responses(sorted(pool), acoustics.rt60_s, arng)
    mix = np.zeros(n + max((len(h) for h in rirs.values()), default=0))
    speech = np.zeros(n, dtype=bool)
    for spk, start, piece in placed:
        y = piece
        if rirs:
            y = fftconvolve(piece, rirs[spk])
            y *= np.sqrt(np.mean(piece**2) / (np.mean(y**2) + 1e-20))
        mix[start : start + len(y)] += y
        speech[start : start + len(piece)] = True
    mix = mix[:n]
    if acoustics.snr_db is not None:
        if acoustics.noise == "babble":
            if not cohort:
                raise ValueError("babble noise needs a cohort of speakers")
            noise = babble_noise(n, cohort, arng)
        elif acoustics.noise == "pink":
            noise = pink_noise(n, arng)
        else:
            raise ValueError(f"unknown noise {acoustics.noise!r}; known: babble, pink")
        p_speech = np.mean(mix[speech] ** 2)
        mix += noise * np.sqrt(p_speech / 10 ** (acoustics.snr_db / 10))
        facts["snr_db"] = acoustics.snr_db
        facts["noise"] = acoustics.noise
    mix += arng.standard_normal(n) * 10 ** (cfg.noise_dbfs / 20)
    if acoustics.telephone:
        mix = telephone_channel(mix)
        facts["telephone"] = True
    peak = np.abs(mix).max()
    if peak > 10 ** (-1 / 20):
        mix *= 10 ** (-1 / 20) / peak
    sf.write(str(wav), mix.astype(np.float32), SR, subtype="PCM_16")
    uri = wav.stem
    wav.with_suffix(".rttm").write_text(
        "".join(
            f"SPEAKER {uri} 1 {start / SR:.4f} {len(piece) / SR:.4f} <NA> <NA> {spk} <NA> <NA>\n"
            for spk, start, piece in placed
        )
    )
    facts["seconds"] = n / SR
    return facts


@dataclass(frozen=True)
class Conversation:
    uri: str
    wav: Path
    rttm: Path
    num_speakers: int
    seconds: float
    seed: int


def make_set(
    out: Path,
    count: int = 30,
    speakers: tuple[int, int] = (2, 7),
    minutes: tuple[float, float] = (1, 5),
    seed: int = 0,
    cfg: SimConfig = SimConfig(),
    roots: list[Path] | None = None,
) -> list[Conversation]:
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
        plan.append((f"sim_{i:03d}", [names[j] for j in chosen], float(rng.uniform(*minutes) * 60), seed * 100003 + i))
    listing = "".join(
        f"{uri}\t{len(spk)}\t{sec:.1f}\t{cfg.overlap_rate:g}\t{s}\t{','.join(spk)}\n" for uri, spk, sec, s in plan
    )
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
    ap.add_argument(
        "--speakers",
        type=int,
        nargs=2,
        default=[2, 7],
        metavar=("MIN", "MAX"),
        help="speaker counts, cycled over the set [2 7]",
    )
    ap.add_argument(
        "--minutes", type=float, nargs=2, default=[1.0, 5.0], metavar=("MIN", "MAX"), help="length range, uniform [1 5]"
    )
    ap.add_argument("--overlap-rate", type=float, default=0.0, help="probability a turn overlaps the previous [0]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--root",
        type=Path,
        action="append",
        help="LibriSpeech-style speaker tree (repeatable) [shared/data/speakers/librispeech_*]",
    )


def set_from_args(out: Path, args: argparse.Namespace) -> list[Conversation]:
    return make_set(
        out,
        args.count,
        tuple(args.speakers),
        tuple(args.minutes),
        args.seed,
        SimConfig(overlap_rate=args.overlap_rate),
        args.root,
    )


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
