"""A deterministic synthetic crowd: a small social-force simulation written as ETH/UCY text.

Each scene is a 20 x 14 m area with a fixed number of agent slots. Slots form groups of one
to three that enter together from an edge, walk at a shared speed of 1.0-1.6 m/s towards
the opposite edge (flows in both directions along x, and crossing flows along y), sometimes
through a waypoint, and leave; after a pause the group's slots are refilled with new agents.
Forces (Helbing & Molnar 1995): relaxation to the desired velocity, anisotropic exponential
repulsion between agents (weaker inside a group), and cohesion towards the group centre.

All scenes advance together as arrays (scenes, slots), so a step costs a few numpy calls.
Random draws come from one generator per scene, made from (seed, scene index), so a scene's
data does not depend on how many scenes are simulated beside it. `fast=True` integrates
once per frame (0.4 s) instead of twice (0.2 s): about 2x cheaper, a little jerkier.
Positions are rounded to centimetres after 2 cm of Gaussian measurement noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from trajectory.exceptions import ConfigError
from trajectory.files import neutralise_table

FRAME_STEP = 10  # frame units per frame, as in ETH/UCY
FRAME_SECONDS = 0.4
SIZE = np.array([20.0, 14.0])  # metres
_FLUSH_FRAMES = 500  # frames simulated between two writes
_TAU, _A, _A_GROUP, _B, _RADIUS = 0.5, 2.1, 0.4, 0.3, 0.6  # social-force constants
_COHESION, _MAX_FORCE, _MAX_AGE = 0.6, 10.0, 400
_GROUP_SIZES = np.array([1, 1, 1, 2, 2, 3])
_FLOWS = np.array([0.35, 0.35, 0.15, 0.15])  # west->east, east->west, south->north, north->south


@dataclass
class _Plan:
    """Pre-drawn parameters for each slot's successive agents, (S, N, K, ...)."""

    start: np.ndarray  # (S, N, K, 2)
    goal: np.ndarray  # (S, N, K, 2)
    waypoint: np.ndarray  # (S, N, K, 2), NaN where the agent walks straight
    speed: np.ndarray  # (S, N, K)
    wait: np.ndarray  # (S, N, K) frames to wait before the next group enters
    leader: np.ndarray  # (S, N) index of the slot that leads each slot's group


