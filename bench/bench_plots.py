"""PNG plots of scripts/bench with gnuplot (Debian: gnuplot-nox, which scripts/bench installs when
missing). Each function writes one PNG and returns a line saying what it did; a missing gnuplot
or a failing one is reported in that line and never raised, so the plots cannot fail a benchmark.

The data go inline into the generated gnuplot script (datablocks), so nothing but the PNG is
written.
"""

import math
import os
import shutil
import subprocess
import tempfile

_TERMINAL = None


def _gnuplot():
    return shutil.which("gnuplot")


def _terminal():
    """pngcairo (antialiased) when this gnuplot has it, else the plain png terminal."""
    global _TERMINAL  # pylint: disable=global-statement
    if _TERMINAL is None:
        try:
            probe = subprocess.run([_gnuplot(), "-e", "set terminal pngcairo"], capture_output=True,
                                   text=True, timeout=20, check=False)
            _TERMINAL = "pngcairo" if probe.returncode == 0 and not probe.stderr.strip() else "png"
        except (OSError, subprocess.SubprocessError):
            _TERMINAL = "png"
    return _TERMINAL


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _num(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "NaN"
    return repr(float(value))


def _datablock(name, rows):
    lines = [f"${name} << EOD"]
    for row in rows:
        lines.append(" ".join(_quote(c) if isinstance(c, str) else _num(c) for c in row))
    lines.append("EOD")
    return "\n".join(lines)


def _render(path, script):
    """Runs gnuplot on `script` (which must `set output` to `path`)."""
    if not _gnuplot():
        return f"plot skipped ({os.path.basename(path)}): gnuplot is not installed " \
               "(Debian package gnuplot-nox)"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".gp", delete=False,
                                         encoding="utf-8") as gp:
            gp.write(script)
            name = gp.name
        try:
            run = subprocess.run([_gnuplot(), name], capture_output=True, text=True, timeout=120,
                                 check=False)
        finally:
            os.unlink(name)
        if run.returncode != 0 or not os.path.exists(path):
            detail = (run.stderr.strip().splitlines() or ["no output"])[-1]
            return f"plot failed ({os.path.basename(path)}): gnuplot: {detail}"
        return f"wrote {path}"
    except (OSError, subprocess.SubprocessError) as err:
        return f"plot failed ({os.path.basename(path)}): {err}"


def _header(path, width, height):
    return "\n".join([
        f"set terminal {_terminal()} size {width},{height} noenhanced font ',10'",
        f"set output {_quote(path)}",
        "set datafile missing NaN",
        "set grid ytics lc rgb '#dddddd'",
        "set border lc rgb '#555555'",
    ])


def bar_chart(path, title, ylabel, labels, series, values):
    """Clustered bars: one cluster per label, one bar per series; values[i][j] (None = no bar),
    each bar labelled with its value in thousands."""
    if not labels or not series:
        return f"plot skipped ({os.path.basename(path)}): no data"
    count = len(series)
    width = max(900, 130 * len(labels) + 60 * len(labels) * max(0, count - 2) + 150)
    rows = [[label] + [values[i][j] for j in range(count)] for i, label in enumerate(labels)]
    plots = []
    for j, name in enumerate(series):
        plots.append(f"$data using {j + 2}:xtic(1) title {_quote(name)}"
                     + (" lc rgb '#4477aa'" if count == 1 else ""))
    for j in range(count):
        # In a clustered histogram (gap 1) bar j of cluster i is centred at i + (j - (N-1)/2)/(N+1).
        offset = (j - (count - 1) / 2.0) / (count + 1)
        plots.append(f"$data using ($0 + {offset}):{j + 2}:(sprintf('%.0fk', column({j + 2}) / 1000.0))"
                     " with labels offset 0,0.7 font ',8' notitle")
    script = "\n".join([
        _header(path, width, 480),
        _datablock("data", rows),
        f"set title {_quote(title)}",
        f"set ylabel {_quote(ylabel)}",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 1",
        "set yrange [0:*]",
        "set offsets 0, 0, graph 0.08, 0",
        f"set xrange [-0.6:{len(labels) - 0.4}]",
        "set xtics nomirror font ',9'",
        "set format y '%.0s%c'",
        "set key top right" if count > 1 else "unset key",
        "plot " + ", \\\n     ".join(plots),
        "",
    ])
    return _render(path, script)


def line_panels(path, title, panels, width=1100, height=420):
    """Side-by-side panels of lines: panel = {"title", "xlabel", "ylabel", "series": [{"title",
    "points": [(x, y)]}], "hline": (y, label) or None, "xtics": [values] or None}."""
    if not panels:
        return f"plot skipped ({os.path.basename(path)}): no data"
    parts = [_header(path, width, height),
             f"set multiplot layout 1,{len(panels)} title {_quote(title)}"]
    block = 0
    for panel in panels:
        plots = []
        for series in panel["series"]:
            if not series["points"]:
                continue
            parts.append(_datablock(f"s{block}", sorted(series["points"])))
            plots.append(f"$s{block} using 1:2 with linespoints lw 2 pt 7 ps 0.8 "
                         f"title {_quote(series['title'])}")
            block += 1
        if panel.get("hline"):
            y, label = panel["hline"]
            plots.append(f"{_num(y)} with lines dt 2 lc rgb '#cc3311' title {_quote(label)}")
        parts += [f"set title {_quote(panel['title'])}",
                  f"set xlabel {_quote(panel['xlabel'])}",
                  f"set ylabel {_quote(panel['ylabel'])}",
                  "set yrange [0:*]",
                  "set key bottom right font ',8'",
                  "set format y '%.0s%c'" if panel.get("si") else "set format y '%g'"]
        if panel.get("xtics"):
            parts.append("set xtics (" + ", ".join(f"{_quote(str(x))} {_num(x)}"
                                                    for x in panel["xtics"]) + ")")
            lo, hi = min(panel["xtics"]), max(panel["xtics"])
            pad = (hi - lo) * 0.08 or 1
            parts.append(f"set xrange [{_num(lo - pad)}:{_num(hi + pad)}]")
        if plots:
            parts.append("plot " + ", \\\n     ".join(plots))
    parts += ["unset multiplot", ""]
    return _render(path, "\n".join(parts))


