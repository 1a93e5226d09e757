"""Model cards: one Markdown page per registered model version, built from its MLflow run.

`render_card` is pure (plain dicts in, text out); `fetch_card_source` reads the registry and
the run through `trajectory.tracking`'s client helpers; `write_card` joins the two for the CLI.
Per-scene numbers come from the checked-in ETH/UCY benchmark and are labelled as such: they
belong to the model type trained by the benchmark protocol, not to this version's weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from trajectory.config import Settings
from trajectory.exceptions import InputFileError, ModelError
from trajectory.files import write_text_atomic

SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
DEFAULT_BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "eth_ucy.json"
@dataclass(frozen=True)
class CardSource:
    """What the registry and the tracking store say about one model version, as plain values."""

    name: str
    version: int
    run_id: str
    params: dict[str, str]
    tags: dict[str, str]  # the run's tags
    metrics: dict[str, float]  # the run's final value of each metric
    version_tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)  # aliases pointing at this version
    registered_at: str = ""  # ISO time of the registration
    run_start: str = ""
    run_end: str = ""
    tracking_uri: str = ""


def crowd_density(data_dir: Path) -> dict[str, tuple[int, int, int]]:
    """Tracked agents per frame in each scene of the raw files under data_dir: min, median, max."""
    from trajectory.data.io import discover, read_tracks
    from trajectory.data.schema import FRAME, SCENE

    tracks = pd.concat(
        [read_tracks(raw.path, raw.scene).tracks for raw in discover(data_dir)], ignore_index=True
    )
    per_frame = tracks.groupby([SCENE, FRAME]).size().groupby(level=0)
    return {
        str(scene): (int(n.min()), int(n.median()), int(n.max())) for scene, n in per_frame
    }


def render_card(
    source: CardSource,
    benchmark: dict[str, Any] | None = None,
    *,
    benchmark_label: str = "benchmarks/eth_ucy.json",
    data_dir: str | None = None,
    density: dict[str, tuple[int, int, int]] | None = None,
    note: str | None = None,
    generated_at: str | None = None,
    bias: pd.DataFrame | None = None,
    bias_source: str = "",
) -> str:
    """The card as Markdown. `benchmark` is the parsed eth_ucy.json (or None); `data_dir` the
    raw folder the model was trained on (the run records only its data version); `note` a
    free-text statement of how this model was produced, printed as given; `density` is
    `crowd_density(data_dir)`, left out when None. `bias` is a `trajectory.fairness` table of
    this version's errors (`score_slices`) and `bias_source` says which windows it scored."""
    generated_at = generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    p, m = source.params, source.metrics
    model_type = source.tags.get("model") or p.get("model.name", "unknown")
    parts = [
        f"# Model card: `{source.name}` version {source.version}",
        "",
        (
            f"Generated {generated_at} by `trajectory model-card --model {source.name} --version "
            f"{source.version}` from MLflow run `{source.run_id}` in the tracking store "
            f"`{_safe_uri(source.tracking_uri)}`. The overview, data, training and metrics "
            "sections are read from that run and its registry entry; the per-scene section from "
            "the checked-in benchmark file it names. Nothing was edited by hand."
        ),
        "",
    ]
    if note:
        parts += [f"> **How this model was produced:** {note}", ""]
    parts += _overview(source, model_type)
    parts += _data(source, data_dir)
    parts += _training(source, model_type)
    parts += _metrics(m)
    parts += _per_scene(benchmark, model_type, benchmark_label)
    parts += _bias(bias, bias_source)
    parts += _intended_use(p)
    parts += _limitations(source, model_type, density)
    parts += _ethics()
    parts += _reproduce(source, model_type, data_dir)
    return "\n".join(parts).rstrip() + "\n"


def _overview(source: CardSource, model_type: str) -> list[str]:
    p, vt = source.params, source.version_tags
    rows = [
        ("registered model", f"`{source.name}` version {source.version}"),
        ("aliases now", ", ".join(f"`@{a}`" for a in sorted(source.aliases)) or "none"),
        ("model type", f"`{model_type}`"),
        ("registered at", source.registered_at or "unknown"),
        ("MLflow run", f"`{source.run_id}` (logged {source.run_end or source.run_start or '?'})"),
        (
            "code",
            (
                f"trajectory {p.get('code_version', '?')}, git commit "
                f"`{p.get('git_commit', 'unknown')}`"
            ),
        ),
    ]
    if "promotion.decision" in vt:
        rows.append(
            ("promotion gate", (f"{vt['promotion.decision']}: {vt.get('promotion.reason', '')}"))
        )
    return ["## Overview", "", *_table(("", "value"), rows), ""]


