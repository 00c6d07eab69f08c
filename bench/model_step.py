"""Training-step throughput of the GOLD network (gold.models + gold.losses).

Times forward + full GOLD loss + backward of `build_model(variant)` in training mode with the teacher (the
student on optical t1 + SAR t2, the teacher on optical t1 + optical t2), on random tensors: samples/s over
`--steps` steps after `--warmup` untimed steps. No optimizer step, so only the network and the loss are
measured. On CUDA the step runs under bf16 autocast with channels_last tensors (switch off with `--fp32`,
`--no-channels-last`) and the peak GPU memory is reported too.

Usage: python bench/model_step.py [--variants full lightweight] [--device cpu cuda] [--batch 8] [--size 256]
                                  [--steps 3] [--warmup 1] [--opt-bands 3] [--sar-bands 1] [--threads N] [--json]
"""
import argparse
import json
import time

import torch


def step_fn(model, loss_fn, batch, device, amp: bool):
    """One forward + loss + backward; returns the loss value as a tensor."""
    a, b, c, y = batch
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(a, b, c)
    total, _ = loss_fn(out, y, epoch=loss_fn.config.warmup)  # past the warm-up: every term on
    total.backward()
    return total.detach()


def bench(variant: str, device: torch.device, args) -> dict:
    """Time the training step of one variant on one device."""
    from gold.core import seed_everything
    from gold.losses import GoldLoss
    from gold.models import build_model

    seed_everything(0, deterministic=False)
    cuda = device.type == "cuda"
    amp = cuda and not args.fp32
    fmt = torch.channels_last if cuda and not args.no_channels_last else torch.contiguous_format
    model = build_model(variant, args.opt_bands, args.sar_bands, teacher=True).to(device, memory_format=fmt).train()
    loss_fn = GoldLoss().to(device)
    n, s = args.batch, args.size
    batch = [torch.randn(n, k, s, s, device=device).contiguous(memory_format=fmt)
             for k in (args.opt_bands, args.sar_bands, args.opt_bands)]
    batch.append(torch.randint(0, 2, (n, s, s), device=device))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(args.warmup):
        step_fn(model, loss_fn, batch, device, amp)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step_fn(model, loss_fn, batch, device, amp)
    sync()
    dt = time.perf_counter() - t0
    row = dict(variant=variant, device=str(device), name=torch.cuda.get_device_name(device) if cuda else "cpu",
               threads=torch.get_num_threads(), batch=n, size=s, steps=args.steps, amp_bf16=amp,
               channels_last=fmt == torch.channels_last, seconds_per_step=dt / args.steps,
               samples_per_s=n * args.steps / dt, loss=float(loss))
    if cuda:
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["full", "lightweight"], choices=["full", "lightweight"])
    p.add_argument("--device", nargs="+", default=["cpu", "cuda"],
                   help="devices to time; cuda is skipped when not available")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--opt-bands", type=int, default=3)
    p.add_argument("--sar-bands", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--no-channels-last", action="store_true", help="contiguous tensors on CUDA")
    p.add_argument("--json", action="store_true", help="print one JSON object per row instead of a table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    for d in args.device:
        if d.startswith("cuda") and not torch.cuda.is_available():
            print(f"# {d}: not available, skipped")
            continue
        devices.append(torch.device(d))
    rows = [bench(v, d, args) for d in devices for v in args.variants]
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return rows
    print(f"# forward + GOLD loss + backward, training mode with teacher, batch {args.batch}, "
          f"{args.size}x{args.size}, {args.opt_bands} optical / {args.sar_bands} SAR bands, {args.steps} timed steps")
    print(f"{'variant':<12} {'device':<28} {'amp/cl':<8} {'s/step':>8} {'samples/s':>10} {'peak GiB':>9}")
    for r in rows:
        mode = ("bf16" if r["amp_bf16"] else "fp32") + ("/cl" if r["channels_last"] else "")
        dev = r["name"] if r["device"] != "cpu" else f"cpu ({r['threads']} threads)"
        mem = f"{r['peak_mem_gib']:.2f}" if "peak_mem_gib" in r else "-"
        print(f"{r['variant']:<12} {dev[:28]:<28} {mode:<8} {r['seconds_per_step']:>8.3f} "
              f"{r['samples_per_s']:>10.2f} {mem:>9}")
    return rows


if __name__ == "__main__":
    main()
