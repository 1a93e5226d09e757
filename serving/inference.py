"""From a prediction request to model inputs, through the same `make_windows` as training.

Each agent's track is cut to the model's last `obs_len` points. A shorter track (>= 2 points)
is padded backwards with its first observed step (constant velocity) so the model gets a full
window; padded points are hidden from the other agents (NaN neighbour frames, as for a
neighbour that was not seen at a frame in training). All agents of a request form one scene,
so they are each other's neighbours within the model's neighbour radius at matching frames.

Points are taken to be the model's time step (`spec.dt`) apart unless the request gives `dt`
or `timestamps`. Then each agent's points are resampled by the ETL's `resample` onto a grid
of the model's step that ends at the agent's last point, with the model's `max_gap`; the
agent must have points covering the model's observation span ((obs_len - 1) * dt). Agents
are then matched as neighbours at the grid frame nearest to their last point's time.

A model can answer NaN or inf (an input far outside its training range, a broken checkpoint).
That is never sent, cached or written: `finite_outputs` tells which agents (or batch windows)
got a finite prediction, and `check_finite_outputs` raises `NonFiniteOutputError` (a 422
naming the agents) for the real-time API; batch scoring lists such windows as errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from serving.config import ServingSettings
from serving.errors import RequestError
from serving.schemas import PredictRequest
from trajectory.data import schema as S
from trajectory.data.resample import TOLERANCE, resample, same_step, segment_starts
from trajectory.data.windows import WindowSpec, make_windows

REQUEST_SCENE = "request"
_MAX_SHARED_SPAN = 1_000_000  # steps between the agents of one request, for a shared call


class NonFiniteOutputError(RequestError):
    """The model's prediction for some agents holds NaN or inf: an error for those agents.

    `positions` are their indices in the request (`agents.<i>`), `agent_ids` their ids; the
    field named is the first such agent's.
    """

    def __init__(self, positions: list[int], agent_ids: list[int]) -> None:
        shown = ", ".join(str(a) for a in agent_ids[:10]) + (", ..." if len(agent_ids) > 10 else "")
        super().__init__(
            f"agents.{positions[0]}",
            f"the model's prediction for agent_id {shown} is not finite (NaN or inf); "
            "check that agent's points",
        )
        self.positions, self.agent_ids = positions, agent_ids


def finite_outputs(traj: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(A,) bool: True where an agent's (window's) traj (A, K, T, 2) and weights (A, K) are
    all finite."""
    finite_traj = np.isfinite(traj).all(axis=tuple(range(1, traj.ndim)))  # (A,)
    return finite_traj & np.isfinite(weights).all(axis=tuple(range(1, weights.ndim)))


def check_finite_outputs(agent_ids: np.ndarray, traj: np.ndarray, weights: np.ndarray) -> None:
    """Raise NonFiniteOutputError naming every agent whose prediction is not finite."""
    bad = np.flatnonzero(~finite_outputs(traj, weights))
    if len(bad):
        raise NonFiniteOutputError(bad.tolist(), [int(agent_ids[i]) for i in bad])


@dataclass(frozen=True)
class CanonicalRequest:
    """A request with coordinates rounded: what is predicted, cached and logged."""

    agent_ids: np.ndarray  # (A,) int64, request order
    last_frames: np.ndarray  # (A,) int64 (the request's frame, else 0, when not given)
    frames_given: list[bool]  # whether the client sent a last frame for the agent
    points: list[np.ndarray]  # A arrays (n_i, 2) float64, rounded
    frame_step: int
    k: int

    def key_bytes(self) -> bytes:
        """Everything that decides the prediction (not scene or variant), as bytes."""
        lengths = np.array([len(p) for p in self.points], np.int64)
        head = np.array([self.k, self.frame_step, len(lengths)], np.int64)
        parts = [head, self.agent_ids, self.last_frames, lengths, *self.points]
        return b"".join(np.ascontiguousarray(a).tobytes() for a in parts)


def check_limits(req: PredictRequest, settings: ServingSettings) -> None:
    """The configured limits, reported with the field that breaks them."""
    if len(req.agents) > settings.max_agents:
        raise RequestError("agents", f"{len(req.agents)} agents, at most {settings.max_agents}")
    if req.k > settings.max_k:
        raise RequestError("k", f"{req.k} samples, at most {settings.max_k}")
    seen: set[int] = set()
    for i, agent in enumerate(req.agents):
        if len(agent.points) > settings.max_points:
            raise RequestError(
                f"agents.{i}.points", f"{len(agent.points)} points, at most {settings.max_points}"
            )
        if agent.agent_id in seen:
            raise RequestError(f"agents.{i}.agent_id", f"duplicate agent_id {agent.agent_id}")
        seen.add(agent.agent_id)
    if req.variant is not None and req.variant not in settings.variants:
        raise RequestError("variant", f"unknown variant {req.variant!r}")