def _data(source: CardSource, data_dir: str | None) -> list[str]:
    p = source.params
    version = p.get("data_version") or source.tags.get("data_version") or "unknown"
    lines = [
        "## Data",
        "",
        (
            f"- Data version: `{version}` (the ETL's content hash of its inputs and settings; the "
            "same raw files give the same version, printed on the first line of the "
            "`trajectory run` summary)."
        ),
        f"- Raw data: {f'`{data_dir}`' if data_dir else 'not recorded in the run'}.",
        (
            f"- Windows: observe {p.get('spec.obs_len', '?')} frames, predict "
            f"{p.get('spec.pred_len', '?')} frames, stride {p.get('spec.stride', '?')}; up to "
            f"{p.get('spec.max_neighbours', '?')} neighbours within "
            f"{p.get('spec.neighbour_radius', '?')} m at the last observed frame."
        ),
        (
            "- Splits: files under `train/`, `val/`, `test/` folders keep that split (the ETH/UCY "
            "layout); other scenes are split by time 70/15/15."
        ),
        "",
    ]
    return lines


_TRAIN_PARAMS = (
    ("epochs (maximum)", "config.epochs"),
    ("patience (early stopping)", "config.patience"),
    ("batch size", "config.batch_size"),
    ("learning rate", "config.lr"),
    ("weight decay", "config.weight_decay"),
    ("warm-up steps", "config.warmup_steps"),
    ("gradient clip", "config.grad_clip"),
    ("seed", "config.seed"),
    ("intra-op threads", "config.num_threads"),
)


def _training(source: CardSource, model_type: str) -> list[str]:
    p, m = source.params, source.metrics
    args = {k.removeprefix("model.args."): v for k, v in p.items() if k.startswith("model.args.")}
    rows: list[tuple[str, str]] = [
        ("model", f"`{model_type}`"),
        ("model args", ", ".join(f"{k}={v}" for k, v in sorted(args.items())) or "none"),
        ("device", f"`{p.get('device', 'unknown')}`"),
    ]
    rows += [(label, "torch default" if p[key] == "None" else p[key])
             for label, key in _TRAIN_PARAMS if key in p]
    if "best_epoch" in m:
        rows.append(("best epoch (weights kept)", f"{m['best_epoch']:.0f}"))
    if "train_seconds" in m:
        rows.append(("training wall time", f"{m['train_seconds']:.0f} s"))
    return ["## Training set-up", "", *_table(("", "value"), rows), ""]


def _metrics(m: dict[str, float]) -> list[str]:
    def cell(*keys: str) -> str:  # the first key the run logged (newer names first)
        return next((f"{m[k]:.3f}" for k in keys if k in m), "-")

    rows = [
        (
            split,
            cell(f"{split}_ade"),
            cell(f"{split}_fde"),
            cell(f"{split}_min_ade_20", f"{split}_min_ade"),
            cell(f"{split}_min_fde_20", f"{split}_min_fde"),
            cell(f"{split}_brier_min_fde_20"),
            cell(f"{split}_miss_rate_20"),
            cell(f"{split}_nll"),
        )
        for split in ("val", "test")
        if any(k.startswith(f"{split}_") for k in m)
    ]
    lines = ["## Metrics of this run (metres)", ""]
    if not rows:
        return [*lines, "The run logged no validation or test metrics.", ""]
    header = ("split", "ADE K=1", "FDE K=1", "ADE best-of-K", "FDE best-of-K",
              "brier-minFDE", "miss rate", "NLL")  # fmt: skip
    lines += _table(header, rows)
    scale = cell("val_nll_scale")
    lines += [
        "",
        (
            "K=1 is what the model returns for k=1, the service's single answer (the central "
            "track for `calibrated`, the top-weight mode for `mixture`). Best-of-K is the "
            "minimum over the model's K outputs, "
            "ADE and FDE each minimised on its own; the main job (`trajectory run` / `trajectory "
            "train`) scores K=20 with `score_model`, as `trajectory evaluate` does. "
            "brier-minFDE adds (1 - p)^2 to minFDE, p the weight of the mode with the lowest "
            "final error; miss rate is the share of windows whose best final error exceeds 2 m; "
            "NLL is the negative log-likelihood of the true future, in nats per predicted point, "
            "under the modes as isotropic Gaussians of std c*t/T (c fitted on validation"
            + (f": {scale} m" if scale != "-" else "")
            + "). The splits are those of the data version above: validation chose the best "
            "epoch, test was not used in training."
        ),
        "",
    ]
    return lines


