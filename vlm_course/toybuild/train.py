"""A small, shared training loop for the toy checkpoints (AdamW, OneCycle, progress bar)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    steps: int,
    max_lr: float,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
    schedule: str = "onecycle",
    weight_decay: float = 0.01,
    clip_norm: float = 1.0,
    desc: str = "training",
) -> dict:
    """Run ``steps`` optimisation steps; ``loss_fn(step)`` builds a batch and returns its loss.

    Returns ``{"steps", "seconds", "final_loss"}`` (final_loss is the mean of the last 50 steps).
    """
    model.train()
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=max_lr, weight_decay=weight_decay)
    if schedule == "onecycle" and steps >= 10:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=0.15)
    else:
        sched = None
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=1.0)
    for step in bar:
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, clip_norm)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
    model.eval()
    tail = losses[-50:] or [float("nan")]
    return {"steps": steps, "seconds": round(time.perf_counter() - start, 1), "final_loss": sum(tail) / len(tail)}