def canonicalize(
    req: PredictRequest, decimals: int, spec: WindowSpec | None = None
) -> CanonicalRequest:
    """The request with points at the model's time step (`spec.dt`), coordinates rounded.

    Raises RequestError (422) naming the field when points given at another step cannot be
    resampled to it; `spec` None accepts only requests without `dt` and `timestamps`.
    """
    times = observed_times(req)
    if times is not None and (req.dt is None or spec is None or not same_step(req.dt, spec.dt)):
        if spec is None:
            field = "dt" if req.dt is not None else "agents.0.timestamps"
            raise RequestError(field, "this endpoint takes points at the model's time step only")
        points, last_frames = to_model_steps(req, times, spec)
        return CanonicalRequest(
            agent_ids=np.array([a.agent_id for a in req.agents], np.int64),
            last_frames=last_frames,
            frames_given=[
                a.timestamps is not None or a.last_frame is not None or req.frame is not None
                for a in req.agents
            ],
            points=[np.round(p, decimals) + 0.0 for p in points],
            frame_step=1,
            k=req.k,
        )
    default_frame = req.frame if req.frame is not None else 0
    return CanonicalRequest(
        agent_ids=np.array([a.agent_id for a in req.agents], np.int64),
        last_frames=np.array(
            [a.last_frame if a.last_frame is not None else default_frame for a in req.agents],
            np.int64,
        ),
        frames_given=[a.last_frame is not None or req.frame is not None for a in req.agents],
        # + 0.0 turns -0.0 into 0.0, so both round to the same cache key
        points=[np.round(np.asarray(a.points, np.float64), decimals) + 0.0 for a in req.agents],
        frame_step=req.frame_step,
        k=req.k,
    )


def observed_times(req: PredictRequest) -> list[np.ndarray] | None:
    """Seconds of each agent's points when the request times them (`timestamps`, else `dt`
    with the agents' frames), else None: the points are at the model's step."""
    given = [a.timestamps is not None for a in req.agents]
    if any(given):
        if req.dt is not None:
            raise RequestError("dt", "give dt or timestamps, not both")
        if not all(given):
            missing = given.index(False)
            raise RequestError(
                f"agents.{missing}.timestamps", "missing: give timestamps for every agent or none"
            )
        out = []
        for i, agent in enumerate(req.agents):
            t = np.asarray(agent.timestamps, np.float64)
            if len(t) != len(agent.points):
                raise RequestError(
                    f"agents.{i}.timestamps", f"{len(t)} timestamps for {len(agent.points)} points"
                )
            back = np.flatnonzero(np.diff(t) <= 0)
            if len(back):
                j = int(back[0]) + 1
                raise RequestError(
                    f"agents.{i}.timestamps",
                    f"not increasing: timestamp {j} ({t[j]:g} s) is not after {t[j - 1]:g} s",
                )
            out.append(t)
        return out
    if req.dt is None:
        return None
    default_frame = req.frame if req.frame is not None else 0
    out = []
    for agent in req.agents:
        frame = agent.last_frame if agent.last_frame is not None else default_frame
        back = np.arange(len(agent.points) - 1, -1, -1)  # points before the last one
        out.append(((frame / req.frame_step - back) * req.dt).astype(np.float64))
    return out


def to_model_steps(
    req: PredictRequest, times: list[np.ndarray], spec: WindowSpec
) -> tuple[list[np.ndarray], np.ndarray]:
    """(points of each agent at spec.dt, ending at its last point; the grid frame of each
    agent's last point), or RequestError naming the field when the points cannot cover the
    model's observation span."""
    need = (spec.obs_len - 1) * spec.dt
    lengths = [len(t) for t in times]
    group = np.repeat(np.arange(len(times)), lengths)  # (n,)
    rel = np.concatenate([t - t[-1] for t in times])  # (n,) seconds, 0 at each last point
    xy = np.concatenate([np.asarray(a.points, np.float64) for a in req.agents])  # (n, 2)
    starts = segment_starts(rel, group, spec.max_gap)
    first = np.cumsum([0, *lengths[:-1]])
    for i, agent in enumerate(req.agents):
        own = starts[first[i] : first[i] + lengths[i]]
        seg = int(np.flatnonzero(own)[-1])  # first point of the agent's last segment
        cover = -float(rel[first[i] + seg])
        if cover >= need - TOLERANCE:
            continue
        where = f"agents.{i}.timestamps" if agent.timestamps is not None else f"agents.{i}.points"
        if req.dt is not None and req.dt > spec.max_gap + TOLERANCE:
            raise RequestError(
                "dt",
                f"{req.dt:g} s between points is more than the {spec.max_gap:g} s gap the "
                f"model's resampling bridges (model dt {spec.dt:g} s)",
            )
        gap = ""
        if seg:
            jump = float(rel[first[i] + seg] - rel[first[i] + seg - 1])
            gap = (
                f" after a gap of {jump:.4g} s before point {seg} (more than "
                f"{spec.max_gap:g} s is not interpolated)"
            )
        what = "covers" if req.dt is None else f"{lengths[i]} points {req.dt:g} s apart cover"
        raise RequestError(
            where, f"{what} {cover:.4g} s{gap}, the model needs {need:.4g} s at dt {spec.dt:g} s"
        )
    r = resample(rel, xy, group, dt=spec.dt, max_gap=spec.max_gap)
    last_segment = np.zeros(len(times), np.int64)
    np.maximum.at(last_segment, r.group, r.segment)
    keep = r.segment == last_segment[r.group]
    points = [r.xy[keep & (r.group == i)] for i in range(len(times))]
    last = np.array([t[-1] for t in times]) / spec.dt  # (A,) in model steps
    if np.abs(last).max() > 2**53:
        field = "dt" if req.dt is not None else "agents.0.timestamps"
        raise RequestError(field, f"times beyond {2**53 * spec.dt:.3g} s are not supported")
    return points, np.rint(last).astype(np.int64)


