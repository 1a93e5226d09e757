"""`trajectory evaluate`: score any model on any raw folder, and lose no window silently.

Models (`load_for_scoring`): `models:/<name>@<alias>`, `models:/<name>/<version>` or
`runs:/<run_id>` through the registry (`trajectory.tracking.load_model`, the project's MLflow
settings); a path to a training checkpoint (`model.pt`); or `builtin:<name>` for an untrained
model (cv, cv-grid). Windows are cut with the model's window spec (from its checkpoint) when it
has one, else with the settings' (observe 8, predict 12 by default).

Data (`read_folder`) goes the ETL's way, in process and into a temporary folder: every raw
file read and validated by `io.read_tracks`, a scene's rows from several files re-checked
together, then `dataset.write_scene_windows` (resampling, windows, splits) and `load_windows`.
Files under a folder named train/, val/ or test/ keep that split; other scenes are split by
time 70/15/15, and a window across a boundary belongs to no split (`all` = the three).

Dropped windows: the windows the rows would have given had every rejected line whose frame
and agent id can still be read been kept, less the windows they give, in the scored split.
Lines too broken to place (no readable frame or agent) are still listed among the rejects.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from trajectory.config import Settings, get_settings
from trajectory.data import schema as S
from trajectory.data.dataset import load_windows, write_manifest, write_scene_windows
from trajectory.data.etl import check_across_files
from trajectory.data.io import REJECT_COLUMNS, RawFile, discover, read_layout, read_tracks
from trajectory.data.windows import Windows, WindowSpec
from trajectory.exceptions import ConfigError, ModelError, NoWindowsError
from trajectory.files import write_json_atomic
from trajectory.models.base import TrajectoryModel, build_model
from trajectory.training.evaluate import score_model

log = logging.getLogger(__name__)

SPLIT_CHOICES = ("test", "val", "train", "all")
REJECTS_SHOWN = 20  # rejected lines listed in the report (all are counted)
_Key = tuple[str, str | None]  # (scene, folder split)


@dataclass
class FolderWindows:
    """The windows of one split of a raw folder, and what validation cost."""

    windows: Windows
    val: Windows | None  # the folder's validation windows, when it has any
    dropped: int  # windows of the split lost to rejected lines
    rows: dict[str, int]  # in, valid, rejected
    rejects: pd.DataFrame  # REJECT_COLUMNS, file as a path


def load_for_scoring(
    ref: str, settings: Settings, device: str | torch.device = "cpu"
) -> tuple[TrajectoryModel, WindowSpec]:
    """The model `ref` names (see the module docstring) and its window spec."""
    if ref.startswith("builtin:"):
        model = build_model(
            ref.removeprefix("builtin:"), obs_len=settings.obs_len, pred_len=settings.pred_len
        )
        if model.trainable:
            raise ModelError(f"{ref} has no trained weights; score a models:/ URI or a checkpoint")
        return model.to(device).eval(), WindowSpec.from_settings(settings)
    if ref.startswith(("models:/", "runs:/")):
        from trajectory.tracking import load_model

        loaded = load_model(ref, settings, device)
        return loaded.model, loaded.spec
    if not Path(ref).is_file():
        raise ModelError(
            f"{ref!r} is neither a models:/ or runs:/ URI, builtin:<name> nor a checkpoint file"
        )
    from trajectory.tracking.registry import spec_from_meta
    from trajectory.training.checkpoint import load_checkpoint

    model, meta = load_checkpoint(Path(ref), device)
    return model, spec_from_meta(meta, model)


def read_folder(
    folder: Path, spec: WindowSpec, split: str, settings: Settings
) -> FolderWindows:
    """The windows of `split` in a raw folder, its validation windows and dropped count."""
    if split not in SPLIT_CHOICES:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    raws = discover(Path(folder))
    pieces: dict[_Key, list[tuple[RawFile, pd.DataFrame]]] = {}
    found, rows_in = [], 0
    for raw in raws:
        result = read_tracks(raw.path, settings=settings)  # InputFileError names the file
        rows_in += result.rows_in
        found.append(result.rejects)
        for scene, part in result.tracks.groupby(S.SCENE, sort=True):
            pieces.setdefault((str(scene), raw.split), []).append((raw, part))
    groups: dict[_Key, pd.DataFrame] = {}
    for key, parts in pieces.items():  # a scene's rows from several files, checked together
        groups[key], across = check_across_files(
            [p for _, p in parts], [r for r, _ in parts], settings
        )
        by_rel = {r.rel: str(r.path) for r, _ in parts}
        found.append(across.assign(file=[by_rel[rel] for rel in across["file"]]))
    rejects = pd.concat([r for r in found if len(r)] or [pd.DataFrame(columns=REJECT_COLUMNS)])
    rejects = rejects.sort_values(["file", "line"], kind="stable").reset_index(drop=True)
    lost: dict[_Key, list[pd.DataFrame]] = {}
    for raw in raws:
        placed = _lost_rows(raw, rejects.loc[rejects["file"] == str(raw.path), "raw"], settings)
        for scene, part in placed.groupby(S.SCENE, sort=True):
            lost.setdefault((str(scene), raw.split), []).append(part)
    rows = {"in": rows_in, "valid": sum(len(t) for t in groups.values()), "rejected": len(rejects)}
    with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
        out = Path(tmp) / "windows"
        counts, dropped = _write_windows(groups, lost, out, Path(tmp) / "unvalidated", spec,
                                         settings)
        per_split: Counter[str] = sum(counts.values(), Counter())
        if (per_split.total() if split == "all" else per_split[split]) == 0:
            raise NoWindowsError(
                f"{folder}: no complete window in split {split!r} (windows per split: "
                f"{dict(per_split) or 'none'}) for window spec {asdict(spec)}"
            )
        write_manifest(out, files=[], rows=rows, windows={s: dict(c) for s, c in counts.items()},
                       spec=spec, settings={"frame_seconds": settings.frame_seconds,
                                            "max_speed": settings.max_speed})
        windows = load_windows(out, spec, split=None if split == "all" else split)
        val = load_windows(out, spec, split="val") if per_split["val"] else None
    lost_here = dropped.total() if split == "all" else dropped[split]
    return FolderWindows(windows, val, lost_here, rows, rejects)


def _write_windows(
    groups: dict[_Key, pd.DataFrame],
    lost: dict[_Key, list[pd.DataFrame]],
    out: Path,
    scratch: Path,
    spec: WindowSpec,
    settings: Settings,
) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Window each (scene, folder split) as the ETL does (`write_scene_windows` into `out`):
    windows per scene and split; and per split the windows the rows would have given with
    the rejected lines kept (windowed into `scratch`), less those they give."""
    counts: dict[str, Counter[str]] = {}
    dropped: Counter[str] = Counter()
    for i, key in enumerate(sorted(set(groups) | set(lost))):
        scene, folder_split = key
        tracks = groups.get(key)
        write = partial(write_scene_windows, split=folder_split, part=f"{i:05d}", spec=spec,
                        frame_seconds=settings.frame_seconds)
        got = write(tracks, out) if tracks is not None else {}
        counts.setdefault(scene, Counter()).update(got)
        if key in lost:
            kept = [t for t in (tracks, *lost[key]) if t is not None]
            rows = pd.concat(kept, ignore_index=True).drop_duplicates([S.FRAME, S.AGENT])
            would = write(rows, scratch)
            dropped.update({s: max(n - got.get(s, 0), 0) for s, n in would.items()})
    return counts, dropped


