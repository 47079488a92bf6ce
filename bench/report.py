"""Turn a run document into a text table, JSON files and a PNG chart."""

from __future__ import annotations

import json
import math
from pathlib import Path

LABELS = {"actorflow": "actorflow", "ray": "Ray"}


# ----------------------------------------------------------------------------- numbers


def ok(rec: dict | None) -> bool:
    return bool(rec) and rec.get("status") == "ok"


def floor_fraction(wl: dict, rec: dict | None, floor: dict | None) -> float | None:
    """Share of the physical floor reached: value/floor for rates, floor/value for latency."""
    kind = wl.get("floor")
    if not kind or not floor or not ok(rec):
        return None
    figs = floor.get("figures", {})
    if kind == "memcpy_latency":
        ref = figs.get("memcpy_gib_ms")
        return ref["median"] / rec["median"] if ref and rec["median"] > 0 else None
    ref = figs.get(kind)
    return rec["median"] / ref["median"] if ref and ref["median"] > 0 else None


def ratio(wl: dict) -> float | None:
    a, r = wl["results"].get("actorflow"), wl["results"].get("ray")
    if ok(a) and ok(r) and r["median"] > 0:
        return a["median"] / r["median"]
    return None


def annotate(doc: dict) -> dict:
    """Fill in ``ratio`` and ``floor_fraction`` of every workload entry (in place)."""
    for wl in doc["workloads"]:
        wl["ratio"] = ratio(wl)
        wl["floor_fraction"] = {
            fw: floor_fraction(wl, rec, doc.get("floor")) for fw, rec in wl["results"].items()
        }
    return doc


# ----------------------------------------------------------------------------- table


def fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


NOISY_CORES = 0.3  # foreign CPU use (cores) above which a figure is flagged "!"


def noisy(rec: dict | None) -> bool:
    return ok(rec) and rec.get("extra", {}).get("foreign_cpu_cores", 0.0) > NOISY_CORES


def _cell(rec: dict | None) -> str:
    if not ok(rec):
        return "n/a"
    rel = 100 * rec["std"] / rec["mean"] if rec["mean"] else 0.0
    return f"{'! ' if noisy(rec) else ''}{fmt(rec['median'])} ({fmt(rec['mean'])} ±{rel:.0f}%)"