def full_track(points: np.ndarray, obs_len: int) -> np.ndarray:
    """(n, 2) -> (obs_len, 2): the last obs_len points, padded backwards at constant velocity."""
    pts = points[-obs_len:]
    missing = obs_len - len(pts)
    if missing <= 0:
        return pts
    first_step = pts[1] - pts[0]  # (2,)
    back = pts[0] - first_step * np.arange(missing, 0, -1)[:, None]  # (missing, 2)
    return np.concatenate([back, pts])


def batch_windows(
    reqs: list[CanonicalRequest], spec: WindowSpec
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(obs (A, T_obs, 2), nbr (A, M, T_obs, 2)) per request, agents in request order.

    Requests whose agents' frames are whole steps apart share one `make_windows` call: each
    gets its own frame range (frames counted in steps), so no agent of one request is ever at
    the same frame as an agent of another, and neighbours stay within a request. Any other
    request is windowed alone, in its own frame units.
    """
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(reqs)
    shared: list[int] = []
    steps: list[np.ndarray] = []
    for i, req in enumerate(reqs):
        rel = req.last_frames - req.last_frames.min()
        if (rel % req.frame_step).any() or rel.max() // req.frame_step > _MAX_SHARED_SPAN:
            out[i] = _windows([req], [req.last_frames], req.frame_step, spec)[0]
        else:
            shared.append(i)
            steps.append(rel // req.frame_step)
    if shared:
        for i, pair in zip(shared, _windows([reqs[i] for i in shared], steps, 1, spec)):
            out[i] = pair
    return [pair for pair in out if pair is not None]


def _windows(
    reqs: list[CanonicalRequest], lasts: list[np.ndarray], step: int, spec: WindowSpec
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One make_windows call over requests laid out in disjoint frame ranges."""
    t = spec.obs_len
    back = step * np.arange(t - 1, -1, -1)  # (T,)
    frames, tracks, start = [], [], 0
    for req, last in zip(reqs, lasts, strict=True):
        f = last[:, None] - back[None, :]  # (A, T)
        f = f - f.min() + start
        start = int(f.max()) + step + 1  # the next request shares no frame with this one
        frames.append(f)
        tracks.append(np.stack([full_track(p, t) for p in req.points]))  # (A, T, 2)
    all_frames = np.concatenate(frames)  # (N, T), N agents over all requests
    xy = np.concatenate(tracks).reshape(-1, 2)  # (N*T, 2)
    n = len(all_frames)
    df = pd.DataFrame(
        {
            S.SCENE: REQUEST_SCENE,
            S.FRAME: all_frames.ravel(),
            S.AGENT: np.repeat(np.arange(n), t),  # position in the batch: ids may be huge
            S.X: xy[:, 0],
            S.Y: xy[:, 1],
        }
    )
    windows = make_windows(df, spec, with_future=False, step=step)
    assert len(windows) == n, "one window per agent"  # full, consecutive tracks
    where = np.argsort(windows.agent_id)  # back to batch order
    obs, nbr = windows.obs[where], windows.nbr[where]
    grid = windows.start_frame[where][:, None] + step * np.arange(t)  # (N, T) window frames
    out, first = [], 0
    for req, f, track in zip(reqs, frames, tracks, strict=True):
        part = slice(first, first + len(f))
        _hide_padding(nbr[part], grid[part], f, track, [t - len(p) for p in req.points])
        out.append((obs[part], nbr[part]))
        first += len(f)
    return out


def _hide_padding(
    nbr: np.ndarray, grid: np.ndarray, frames: np.ndarray, track: np.ndarray, padded: list[int]
) -> None:
    """Set neighbour entries that are some agent's padded (made-up) point to NaN, in place.

    nbr (A, M, T, 2), grid (A, T) frames of each window, frames (A, T) and track (A, T, 2) of
    each agent, padded[i] = how many leading points of agent i were made up.
    """
    if nbr.shape[1] == 0:
        return
    for i, count in enumerate(padded):
        for j in range(count):
            x, y = track[i, j].astype(np.float32)
            hit = (grid[:, None, :] == frames[i, j]) & (nbr[..., 0] == x) & (nbr[..., 1] == y)
            nbr[hit] = np.nan