def _lost_rows(raw: RawFile, lines: pd.Series, settings: Settings) -> pd.DataFrame:
    """The rejected `lines` of a raw file whose frame (or timestamp) and agent id can still be
    read, as track rows at a placeholder position: each line with its x and y set to 0, read
    back by `read_tracks` (so scene and frame are what the reader makes of them)."""
    layout = read_layout(raw.path)  # the reader's own reading of a CSV header
    out = []
    for text in lines:
        fields = text.split() if layout.sep is None else [f.strip() for f in text.split(",")]
        if len(fields) == len(layout.names):
            xy_zero = ["0" if n in (S.X, S.Y) else f for n, f in zip(layout.names, fields,
                                                                      strict=True)]
            out.append((layout.sep or "\t").join(xy_zero))
    if not out:
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    header = [",".join(layout.names)] if layout.sep is not None else []
    with tempfile.TemporaryDirectory(prefix="rejected-") as tmp:
        copy = Path(tmp) / raw.path.name  # the same name: the same scene
        copy.write_text("\n".join(header + out) + "\n")
        return read_tracks(copy, settings=settings).tracks


def evaluate_folder(
    model_ref: str,
    data: Path,
    split: str = "test",
    settings: Settings | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Load, read, score: the report `trajectory evaluate` prints and writes (see `write_report`)."""
    from trajectory.training.loop import resolve_device

    settings = settings or get_settings()
    dev = resolve_device(device)
    model, spec = load_for_scoring(model_ref, settings, dev)
    folder = read_folder(Path(data), spec, split, settings)
    for file, n in folder.rejects.groupby("file").size().items():
        log.warning("%s: %d lines rejected", file, n)
    scores = score_model(model, folder.windows, val=folder.val, device=dev)
    shown = folder.rejects.head(REJECTS_SHOWN)
    return {
        "model": model_ref,
        "data": str(data),
        "windows": scores["windows"],
        "windows_dropped": int(folder.dropped),
        "metrics": scores["metrics"],
        "split": split,
        "nll_scale": scores["nll_scale"],
        "reliability": scores["reliability"],
        "window_spec": asdict(spec),
        "rows": folder.rows,
        "rejects": shown[["file", "line", "reason"]].to_dict("records"),
    }


def write_report(report: dict[str, Any], path: Path) -> Path:
    """Write the report as JSON atomically."""
    return write_json_atomic(path, report)


_LABELS = {
    "ade": "ADE, K=1 (m)",
    "fde": "FDE, K=1 (m)",
    "min_ade_20": "minADE, best of 20 (m)",
    "min_fde_20": "minFDE, best of 20 (m)",
    "brier_min_fde_20": "brier-minFDE, 20 (m)",
    "miss_rate_20": "miss rate, 20 (> 2 m)",
    "nll": "NLL (nats per point)",
}


def format_report(report: dict[str, Any]) -> str:
    """The report as text for a terminal: counts, metrics, reliability and rejected lines."""
    rows, scale, spec = report["rows"], report["nll_scale"], report["window_spec"]
    lines = [
        f"model    {report['model']}",
        f"data     {report['data']} (split {report['split']})",
        (
            f"windows  {report['windows']} scored, {report['windows_dropped']} dropped by "
            f"validation; rows {rows['in']} in, {rows['valid']} valid, "
            f"{rows['rejected']} rejected"
        ),
        (
            f"spec     observe {spec['obs_len']}, predict {spec['pred_len']}, stride "
            f"{spec['stride']}, up to {spec['max_neighbours']} neighbours within "
            f"{spec['neighbour_radius']:g} m"
        ),
        "",
        f"{'metric':<26}{'value':>9}",
    ]
    lines += [f"{_LABELS[k]:<26}{v:>9.3f}" for k, v in report["metrics"].items()]
    lines += [
        f"NLL scale c = {scale['c']:.3f} m (sigma_t = c t / T), fitted on the "
        + ("validation windows" if scale["fitted_on"] == "val" else "scored windows"),
        "",
        f"{'mode weight':<14}{'modes':>9}{'mean weight':>13}{'closest':>9}",
    ]
    for b in report["reliability"]:
        mean = "-" if b["mean_weight"] is None else f"{b['mean_weight']:.3f}"
        rate = "-" if b["closest_rate"] is None else f"{b['closest_rate']:.3f}"
        lines.append(f"{b['lo']:.2f}-{b['hi']:<9.2f}{b['count']:>9}{mean:>13}{rate:>9}")
    if report["rejects"]:
        lines += ["", f"rejected lines (first {len(report['rejects'])} of {rows['rejected']}):"]
        lines += [f"  {r['file']} line {r['line']}: {r['reason']}" for r in report["rejects"]]
    return "\n".join(lines)