def simulate_crowd(
    out_dir: str | Path,
    n_scenes: int = 3,
    agents_per_scene: int = 24,
    n_frames: int = 2000,
    seed: int = 0,
    files_per_scene: int = 1,
    fast: bool = False,
) -> list[Path]:
    """Write `out_dir/<scene>/<scene>_partNN.txt` (frame agent_id x y), split by time.

    About n_scenes * agents_per_scene * n_frames * 0.9 rows in all; same arguments, same bytes.
    """
    if min(n_scenes, agents_per_scene, n_frames, files_per_scene) < 1:
        raise ConfigError("n_scenes, agents_per_scene, n_frames and files_per_scene must be >= 1")
    out = Path(out_dir)
    names = [f"sim_{i:03d}" for i in range(n_scenes)]
    rngs = [np.random.default_rng([seed, i]) for i in range(n_scenes)]
    plan = _draw_plan(rngs, agents_per_scene, n_frames)
    frames_per_file = -(-n_frames // files_per_scene)
    paths = [out / n / f"{n}_part{p:02d}.txt" for n in names for p in range(files_per_scene)]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    sim = _Crowd(plan, substeps=1 if fast else 2)
    for begin in range(0, n_frames, _FLUSH_FRAMES):
        rows = [sim.step() for _ in range(begin, min(begin + _FLUSH_FRAMES, n_frames))]
        for s, part, chunk in _by_file(rows, frames_per_file):
            _append(out / names[s] / f"{names[s]}_part{part:02d}.txt", chunk, rngs[s])
    return paths


def _draw_plan(rngs: list[np.random.Generator], n: int, n_frames: int) -> _Plan:
    k = n_frames // 20 + 4  # more agents than a slot can use (each lives > 20 frames)
    parts = [_draw_scene(rng, n, k) for rng in rngs]
    return _Plan(*(np.stack([p[i] for p in parts]) for i in range(6)))


def _draw_scene(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, ...]:
    sizes = rng.choice(_GROUP_SIZES, size=n)
    leader = np.repeat(np.cumsum(sizes) - sizes, sizes)[:n]  # first slot of each group
    flow = rng.choice(4, size=(n, k), p=_FLOWS)
    axis = flow // 2  # 0: walks along x, 1: along y
    forward = flow % 2 == 0
    length, width = SIZE[axis], SIZE[1 - axis]
    lateral = rng.uniform(0.1, 0.9, (n, k)) * width
    goal_lateral = np.clip(lateral + rng.normal(0, 0.25, (n, k)) * width, 0.5, width - 0.5)
    along_start = np.where(forward, 0.0, length)
    start = _place(axis, along_start, lateral)
    goal = _place(axis, length - along_start, goal_lateral)
    waypoint = rng.uniform(0.3, 0.7, (n, k, 2)) * SIZE
    waypoint[rng.random((n, k)) > 0.3] = np.nan
    speed = rng.uniform(1.0, 1.6, (n, k))
    wait = rng.integers(0, 25, (n, k))
    offset = rng.normal(0, 0.4, (n, k, 2))  # members stand beside their leader
    beside = np.where((np.arange(n) != leader)[:, None, None], offset, 0.0)
    # a group shares its leader's draws
    start, goal = start[leader] + beside, goal[leader] + beside
    return start, goal, waypoint[leader], speed[leader], wait[leader], leader


def _place(axis: np.ndarray, along: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    x = np.where(axis == 0, along, lateral)
    y = np.where(axis == 0, lateral, along)
    return np.stack([x, y], axis=-1)


class _Crowd:
    """The state of every slot of every scene, advanced one frame per `step`."""

    def __init__(self, plan: _Plan, substeps: int) -> None:
        self.plan, self.substeps = plan, substeps
        s, n, k = plan.speed.shape
        self.k = k
        self.pos = np.zeros((s, n, 2))
        self.vel = np.zeros((s, n, 2))
        self.active = np.zeros((s, n), bool)
        self.age = np.zeros((s, n), np.int64)
        self.ptr = np.full((s, n), -1)  # index of each slot's current plan entry
        self.wait = plan.wait[:, :, -1].copy()  # read at the leader slot; staggers the start
        self.ids = np.zeros((s, n), np.int64)
        self.goal = np.zeros((s, n, 2))  # the current agent's plan entries, copied at spawn
        self.waypoint = np.full((s, n, 2), np.nan)
        self.v0 = np.ones((s, n))
        self.next_id = np.ones(s, np.int64)
        self.same_group = plan.leader[:, :, None] == plan.leader[:, None, :]  # (S, N, N)
        self.not_self = ~np.eye(n, dtype=bool)  # (N, N)
        self.strength = np.where(self.same_group, _A_GROUP, _A)  # (S, N, N) repulsion, m/s^2
        self.frame = 0
        self._rows = np.arange(s)[:, None]

    def step(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Advance one frame; (frame, scene index, agent id, xy) of agents seen at it."""
        self._spawn()
        s_idx, n_idx = np.nonzero(self.active)
        seen = (self.frame * FRAME_STEP, s_idx, self.ids[s_idx, n_idx], self.pos[s_idx, n_idx])
        for _ in range(self.substeps):
            self._move(FRAME_SECONDS / self.substeps)
        self._retire()
        self.frame += 1
        return seen

    def _spawn(self) -> None:
        leader = self.plan.leader
        group_active = np.zeros_like(self.active)
        np.logical_or.at(group_active, (self._rows, leader), self.active)
        idle = ~group_active[self._rows, leader]  # (S, N) whole group is gone
        ready = idle & (self.wait[self._rows, leader] <= 0)
        self.wait[idle & ~ready] -= 1
        if not ready.any():
            return
        self.ptr[ready] = (self.ptr[ready] + 1) % self.k
        s, n = np.nonzero(ready)
        k = self.ptr[s, n]
        self.pos[s, n] = self.plan.start[s, n, k]
        self.goal[s, n] = self.plan.goal[s, n, k]
        self.waypoint[s, n] = self.plan.waypoint[s, n, k]
        self.v0[s, n] = self.plan.speed[s, n, k]
        self.vel[s, n] = self.v0[s, n, None] * _unit(self._target()[s, n] - self.pos[s, n])
        self.active[s, n] = True
        self.age[s, n] = 0
        self.wait[s, n] = self.plan.wait[s, n, k]
        counts = np.bincount(s, minlength=len(self.next_id))
        rank = np.arange(len(s)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.ids[s, n] = self.next_id[s] + rank
        self.next_id += counts

    def _target(self) -> np.ndarray:
        """(S, N, 2) where each agent heads: its waypoint until within 1 m of it, then its goal."""
        near = np.linalg.norm(self.waypoint - self.pos, axis=-1) < 1.0  # False where NaN
        self.waypoint[near] = np.nan
        return np.where(np.isnan(self.waypoint), self.goal, self.waypoint)

    def _move(self, dt: float) -> None:
        v0 = self.v0[..., None]  # (S, N, 1)
        e = _unit(self._target() - self.pos)  # (S, N, 2)
        force = (v0 * e - self.vel) / _TAU

        x, y = self.pos[..., 0], self.pos[..., 1]
        dx = x[:, :, None] - x[:, None, :]  # (S, N, N) from j to i
        dy = y[:, :, None] - y[:, None, :]
        dist = np.maximum(np.sqrt(dx * dx + dy * dy), 1e-6)
        nx, ny = dx / dist, dy / dist
        pair = self.active[:, :, None] & self.active[:, None, :] & self.not_self & (dist < 4.0)
        cos_phi = -(e[..., 0, None] * nx + e[..., 1, None] * ny)  # j ahead of i: > 0
        push = self.strength * np.exp((_RADIUS - dist) / _B) * (0.75 + 0.25 * cos_phi) * pair
        mates = pair & self.same_group
        n_mates = np.maximum(mates.sum(axis=-1), 1)
        force[..., 0] += (push * nx).sum(axis=-1) - _COHESION * (mates * dx).sum(axis=-1) / n_mates
        force[..., 1] += (push * ny).sum(axis=-1) - _COHESION * (mates * dy).sum(axis=-1) / n_mates

        size = np.linalg.norm(force, axis=-1, keepdims=True)
        force *= np.minimum(1.0, _MAX_FORCE / np.maximum(size, 1e-9))
        self.vel = np.where(self.active[..., None], self.vel + force * dt, 0.0)
        speed = np.linalg.norm(self.vel, axis=-1, keepdims=True)
        self.vel *= np.minimum(1.0, 1.3 * v0 / np.maximum(speed, 1e-9))
        self.pos = self.pos + self.vel * dt

    def _retire(self) -> None:
        arrived = np.linalg.norm(self.goal - self.pos, axis=-1) < 0.6
        outside = ((self.pos < -1.0) | (self.pos > SIZE + 1.0)).any(axis=-1)
        self.age += self.active
        self.active &= ~(arrived | outside | (self.age > _MAX_AGE))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _by_file(
    rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]], frames_per_file: int
) -> list[tuple[int, int, np.ndarray]]:
    """(scene, part, rows (R, 4) of frame agent x y) for every scene and part file touched."""
    frame = np.concatenate([np.full(len(s), f) for f, s, _, _ in rows])
    scene = np.concatenate([s for _, s, _, _ in rows])
    table = np.column_stack(
        [frame, np.concatenate([a for _, _, a, _ in rows]), np.concatenate([p for *_, p in rows])]
    )
    part = frame // FRAME_STEP // frames_per_file
    order = np.lexsort((part, scene))  # stable: rows stay in frame order
    keys = np.stack([scene[order], part[order]], axis=1)
    cuts = np.flatnonzero((np.diff(keys, axis=0) != 0).any(axis=1)) + 1
    return [
        (int(keys[c[0], 0]), int(keys[c[0], 1]), table[order[c]])
        for c in np.split(np.arange(len(order)), cuts)
        if len(c)
    ]


def _append(path: Path, rows: np.ndarray, rng: np.random.Generator) -> None:
    xy = np.round(rows[:, 2:] + rng.normal(0, 0.02, (len(rows), 2)), 2)
    table = pa.table(
        {
            "frame": rows[:, 0].astype(np.int64),
            "agent_id": rows[:, 1].astype(np.int64),
            "x": xy[:, 0] + 0.0,  # + 0.0 turns -0.0 into 0.0
            "y": xy[:, 1] + 0.0,
        }
    )
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with path.open("ab") as fh:
        pacsv.write_csv(neutralise_table(table), fh, options)  # the shared CSV guard
