"""`liverec train`: train the Transformer on the store's log, evaluate it, register it, and promote
it if it beats the live version on validation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from liverec.cli.common import ConfigOpt, StoreOpt, app, console, fail, progress_bar, settings_from

if TYPE_CHECKING:
    from liverec.trainer.offline import EpochLog


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def time_left(e: EpochLog, max_seconds: float = 0.0) -> str:
    """The estimate a user waiting on `liverec train` needs: at the pace so far, the time to the last
    epoch (the most it can take, or the `max_seconds` budget), and the time to the epoch early
    stopping ends at if validation stops improving (what usually happens)."""
    pace = e.elapsed_s / max(e.epoch, 1)
    most = pace * max(0, e.epochs - e.epoch)
    if max_seconds:
        most = min(most, max(0.0, max_seconds - e.elapsed_s))
    if not e.epochs or e.epoch >= e.epochs or most <= 0:
        return "left: 0s"
    early = pace * max(0, e.stops_by - e.epoch)
    if e.stops_by and early < most:
        return f"left: ≤{_duration(most)}, ~{_duration(early)} if val stops improving"
    return f"left: ~{_duration(most)}"


class Promote(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


@app.command()
def train(
    config: ConfigOpt = None,
    store: StoreOpt = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="maximum epochs (default from settings)")] = None,
    text: Annotated[bool, typer.Option(help="use the pretrained text encoder for item content")] = True,
    promote: Annotated[Promote, typer.Option(help="auto: only if better on validation")] = Promote.auto,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="worker processes on this host: data-parallel training with torch.distributed "
            "(DDP, gloo); run under torchrun, one model is registered",
        ),
    ] = 1,
    nnodes: Annotated[
        int, typer.Option(min=1, help="hosts taking part (each runs this command; MASTER_ADDR/PORT)")
    ] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="this host's rank among --nnodes")] = 0,
) -> None:
    """Train offline: validation = each user's second-to-last interaction, test = the last."""
    if (nproc > 1 or nnodes > 1) and "LOCAL_RANK" not in os.environ:
        args = ["--epochs", str(epochs)] if epochs else []
        args += ["--config", str(config)] if config else []
        args += ["--store", store] if store else []
        args += ["--text" if text else "--no-text", "--promote", promote.value, "--seed", str(seed)]
        raise typer.Exit(launch(nproc, nnodes, node_rank, args))
    from liverec.core.metrics import evaluate
    from liverec.evaluate.offline import evaluate_snapshot, split_from_store
    from liverec.model.text import TextEncoder
    from liverec.registry.registry import ModelRegistry, RegistryError
    from liverec.store import StoreError, open_store
    from liverec.trainer.distributed import Shard
    from liverec.trainer.offline import build_model, scorer
    from liverec.trainer.offline import train as fit

    shard = Shard.from_env()  # a torchrun worker joins its group; alone otherwise
    if not shard.lead:
        console.quiet = True  # rank 0 speaks for the group
    train_args = {"seed": seed, **({"epochs": epochs} if epochs else {})}  # [train] values, validated
    settings = settings_from(config, store, train=train_args)
    cfg = settings.train
    try:
        with open_store(settings.store_url) as st:
            trained_to = st.last_offset()  # the online learner continues from here
            split = split_from_store(st, min_len=3)
            if not split.train:
                fail("no user has 3 or more positive interactions yet: nothing to train on")
            vectors = None
            if text:
                texts = [split.seqs.texts.get(i, "") for i in split.seqs.vocab.ids]
                if not shard.lead:
                    shard.barrier()  # rank 0 fills the store's embedding cache; the others read it
                with progress_bar("encoding item text", len(texts)) as advance:
                    vectors = TextEncoder().encode_cached(texts, st, advance)
                if shard.lead:
                    shard.barrier()
    except StoreError as exc:
        fail(str(exc))
        return
    try:
        model = build_model(split.n_items, vectors, settings.model)
    except (TypeError, ValueError) as exc:
        fail(f"bad model/train settings: {exc}")
        return
    console.print(
        f"training on {len(split.train):,} users, {split.n_items:,} items, "
        f"{sum(len(s) for s in split.train):,} interactions"
    )
    max_s = cfg.max_seconds
    with Progress(
        TextColumn("[bold]epoch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=cfg.epochs, status="", eta="")

        def on_epoch(e: EpochLog) -> None:
            val = f"val ndcg@10 {e.val['ndcg@10']:.4f} hr@10 {e.val['hr@10']:.4f}" if e.val else ""
            status = f"loss {e.loss:.3f} {e.interactions_per_s:,.0f}/s {val}"
            eta = time_left(e, max_s)
            progress.update(task, advance=1, total=e.epochs or cfg.epochs, status=status, eta=eta)
            if not console.is_terminal:
                console.print(f"epoch {e.epoch}/{e.epochs or cfg.epochs} ({eta}): {status}")

        result = fit(model, split.train, split.val_inputs(), split.val, cfg, on_epoch=on_epoch, shard=shard)
    shard.close()
    if not shard.lead:
        return  # every worker holds the same weights; rank 0 registers them once
    test = evaluate(scorer(model), split.test_inputs(), split.test, split.n_items)
    metrics = {
        "val": result.best_val,
        "test": test,
        "best_epoch": result.best_epoch,
        "train_s": result.seconds,
        "interactions_per_s": result.interactions_per_s,
        "world_size": shard.world,
        "users": len(split.train),
        "items": split.n_items,
    }
    registry = ModelRegistry(settings.registry_path)
    live = registry.live()
    version = registry.save(
        model,
        split.seqs.vocab.to_list(),
        metrics,
        parent=live,
        extra={"train": cfg.model_dump(), "trained_at": time.time(), "trainer_offset": trained_to},
    )
    console.print(
        f"registered {version}: val ndcg@10 {result.best_val.get('ndcg@10', 0):.4f}, "
        f"test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f} ({result.seconds:.0f}s)"
    )
    go = promote is Promote.always or live is None
    if promote is Promote.auto and live is not None:
        try:
            live_val = evaluate_snapshot(registry.load(live), split, on="val")["ndcg@10"]
        except RegistryError as exc:
            console.print(f"live version unreadable ({exc}); promoting the new one")
            live_val = -1.0
        go = result.best_val.get("ndcg@10", 0.0) >= live_val
        console.print(f"live {live} val ndcg@10 {live_val:.4f} -> {'promote' if go else 'keep live'}")
    if go:
        registry.promote(version)
        console.print(f"[green]{version} is live[/]")


def launch(nproc: int, nnodes: int, node_rank: int, args: list[str]) -> int:
    """Re-run ``liverec train args`` as ``nproc`` workers under torchrun (`torch.distributed.run`);
    its exit code. One host: a standalone rendezvous on a free local port. Several: a static one at
    MASTER_ADDR:MASTER_PORT, which every host must be given."""
    if nnodes == 1:
        where = ["--standalone"]
    else:
        addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if not addr or not port:
            fail("--nnodes > 1 needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free port)")
        where = [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={addr}"]
        where.append(f"--master-port={port}")
    cmd = [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc-per-node={nproc}"]
    console.print(f"training with {nproc * nnodes} processes (torch.distributed, gloo)")
    return subprocess.call([*cmd, "-m", "liverec", "train", *args])
