"""``mmkit bench`` and ``mmkit bench --scale`` as tables: each result's ratios against their
targets, its rates, how cost grows with size (stdout through :mod:`mmkit.cli.output`)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from mmkit.cli.output import out, table


def _g(value: Any) -> Any:
    """A measured number to 4 significant digits (bench tables)."""
    if value is None:  # not measured (e.g. too fast to time)
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else value


GROWTH_COLUMNS = ("prepare_seconds", "prepare_peak_rss_mb", "epoch_seconds", "epoch_peak_rss_mb")


def growth_table(growth: dict[str, Any]) -> Table:
    """Seconds and peak RSS of prepare and one epoch at each size, and their slopes."""
    rows = [
        [f"{p['factor']}x", p["items"], *(_g(p[k]) for k in GROWTH_COLUMNS)]
        for p in growth["points"]
    ]
    slopes = growth["slopes_per_1000_items"]
    rows.append(["slope", "per 1000", *(_g(slopes[k]) for k in GROWTH_COLUMNS)])
    columns = ["size", "items", "prepare s", "prepare MB", "epoch s", "epoch MB"]
    return table("how cost grows (HF parquet, whole processes)", columns, rows)


def ratio_table(title: str, result: dict[str, Any]) -> Table:
    """A bench result's ratios with their targets and verdicts."""
    rows = []
    for ratio, value in result["ratios"].items():
        target = result["targets"].get(ratio, "")
        met = result["met"].get(ratio)
        mark = "" if met is None else ("[green]yes[/green]" if met else "[red]NO[/red]")
        rows.append([ratio, _g(value), target, mark])
    return table(title, ["ratio", "value", "target", "met"], rows)


SCALE_STEPS = ("prepare", "epoch", "eval")


def render_scale(report: dict[str, Any]) -> None:
    """``mmkit bench --scale``: per kind, each fraction's steps, then the ratios and targets."""
    for name, result in report["results"].items():
        rows = []
        for p in result["points"]:
            row = [p["fraction"], p["prepare"]["items"]]
            for step in (*SCALE_STEPS, "infer"):
                speed = p[step]["seconds" if step == "infer" else "items_per_second"]
                row += [_g(speed), _g(p[step]["peak_rss_mb"])]
            rows.append([*row, _g(p["store_bytes_per_item"] / 1024)])
        columns = ["fraction", "items"]
        columns += [f"{s} {unit}" for s in SCALE_STEPS for unit in ("items/s", "MB")]
        columns += ["infer s", "infer MB", "store KiB/item"]
        title = (
            f"{name} on {result['device']} (whole processes; startup {result['startup_seconds']} s)"
        )
        out.print(table(title, columns, rows))
        out.print(ratio_table(f"{name}: largest over smallest", result))
        workers = result.get("prepare_workers")
        if workers:
            out.print(f"prepare files/s by --workers: {workers['files_per_second']}",
                      highlight=False, markup=False)  # fmt: skip
        for fmt, f in result.get("store_formats", {}).items():
            line = (f"--store-format {fmt}: {f['store_bytes_per_item'] / 1e6:.3g} MB/clip, "
                    f"{f['gb_per_1000_items']} GB per 1,000 clips, loader "
                    f"{f['loader_items_per_second']} clips/s")  # fmt: skip
            out.print(line, highlight=False, markup=False)
    load = report["load_average"]
    out.print(f"load average before {load['before']}, after {load['after']}", highlight=False)


def render_bench(report: dict[str, Any]) -> None:
    """``mmkit bench``: per modality, its ratios against their targets, then its rates."""
    for name, result in report["results"].items():
        out.print(ratio_table(f"{name} on {result['device']}", result))
        rates = [[k, _g(v)] for k, v in result["items_per_second"].items()]
        out.print(table("", ["items/s", ""], rates))
        if "growth" in result:
            out.print(growth_table(result["growth"]))
    m, load = report["machine"], report["load_average"]
    out.print(
        f"{m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads, "
        f"OMP_WAIT_POLICY={m['omp_wait_policy']}, loader workers {m['default_num_workers']}); "
        f"load average before {load['before']}, after {load['after']}",
        highlight=False,
    )