def _per_scene(benchmark: dict[str, Any] | None, model_type: str, label: str) -> list[str]:
    lines = ["## Per scene: ETH/UCY leave-one-scene-out benchmark (metres, ADE/FDE)", ""]
    models = (benchmark or {}).get("models", {})
    if model_type not in models:
        why = "no benchmark file" if benchmark is None else f"no `{model_type}` entry in it"
        return [
            *lines,
            (
                f"Not available: {why} (`{label}`). Run `trajectory bench eth-ucy "
                f"--data DIR --model {model_type} --output {label}` to add one."
            ),
            "",
        ]
    entry, cv = models[model_type], models.get("cv", {})
    assert benchmark is not None, "models came from it"
    seeds = entry.get("seeds", benchmark.get("protocol", {}).get("seeds", {}).get(model_type))
    epochs = entry.get("train_config", {}).get("epochs")
    setup = [f"at most {epochs} epochs"] if epochs is not None else []
    setup += [f"mean over seeds {seeds}"] if seeds else []
    detail = f" ({', '.join(setup)})" if setup else ""
    date = entry.get("date", benchmark.get("date"))
    hardware = entry.get("hardware", benchmark.get("hardware"))
    lines += [
        (
            f"Not this version's weights: from `{label}` (run {date} on {hardware}), where the "
            f"`{model_type}` model type was trained once per fold and seed with the benchmark's "
            f"own set-up{detail} and scored on the "
            "held-out scene; Constant Velocity from the same file."
        ),
        "",
    ]
    cols = [("CV K=1", cv.get("k1", {})), (f"{model_type} K=1", entry.get("k1", {}))]
    if "k20" in entry:
        cols.append((f"{model_type} best-of-20", entry["k20"]))
    # one number per scene, in entries made since the benchmark scored them ({scenes, avg})
    scalars = [(f"{model_type} {label}", entry[key]) for key, label in
               (("brier_min_fde_20", "brier-minFDE"), ("nll", "NLL")) if key in entry]
    rows = [
        (
            scene,
            *(_pair(values.get(scene)) for _, values in cols),
            *(_one(_at(values, scene)) for _, values in scalars),
        )
        for scene in (*SCENES, "avg")
    ]
    lines += _table(("scene", *(name for name, _ in cols + scalars)), rows)
    if scalars:
        lines += ["", "brier-minFDE in metres; NLL in nats per predicted point (see above)."]
    return [*lines, ""]


def _at(values: dict[str, Any], scene: str) -> Any:
    return values.get("avg") if scene == "avg" else values.get("scenes", {}).get(scene)


def _one(value: Any) -> str:
    return f"{float(value):.2f}" if isinstance(value, int | float) else "-"