def time_panels(path, title, panels, xlabel="seconds since the run started"):
    """Stacked panels over time: panel = {"title", "xmax", "left": {"title", "points"} or None
    (linear y, left axis), "right": {"title", "points"} or None (log y, right axis), "spans":
    [(from, to)] shaded (e.g. the job was held), "marks": [(x, label)] vertical lines,
    "right_hline": (y, label) or None, "left_label", "right_label"}; optional "left_extra":
    [{"title", "points", "style"}] more series on the left axis (style: gnuplot's, e.g. "with
    steps lw 2"; None y values break the line), "left_hlines" and "right_hlines": [(y, label)]
    dashed lines on either axis."""
    panels = [p for p in panels if (p.get("left") or {}).get("points")
              or (p.get("right") or {}).get("points")]
    if not panels:
        return f"plot skipped ({os.path.basename(path)}): no per-second data"
    parts = [_header(path, 1100, 260 * len(panels) + 60),
             f"set multiplot layout {len(panels)},1 title {_quote(title)}",
             "set key tmargin right horizontal font ',8'",
             "set style fill transparent solid 0.35 noborder"]
    for n, panel in enumerate(panels):
        left = panel.get("left") or {}
        right = panel.get("right") or {}
        parts += ["unset object", "unset arrow", "unset label", "unset logscale",
                  f"set title {_quote(panel['title'])}",
                  f"set xrange [0:{_num(panel['xmax'])}]",
                  f"set xlabel {_quote(xlabel)}" if n == len(panels) - 1 else "unset xlabel"]
        plots = []
        if left.get("points"):
            parts.append(_datablock(f"l{n}", left["points"]))
            parts += [f"set ylabel {_quote(panel.get('left_label', ''))}", "set ytics nomirror",
                      "set yrange [0:*]", "set format y '%.0s%c'"]
            plots.append(f"$l{n} using 1:2 with linespoints lw 2 pt 7 ps 0.5 lc rgb '#4477aa' "
                         f"axes x1y1 title {_quote(left['title'])}")
            for k, extra in enumerate(panel.get("left_extra") or []):
                if not extra.get("points"):
                    continue
                parts.append(_datablock(f"l{n}x{k}", extra["points"]))
                plots.append(f"$l{n}x{k} using 1:2 {extra.get('style') or 'with lines lw 2'} "
                             f"axes x1y1 title {_quote(extra['title'])}")
            for y, label in panel.get("left_hlines") or []:
                plots.append(f"{_num(y)} axes x1y1 with lines dt 2 lw 1.5 lc rgb '#4477aa' "
                             f"title {_quote(label)}")
        else:
            parts += ["unset ylabel", "unset ytics", "set yrange [0:1]"]
        if right.get("points"):
            parts.append(_datablock(f"r{n}", right["points"]))
            parts += [f"set y2label {_quote(panel.get('right_label', ''))}", "set y2tics",
                      "set logscale y2", "set y2range [*:*]", "set format y2 '%g'"]
            plots.append(f"$r{n} using 1:2 with lines lw 2 lc rgb '#ee6677' axes x1y2 "
                         f"title {_quote(right['title'])}")
            hlines = ([panel["right_hline"]] if panel.get("right_hline") else []) + list(
                panel.get("right_hlines") or [])
            for k, (y, label) in enumerate(hlines):
                color = ("#aa3377", "#cc3311", "#000000")[min(k, 2)]
                plots.append(f"{_num(y)} axes x1y2 with lines dt {2 + k} lw 1.5 lc rgb "
                             f"'{color}' title {_quote(label)}")
        else:
            parts += ["unset y2label", "unset y2tics"]
        for i, (x0, x1) in enumerate(panel.get("spans", []), start=1):
            parts.append(f"set object {i} rect from {_num(x0)}, graph 0 to {_num(max(x1, x0 + 0.1))},"
                         " graph 1 behind fc rgb '#ccbb44' fs transparent solid 0.35 noborder")
        if panel.get("spans"):
            plots.append("NaN with boxes lc rgb '#ccbb44' title 'held by the throttle'")
        for i, (x, label) in enumerate(panel.get("marks", []), start=1):
            parts.append(f"set arrow {i} from {_num(x)}, graph 0 to {_num(x)}, graph 1 nohead "
                         "dt 3 lc rgb '#666666'")
            parts.append(f"set label {i} {_quote(label)} at {_num(x)}, graph 0.06 offset 0.5,0 "
                         "font ',8' tc rgb '#666666'")
        parts.append("plot " + ", \\\n     ".join(plots))
    parts += ["unset multiplot", ""]
    return _render(path, "\n".join(parts))