CLIP_PCT = 1000.0  # chart clips floor shares above 10x (zero-copy get beats a copy)


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 10:
        return f"{x:.0f}x"  # far above the floor: the framework avoided the copy
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def table(doc: dict) -> str:
    fws = doc["frameworks_run"]
    has_floor = bool(doc.get("floor"))
    head = ["workload", "unit"]
    for fw in fws:
        head.append(f"{LABELS.get(fw, fw)} median (mean ±std)")
    if len(fws) == 2:
        head.append("ratio af/Ray")
    if has_floor:
        head += [f"{LABELS.get(fw, fw)} % floor" for fw in fws]
    rows = []
    for wl in doc["workloads"]:
        arrow = "↑" if wl["higher_is_better"] else "↓"
        row = [wl["name"], f"{wl['unit']} {arrow}"]
        row += [_cell(wl["results"].get(fw)) for fw in fws]
        if len(fws) == 2:
            row.append(fmt_ratio(wl["ratio"]))
        if has_floor:
            row += [_pct(wl["floor_fraction"].get(fw)) for fw in fws]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]

    def line(cells):
        return (
            "| "
            + " | ".join(
                (str(c).ljust(w) if i < 2 else str(c).rjust(w))
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    out.append(
        "↑ higher is better, ↓ lower is better; ratio = actorflow median / Ray median; "
        "% floor: rtt for sync calls, pipelined for async batches, memcpy for GB/s and "
        "1 GiB latency; 'Nx' = N times the floor, i.e. no copy was made (see bench/README.md)"
    )
    if any(noisy(r) for wl in doc["workloads"] for r in wl["results"].values()):
        out.append(
            f"! = processes outside the benchmark used > {NOISY_CORES} CPU cores while this "
            "figure was measured (extra.foreign_cpu_cores in the JSON): treat it as noisy"
        )
    out += _footnotes(doc)
    return "\n".join(out)


def _footnotes(doc: dict) -> list:
    notes = []
    for fw in doc["frameworks_run"]:
        reasons: dict[str, list] = {}
        for wl in doc["workloads"]:
            rec = wl["results"].get(fw)
            if rec and not ok(rec):
                reasons.setdefault(rec.get("reason", "?"), []).append(wl["name"])
        for reason, names in reasons.items():
            which = (
                f"all {len(names)} workloads"
                if len(names) == len(doc["workloads"])
                else ", ".join(names)
            )
            notes.append(f"n/a {LABELS.get(fw, fw)} ({which}): {reason}")
    return notes


# ----------------------------------------------------------------------------- files


def write_json(doc: dict, out_dir: Path, stamp: str) -> list:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stamp}.json", out_dir / "latest.json"]
    text = json.dumps(doc, indent=1, default=str)
    for p in paths:
        p.write_text(text)
    return paths


def plot(doc: dict, out_dir: Path, stamp: str, latest: bool = True) -> list:
    """Bar charts: actorflow/Ray ratio (log scale) and share of the physical floor."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return []

    wls = doc["workloads"]
    names = [w["name"] + ("" if w["higher_is_better"] else "  (lower=better)") for w in wls]
    fws = doc["frameworks_run"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.42 * len(wls) + 2.2), sharey=True)
    ys = list(range(len(wls)))[::-1]

    ratios = [w["ratio"] for w in wls]
    if any(r is not None for r in ratios):
        vals = [r if r is not None else math.nan for r in ratios]
        colors = []
        for w, r in zip(wls, ratios, strict=True):
            better = r is not None and ((r >= 1) == w["higher_is_better"])
            colors.append("tab:green" if better else "tab:red")
        ax1.barh(ys, vals, color=colors)
        ax1.set_xscale("log")
        ax1.axvline(1.0, color="k", lw=1)
        for y, r in zip(ys, ratios, strict=True):
            label = f" {fmt_ratio(r)}" if r else " n/a"
            ax1.text(r if r else 1.0, y, label, va="center", fontsize=8)
        ax1.set_xlabel("actorflow / Ray (median; green = actorflow better)")
    else:
        ax1.text(
            0.5,
            0.5,
            "no ratio: a framework is n/a on every workload",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
        ax1.set_xticks([])
    ax1.set_ylim(-0.6, len(wls) - 0.4)
    ax1.set_yticks(ys)
    ax1.set_yticklabels(names, fontsize=8)
    ax1.set_title("actorflow vs Ray")

    h = 0.8 / max(1, len(fws))
    drew = []
    for i, fw in enumerate(fws):
        fr = [w["floor_fraction"].get(fw) for w in wls]
        if any(f is not None for f in fr):
            pos = [y + 0.4 - h * (i + 0.5) for y in ys]
            pct = [100 * f if f is not None else math.nan for f in fr]
            ax2.barh(pos, [min(p, CLIP_PCT) for p in pct], height=h, label=LABELS.get(fw, fw))
            for y, p in zip(pos, pct, strict=True):
                if not math.isnan(p):
                    drew.append(p)
                    ax2.text(min(p, CLIP_PCT), y, f" {_pct(p / 100)}", va="center", fontsize=7)
    if drew:
        ax2.set_xscale("log")
        ax2.set_xlim(max(1e-3, min(drew) / 2), min(max(drew), CLIP_PCT) * 4)
        ax2.axvline(100.0, color="k", lw=1)
        ax2.set_xlabel("% of the physical floor (uvloop+msgpack rtt / pipelined, memcpy)")
        ax2.legend(loc="lower right", fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no floor", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_title("share of the machine's floor")
    meta = doc["meta"]
    fig.suptitle(
        f"actorflow bench {meta['timestamp']} -- {meta['cpus']} CPUs, {meta['mode']}", fontsize=10
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stamp}.png"] + ([out_dir / "latest.png"] if latest else [])
    for p in dict.fromkeys(paths):
        fig.savefig(p, dpi=110)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    """``python -m bench.report [FILE]``: re-print the table (and re-draw the PNG) of a
    saved run, by default bench/results/latest.json."""
    import argparse

    from . import RESULTS_DIR

    ap = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    ap.add_argument("file", nargs="?", type=Path, default=RESULTS_DIR / "latest.json")
    ap.add_argument("--plot", action="store_true", help="re-draw <file stem>.png next to it")
    args = ap.parse_args(argv)
    doc = annotate(json.loads(args.file.read_text()))
    print(table(doc))
    if args.plot:
        paths = plot(doc, args.file.parent, args.file.stem, latest=False)
        print(" ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