def _bias(table: pd.DataFrame | None, source: str) -> list[str]:
    """Error by slice (trajectory.fairness, as on the dashboard's fairness card)."""
    from trajectory.fairness import flagged

    lines = ["## Bias: error by scene, crowd density, walking speed and path curvature", ""]
    if table is None or table.empty:
        return [*lines, (
            "Not computed: no ETL windows to score (the card scores this version on the test "
            "split of `<work dir>/windows`, which `trajectory run` writes)."), ""]
    lines += [(
        f"This version scored (K=1) on {source}. A group is flagged when its ADE is more "
        f"than {SLICE_FLAG_SHARE:.0%} above the overall and it holds at least "
        f"{SLICE_MIN_WINDOWS} windows; smaller groups are shown but not judged. Offline "
        "windows carry no time of day: the dashboard's card adds it (and variants) for live "
        "traffic."), ""]
    rows = [(r.slice, r.group, str(r.windows), f"{r.ade:.3f}", f"{r.fde:.3f}", f"{r.ratio:.2f}",
             "**flagged**" if r.flagged else ("" if r.judged else "too few windows"))
            for r in table.itertuples()]
    lines += _table(("slice", "group", "windows", "ADE", "FDE", "ratio to overall", ""), rows)
    marked = flagged(table)
    lines += ["", "Flagged: " + (", ".join(f"{r.slice} {r.group} (+{r.ratio - 1:.0%})"
                                           for r in marked.itertuples()) or "none") + "."]
    return [*lines, ""]


SLICE_FLAG_SHARE, SLICE_MIN_WINDOWS = 0.2, 10


def score_slices(settings: Settings, name: str, version: int, windows_dir: Path,
                 split: str = "test") -> pd.DataFrame:
    """The fairness table of registered `name` version `version` on one split of an ETL
    output: per-window K=1 errors, sliced by `trajectory.fairness`."""
    import numpy as np

    from trajectory import fairness
    from trajectory import metrics as M
    from trajectory.data.dataset import load_windows
    from trajectory.models.base import predict
    from trajectory.tracking import load_model

    loaded = load_model(f"models:/{name}/{version}", settings)
    windows = load_windows(windows_dir, loaded.spec, split=split)
    traj, _ = predict(loaded.model, windows.obs, windows.nbr, k=1)  # (N, 1, T, 2)
    assert windows.fut is not None, "ETL windows carry their future"
    frame = fairness.observed_motion(windows.obs, loaded.spec.dt).assign(
        scene=windows.scene.astype(str),
        neighbours=(~np.isnan(windows.nbr[:, :, -1, 0])).sum(axis=1),  # within the radius
        ade=M.ade(traj[:, 0], windows.fut),
        fde=M.fde(traj[:, 0], windows.fut),
    )
    return fairness.slice_errors(fairness.add_bands(frame), flag_share=SLICE_FLAG_SHARE,
                                 min_windows=SLICE_MIN_WINDOWS)


def _intended_use(p: dict[str, str]) -> list[str]:
    obs, pred = p.get("spec.obs_len", "8"), p.get("spec.pred_len", "12")
    return [
        "## Intended use",
        "",
        (
            f"- Short-horizon forecasts of where pedestrians walk next: {obs} observed positions "
            f"in, {pred} future positions out (3.2 s -> 4.8 s at the ETH/UCY step of 0.4 s), in "
            "metres in the caller's world frame, with the nearby pedestrians as context."
        ),
        (
            "- K=1 for one most likely path; K=20 for a set of plausible paths with weights, for "
            "planners and simulators that can use several hypotheses."
        ),
        (
            "- Research, crowd simulation, analytics of pedestrian flow, and as one input among "
            "others to a planner that keeps its own safety margins."
        ),
        (
            "- Not intended for: decisions about a person's safety on this output alone; "
            "identifying, following or profiling individuals; vehicles, cyclists or any agent "
            "other than a pedestrian on foot."
        ),
        "",
    ]


