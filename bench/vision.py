"""Camera inspection: onnxruntime vs torch eager on the same network, the served models' latency, and end to end.

    python -m bench.vision [--seconds 10] [--clients 4] [--dsn postgresql://...]

1. ort vs torch: each served architecture (the NEU classifier, the tile U-Net) built in torch under a seed, exported
   to ONNX in this run, and both run on the same 200x200 inputs resized to the model's size, one image at a time on
   one thread (torch.set_num_threads(1); ort intra-op 1): p50 of each, outputs checked equal; the ratio is torch
   eager p50 / ort p50 (the weights do not change the work, so fresh weights measure the runtimes fairly).
2. The committed models as served (decode of a real 200x200 JPEG + resize + ONNX + softmax): p50/p99 single-image
   latency on one thread, and batched images/s (batch 32).
3. End to end: uvicorn serving the API over a scratch database, `--clients` concurrent clients each POSTing real NEU
   images (200x200 JPEG, multipart) to /api/v1/inspections for `--seconds`: images/s and p50/p99 latency.
Prints one JSON line with load_avg_1min (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.ingest import default_dsn
from bench.scratch import scratch_database
from datasets import dataset_dir

IMAGES = dataset_dir("neu-surface-defect") / "IMAGES"


def _pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 3)


def ort_vs_torch(reps: int) -> dict[str, Any]:
    """torch eager vs onnxruntime on each served architecture, one image, one thread."""
    import onnxruntime as ort
    import torch

    from inspection.models import load_model
    from inspection.nets import SmallCnn, TileUnet, TinyVit
    from inspection.train import export_onnx

    torch.set_num_threads(1)
    torch.manual_seed(0)
    neu = load_model("neu")
    arch = neu.card.inputs.get("architecture", "cnn")
    tile = load_model("mtile")
    shape = tile.card.inputs.get("architecture", {})  # the served U-Net's width, top-k and mirroring
    unet = TileUnet(6, int(shape.get("width", 16)), int(shape.get("top", 16)), bool(shape.get("mirror", False)))
    nets = {f"neu_{arch}": (SmallCnn(6) if arch == "cnn" else TinyVit(6, neu.size), neu.size, ["logits"]),
            "mtile_unet": (unet, tile.size, ["logits", "mask_logits"])}
    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for name, (net, size, outputs) in nets.items():
        net.eval()
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(export_onnx(net, size, outputs), options, providers=["CPUExecutionProvider"])
        x = rng.random((1, 1, size, size), dtype=np.float32)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x))
        ref0 = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        assert np.allclose(session.run(None, {"image": x})[0], ref0, atol=1e-3), name
        t_torch, t_ort = [], []
        for i in range(reps):  # alternate the two sides so the machine's noise falls on both
            for side in ((0, 1) if i % 2 else (1, 0)):
                t0 = time.perf_counter()
                if side == 0:
                    with torch.inference_mode():
                        net(torch.from_numpy(x))
                    t_torch.append((time.perf_counter() - t0) * 1000)
                else:
                    session.run(None, {"image": x})
                    t_ort.append((time.perf_counter() - t0) * 1000)
        out[name] = {"torch_p50_ms": _pct(t_torch, 50), "ort_p50_ms": _pct(t_ort, 50),
                     "ort_over_torch_ratio": round(float(np.median(t_torch) / np.median(t_ort)), 2)}
    return out


def served(reps: int) -> dict[str, Any]:
    """The committed models on real images: single-image p50/p99 and batched images/s."""
    from inspection.images import decode, resize
    from inspection.models import load_model

    data = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[:32]]
    out: dict[str, Any] = {}
    for name in ("neu", "mtile"):
        model = load_model(name)
        times = []
        for i in range(reps):
            t0 = time.perf_counter()
            model.run(decode(data[i % len(data)]).grey)
            times.append((time.perf_counter() - t0) * 1000)
        batch = np.stack([resize(decode(d).grey, model.size)[None] for d in data])
        t0 = time.perf_counter()
        rounds = max(1, reps // 32)
        for _ in range(rounds):
            model.batch(batch)
        out[name] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99), "sha256": model.card.sha256[:12],
                     "batch32_images_per_s": round(rounds * len(batch) / (time.perf_counter() - t0), 1)}
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def end_to_end(admin: str, seconds: float, clients: int) -> dict[str, Any]:
    """uvicorn + the API over a scratch database; clients POST real images concurrently for `seconds`."""
    import httpx
    import uvicorn

    from api.app import create_app
    from historian.db import connect
    from inspection import store
    from api.config import ApiConfig, ApiUser

    key = f"bench-vision-{os.getpid()}-0123456789abcdef"

    data = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[:64]]
    async with scratch_database(admin, "sf_bench_vision") as dsn:
        conn = await connect(dsn)
        await store.upsert_station(conn, store.Station("bench-cam", "bench-m", "neu"))
        await conn.close()
        port = _free_port()
        users = [ApiUser(name="bench", key=key, role="operator")]
        app = create_app(dsn, ApiConfig(users=users), pool_size=clients + 1)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def client(k: int) -> None:
            nonlocal errors
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         headers={"Authorization": f"Bearer {key}"}) as c:
                i = k
                while time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    image = ("x.jpg", data[i % len(data)], "image/jpeg")
                    r = await c.post("/api/v1/inspections", files={"image": image}, data={"station": "bench-cam"})
                    if r.status_code == 201:
                        latencies.append((time.perf_counter() - t0) * 1000)
                    else:
                        errors += 1
                    i += clients

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
        server.should_exit = True
        await task
    return {"clients": clients, "images": len(latencies), "errors": errors,
            "images_per_s": round(len(latencies) / elapsed, 1), "p50_ms": _pct(latencies, 50),
            "p99_ms": _pct(latencies, 99), "image": "200x200 JPEG (NEU), multipart"}


def main() -> None:
    """Run the three parts and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--dsn", help="server for the scratch database (default: the services' TimescaleDB)")
    args = p.parse_args()
    os.environ.setdefault("SHOPFLOOR_STATE", str(Path("/tmp") / f"sf_bench_vision_{os.getpid()}"))
    started = time.perf_counter()
    result: dict[str, Any] = {"bench": "vision"}
    result["ort_vs_torch"] = ort_vs_torch(args.reps)
    result["ort_over_torch_ratio"] = min(v["ort_over_torch_ratio"] for v in result["ort_vs_torch"].values())
    result["served"] = served(args.reps)
    result["e2e"] = asyncio.run(end_to_end(args.dsn or default_dsn(), args.seconds, args.clients))
    result["load_avg_1min"] = round(os.getloadavg()[0], 2)
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
