"""DER and speaker-count accuracy on simulated conversations (benchmarks/accuracy/simulate.py).

    python -m benchmarks.accuracy.sim_bench /tmp/sim                     # 30 conversations, oracle VAD, unknown #spk
    python -m benchmarks.accuracy.sim_bench /tmp/sim --known             # the reference count given
    python -m benchmarks.accuracy.sim_bench /tmp/sim --vad energy        # system VAD instead of the oracle
    python -m benchmarks.accuracy.sim_bench /tmp/sim_ovl --overlap-rate 0.2

The set is built in DIR on first use (same options as simulate.py) and reused afterwards. Prints one line
per conversation, then pooled DER for both presets (forgiving: 0.25 s collar each side + overlap ignored;
full: no collar, overlap scored), DER by true speaker count, the exact-count rate and the confusion table
of true vs estimated count. `--json FILE` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path


from benchmarks.accuracy.simulate import add_set_arguments, set_from_args
from diarize import Diarizer, load_config
from diarize.rttm import read_rttm
from diarize.score import COLLAR_PRESETS as PRESETS, FileScore, ScoreReport, score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="where the simulated set lives (built on first use)")
    add_set_arguments(ap)
    ap.add_argument("--model", default="campplus")
    ap.add_argument("--config", default="general")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vad", default="oracle", help="oracle (from the reference RTTM) or a VAD method name")
    ap.add_argument("--known", action="store_true", help="give the reference speaker count")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*'uem' was approximated.*")

    convs = set_from_args(args.dir, args)
    cfg = load_config(args.config)
    if args.vad != "oracle":
        cfg.vad.method = args.vad
    d = Diarizer(cfg, model=args.model, device=args.device)
    print(
        f"model={d.model.name} config={args.config} vad={args.vad} count={'known' if args.known else 'unknown'} "
        f"conversations={len(convs)} audio={sum(c.seconds for c in convs) / 60:.1f} min"
    )
    per_file: dict[str, dict[str, FileScore]] = {p: {} for p in PRESETS}  # preset -> uri -> score
    rows = []
    t_all, audio_all = 0.0, 0.0
    for c in convs:
        ref = read_rttm(c.rttm)[c.uri]
        t0 = time.perf_counter()
        res = d.run(
            c.wav, oracle_vad=ref if args.vad == "oracle" else None, num_speakers=c.num_speakers if args.known else None
        )
        dt = time.perf_counter() - t0
        t_all, audio_all = t_all + dt, audio_all + res.duration
        for p in PRESETS:
            per_file[p][c.uri] = score({c.uri: ref}, {c.uri: res.annotation}, None, *PRESETS[p], jer=False).files[c.uri]
        one = {p: per_file[p][c.uri].der * 100 for p in PRESETS}
        rows.append(
            {
                "uri": c.uri,
                "speakers": c.num_speakers,
                "estimated": res.num_speakers,
                "seconds": res.duration,
                "forgiving": one["forgiving"],
                "full": one["full"],
                "rtf": dt / res.duration,
            }
        )
        r = rows[-1]
        print(
            f"{c.uri} spk {r['speakers']} est {r['estimated']} {r['seconds']:6.1f}s "
            f"forgiving {r['forgiving']:6.2f}% full {r['full']:6.2f}% rtf {r['rtf']:.3f}",
            flush=True,
        )

    # Pooled = summed error and scored seconds over files, so the per-file scores are all that is needed.
    reports = {p: ScoreReport(files=per_file[p]) for p in PRESETS}
    print("\npooled DER (seconds of error / scored seconds):")
    for p, rep in reports.items():
        t = rep.total.percent()
        print(
            f"  {p:9s} DER {t['der']:6.2f}%  miss {t['miss']:5.2f}%  false alarm {t['false_alarm']:5.2f}%  "
            f"confusion {t['confusion']:5.2f}%"
        )
    exact = sum(r["speakers"] == r["estimated"] for r in rows)
    print(f"exact speaker count: {exact}/{len(rows)} = {100 * exact / len(rows):.1f} %   RTF {t_all / audio_all:.3f}")

    true_ns = sorted({r["speakers"] for r in rows})
    est_ns = sorted({r["estimated"] for r in rows} | set(true_ns))
    print("\nby true count: conversations, exact, pooled forgiving / full DER")
    for n in true_ns:
        uris = [r["uri"] for r in rows if r["speakers"] == n]
        sub = {p: ScoreReport(files={u: per_file[p][u] for u in uris}).total.der * 100 for p in PRESETS}
        ok = sum(r["speakers"] == r["estimated"] for r in rows if r["speakers"] == n)
        print(f"  {n} speakers: {len(uris):3d}  {ok:3d}  {sub['forgiving']:6.2f}% / {sub['full']:6.2f}%")
    print("\ncount confusion (rows: true, columns: estimated)")
    print("      " + "".join(f"{e:>4d}" for e in est_ns))
    for n in true_ns:
        print(
            f"  {n:>2d}  "
            + "".join(f"{sum(r['speakers'] == n and r['estimated'] == e for r in rows):>4d}" for e in est_ns)
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "total": {p: r.to_json()["total"] for p, r in reports.items()},
                    "exact_count_rate": exact / len(rows),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