def _limitations(
    source: CardSource, model_type: str, density: dict[str, tuple[int, int, int]] | None
) -> list[str]:
    p = source.params
    seen = (
        ", ".join(f"{s} {lo}-{hi} (median {mid})" for s, (lo, mid, hi) in density.items())
        if density
        else "not computed (no raw data folder given to `trajectory model-card --data`)"
    )
    device = p.get("device", "unknown")
    lines = [
        "## Limitations",
        "",
        (
            "- Pedestrians only. ETH/UCY holds people on foot in five recordings from two cities "
            "(Zurich: eth, hotel; Cyprus: univ, zara); there are no vehicles, cyclists or "
            "wheelchairs to learn from, and no other places, weather or camera heights."
        ),
        (
            "- ETH frame rate: the common `biwi_eth` copy was resampled; at the nominal 0.4 s step "
            "its median speed is about 2.45 m/s, too fast for walking, and its true step is "
            "probably about 0.67 s. The benchmark keeps it for comparability, so the model has "
            "seen unrealistically fast walkers there: do not take physical speeds or time-step "
            "priors from it, and expect the eth scene to be the hardest (see the per-scene table)."
        ),
        (
            f"- Crowd density: tracked pedestrians per frame in the raw data, per scene: "
            f"{seen}. Denser crowds are outside what was seen, and the model looks at no more "
            f"than {p.get('spec.max_neighbours', '?')} neighbours within "
            f"{p.get('spec.neighbour_radius', '?')} m."
        ),
        (
            "- No map: walls, doors, obstacles and destinations are not inputs; a path through a "
            "wall is possible."
        ),
        (
            f"- Fixed horizon and step: {p.get('spec.obs_len', '?')} observed points at the "
            f"model's step of {p.get('spec.dt', '0.4')} s. Other rates are resampled to it by "
            "linear interpolation (the ETL by `TRAJ_FRAME_SECONDS` or timestamps, the service by "
            "a request's `dt` or `timestamps`), never across a gap longer than "
            f"{p.get('spec.max_gap', '1.0')} s; check the rate of new data before trusting scores."
        ),
    ]
    if device.startswith("cpu"):
        lines.append(
            "- CPU-trained, within the budget under Training set-up; longer training (on a GPU, "
            "say) may do better."
        )
    else:
        lines.append(f"- Trained on `{device}`; results on other hardware may differ slightly.")
    if model_type != "cv":
        lines.append(
            "- The gain over Constant Velocity at K=1 is modest (see the tables); the large gain "
            "is in best-of-20, which needs a consumer of several hypotheses."
        )
    return [*lines, ""]


def _ethics() -> list[str]:
    return [
        "## Ethical considerations",
        "",
        (
            "- The training data are tracks of real people filmed in public places (a university, "
            "a hotel entrance, a shopping street) for research published in 2007 and 2009; the "
            "files hold only frame numbers, anonymous ids and positions, no images or identities. "
            "The people in them did not choose to be in a forecasting product: use the data only "
            "as the original authors allow, and credit them (ETH: Pellegrini et al., ICCV 2009; "
            "UCY: Lerner et al., Computer Graphics Forum 2007)."
        ),
        (
            "- Trajectories tied to a time and place can identify a person. The serving prediction "
            "log stores the observed tracks it receives: keep it only as long as evaluation needs "
            "it, restrict who can read it, and never join it with identities."
        ),
        (
            "- Two cities and five recordings: children, older people, people with mobility aids "
            "and crowds elsewhere are likely under-represented, and errors for them may be "
            "larger. Validate on the population where the model will be used before relying "
            "on it."
        ),
        (
            "- Do not use the model to monitor, predict or restrict the movement of identified "
            "individuals."
        ),
        "",
    ]


def _reproduce(source: CardSource, model_type: str, data_dir: str | None) -> list[str]:
    p = source.params
    seed, epochs = p.get("config.seed", "0"), p.get("config.epochs", "40")
    device = p.get("device", "cpu")
    device = "cpu" if device.startswith("cpu") else "cuda" if device.startswith("cuda") else device
    data = data_dir or "DATA_DIR"
    commit = p.get("git_commit", "unknown")
    repro = "../trajectory-repro"
    checkout = (
        f"git worktree add {repro} {commit}   # the code that trained it"
        if commit != "unknown"
        else f"# code commit not recorded: use a checkout of the same release at {repro}"
    )
    commands = [
        checkout,
        f"cd {repro} && make setup",
        "# the raw data, if you do not have it yet (SHA-256 checked):",
        ".venv/bin/trajectory data download eth-ucy --dest data",
        (
            f"TRAJ_SEED={seed} .venv/bin/trajectory run --data {data} --model {model_type} "
            f"--epochs {epochs} --device {device} --work-dir artifacts/repro"
        ),
        "# the card, from a checkout that has `trajectory model-card` (this one):",
        (
            f"cd - && .venv/bin/trajectory model-card --model {source.name} --version 1 "
            f"--work-dir {repro}/artifacts/repro --output /tmp/repro-card.md"
        ),
    ]
    version = p.get("data_version") or source.tags.get("data_version", "unknown")
    return [
        "## How to reproduce",
        "",
        (
            "From the repository root; the new work dir starts an empty registry, so the "
            "retrained model is version 1 there:"
        ),
        "",
        "```bash",
        *commands,
        "```",
        "",
        (
            f"Check that the summary's `data version` line reads `{version}`; otherwise the raw "
            "files differ. The other training settings are the defaults of that commit. With the "
            "same seed, commit and device the scores should match to about the third decimal; "
            "thread counts and library versions can move the last digits."
        ),
        "",
    ]


def _pair(values: Any) -> str:
    if not isinstance(values, list | tuple) or len(values) != 2:
        return "-"
    return f"{float(values[0]):.2f}/{float(values[1]):.2f}"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _safe_uri(uri: str) -> str:
    """The URI without a password, if it holds one."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def load_benchmark(path: Path) -> dict[str, Any] | None:
    """The benchmark JSON, or None when the file does not exist."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputFileError(f"{path}: not a benchmark JSON file: {err}") from err
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: not a benchmark JSON file")
    return data


def fetch_card_source(settings: Settings, name: str, version: str) -> CardSource:
    """Read a registered version (a number, or an alias such as `champion`) and its run.

    Raises ModelError for an unknown model, version or alias, TrackingError when MLflow fails.
    """
    from trajectory.tracking.client import connect, tracking_errors

    if "'" in name:
        raise ModelError(f"invalid registered model name {name!r}")
    uri = settings.tracking_uri()
    client = connect(settings)
    with tracking_errors(f"reading registered model {name!r}"):
        # the REST store gives versions as text, the SQL store as numbers
        versions = {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}
        if not versions:
            raise ModelError(f"no registered model {name!r} with versions at {_safe_uri(uri)}")
        aliases: dict[str, str] = dict(client.get_registered_model(name).aliases)
        number = version if version.isdigit() else aliases.get(version)
        if number is None or str(int(number)) not in versions:
            known = ", ".join(sorted(versions, key=int))
            named = ", ".join(f"@{a}->v{v}" for a, v in sorted(aliases.items())) or "none"
            raise ModelError(
                f"model {name!r} has no version or alias {version!r} "
                f"(versions: {known}; aliases: {named})"
            )
        mv = versions[str(int(number))]
        if not mv.run_id:
            raise ModelError(f"model {name!r} version {mv.version} has no source run")
        run = client.get_run(mv.run_id)
    return CardSource(
        name=name,
        version=int(mv.version),
        run_id=mv.run_id,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        version_tags=dict(mv.tags or {}),
        aliases=sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        registered_at=_iso(mv.creation_timestamp),
        run_start=_iso(run.info.start_time),
        run_end=_iso(run.info.end_time),
        tracking_uri=uri,
    )


def _iso(millis: int | None) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def write_card(
    settings: Settings,
    name: str,
    version: str,
    output: Path | None = None,
    *,
    benchmark_path: Path = DEFAULT_BENCHMARK,
    data_dir: str | None = None,
    note: str | None = None,
    windows_dir: Path | None = None,
) -> Path:
    """Fetch, render and write (atomically) the card; -> its path.
    Default path: `model_cards/<name>-v<version>.md`. The bias section scores the version on
    the test split of `windows_dir` (default: the work dir's ETL output, when there is one)."""
    source = fetch_card_source(settings, name, version)
    label = _label(benchmark_path)
    density = crowd_density(Path(data_dir)) if data_dir else None
    windows_dir = windows_dir or settings.windows_dir
    bias = None
    if (Path(windows_dir) / "manifest.json").is_file():
        bias = score_slices(settings, name, source.version, Path(windows_dir))
    text = render_card(
        source, load_benchmark(benchmark_path), benchmark_label=label, data_dir=data_dir,
        density=density, note=note, bias=bias,
        bias_source=f"the test split of `{windows_dir}`",
    )
    output = output or Path("model_cards") / f"{name}-v{source.version}.md"
    return write_text_atomic(output, text)


def _label(path: Path) -> str:
    """The benchmark path relative to the repository when it lies inside it."""
    try:
        return path.resolve().relative_to(DEFAULT_BENCHMARK.parent.parent).as_posix()
    except ValueError:
        return str(path)
