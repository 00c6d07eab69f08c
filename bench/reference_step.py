"""The kit's GOLD training step against a re-implementation of the method's reference design, on the same shapes.

For each design (the kit: `gold.models.build_model` + `gold.losses.GoldLoss` + the AdamW of
`gold.train.build_optimizer`, run under the kit's own `gold.train.Precision` policy; the reference: a TripleEUNet
re-built here in plain PyTorch + torchvision, with the reference's cheaper loss and plain AdamW), each variant
(full, lightweight) and each precision (fp32; bf16 = bf16 autocast + channels_last model and inputs), times the
median seconds of a whole training step (zero_grad, forward with the teacher, loss, backward, gradient clipping at
0.5, optimizer step) over `--steps` steps after `--warmup` untimed ones, on random tensors (seed 0). Every
configuration runs in a fresh child process of this script (`--one`), so the peak memory it reports is its own:
the resident-set high-water mark (ru_maxrss) on the CPU, `torch.cuda.max_memory_allocated` on CUDA.

A "default policy" line compares the kit under `precision='auto'` (what `Precision.for_run` chooses on this
machine, printed) with the reference as it runs (fp32, contiguous tensors). Then the ratios: kit/reference
samples/s per variant at equal precision and default-vs-as-run, bf16/fp32 per design, lightweight/full speed-up.

The reference design re-built here (method page sections 1-4, defects kept where they change the cost):
two torchvision ResNet-18 encoders with the three-conv deep stem (the optical one run separately on A and on C),
per-stage 1x1 neck, BCA, student and teacher heads; loss = weighted CE (0.1/0.9) + 1.5 * Dice against the
background column of the one-hot target, teacher CD loss, feature distillation without detaching the teacher,
output KL (T = 2, teacher detached), difference-map attention transfer, the section-3 weights from four groups of
zero-initialised log-variances (softplus precisions, no regulariser); AdamW lr 5e-4, weight decay 0.01, clip 0.5.
Both designs run in training mode (the reference's freeze-to-eval defect is not reproduced).

`--profile VARIANT` instead runs torch.profiler over 2 steps of one design (`--profile-design`, default the kit)
in `--precision` (default auto) and prints the top 25 ops by self CPU time, then the CPU time of every phase of
the step, of each top-level module's forward, of the upsampling and of each loss term.

Usage: python bench/reference_step.py [--variants full lightweight] [--batch 8] [--size 256] [--steps 5]
                                      [--warmup 1] [--threads N] [--device cpu|cuda] [--json]
       python bench/reference_step.py --profile lightweight [--profile-design kit|reference]
                                      [--precision auto|fp32|bf16] [--batch 8] [--size 256] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Sequence

os.environ.setdefault("GOLD_PROGRESS", "0")
os.environ.setdefault("GOLD_LOG_LEVEL", "WARNING")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision.models import resnet18  # noqa: E402
from torchvision.models.resnet import BasicBlock  # noqa: E402

OPT_BANDS, SAR_BANDS = 3, 1
LR, WEIGHT_DECAY, CLIP_NORM = 5e-4, 0.01, 0.5
PRECISIONS = ("fp32", "bf16")
DESIGNS = ("kit", "reference")
Phase = Callable[[str], ContextManager]  # a labelled range around a part of the step (no-op unless profiling)


def no_phase(name: str) -> ContextManager:
    """The phase labeller of timed runs: does nothing."""
    return nullcontext()


# ---------------------------------------------------------------------------------------------------------------
# The reference design: TripleEUNet
# ---------------------------------------------------------------------------------------------------------------
REF_VARIANTS: dict[str, dict] = {
    "full": dict(widths=(64, 128, 256, 512), neck=128, reduction=16),
    "lightweight": dict(widths=(32, 64, 128, 256), neck=64, reduction=32),
}


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """Bias-free convolution (same padding), batch norm and ReLU."""
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class RefEncoder(nn.Module):
    """torchvision's ResNet-18 with the deep stem (3x3 convs in->w s2, w->w, w->2w, max-pool); four stage outputs."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        net = resnet18(weights=None)
        w0 = widths[0]
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, w0, 3, 2), *conv_bn_relu(w0, w0),
                                  *conv_bn_relu(w0, 2 * w0))
        self.maxpool = net.maxpool
        net.inplanes = 2 * w0  # layer1 takes the stem's 2w channels: rebuild it (with a projection shortcut)
        stages = [net._make_layer(BasicBlock, w0, 2)]
        if tuple(widths) == (64, 128, 256, 512):
            stages += [net.layer2, net.layer3, net.layer4]  # torchvision's own stages
        else:  # narrower encoders: the same BasicBlock stages at the variant's widths
            stages += [net._make_layer(BasicBlock, w, 2, stride=2) for w in widths[1:]]
        self.layers = nn.ModuleList(stages)  # avgpool and fc are dropped

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class RefNeck(nn.Module):
    """Per stage 1x1 conv -> width, BN, ReLU, bilinear resize to 1/4; concatenation, 1x1 conv -> width, BN."""

    def __init__(self, in_channels: Sequence[int], width: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Sequential(*conv_bn_relu(c, width, 1)) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(len(in_channels) * width, width, 1, bias=False), nn.BatchNorm2d(width))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        maps = []
        for lateral, f in zip(self.lateral, feats):
            y = lateral(f)
            maps.append(y if y.shape[-2:] == size else F.interpolate(y, size=size, mode="bilinear",
                                                                     align_corners=False))
        return self.fuse(torch.cat(maps, 1))


class RefBCA(nn.Module):
    """Bidirectional channel attention: cross re-weighting by the other input's MLP weights and a shared MLP."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels, bias=False))
        self.mlp_s = nn.Sequential(nn.Linear(2 * channels, hidden, bias=False), nn.ReLU(inplace=True),
                                   nn.Linear(hidden, channels, bias=False))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gap1, gmp1 = f1.mean((2, 3)), f1.amax((2, 3))
        gap2, gmp2 = f2.mean((2, 3)), f2.amax((2, 3))
        w1 = torch.sigmoid(self.mlp(gap1) + self.mlp(gmp1))[:, :, None, None]
        w2 = torch.sigmoid(self.mlp(gap2) + self.mlp(gmp2))[:, :, None, None]
        ws = torch.sigmoid(self.mlp_s(torch.cat([gap1, gap2], 1)) + self.mlp_s(torch.cat([gmp1, gmp2], 1)))
        ws = ws[:, :, None, None]
        return f1 * w2 + f1 * ws + f1, f2 * w1 + f2 * ws + f2


class RefHead(nn.Module):
    """Difference map, fusion with it, classifier; returns (logits @ 1/4, enhanced features, difference map)."""

    def __init__(self, channels: int, width: int, enhanced: int, dropout: float = 0.1):
        super().__init__()
        pair = 2 * channels
        self.diff = nn.Sequential(*conv_bn_relu(pair, width, 3), nn.Conv2d(width, 1, 1), nn.Sigmoid())
        self.fuse = nn.Sequential(*conv_bn_relu(pair + 1, enhanced, 3))
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), *conv_bn_relu(enhanced, width, 3),
                                        nn.Conv2d(width, 2, 1))

    def forward(self, f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = torch.cat([f1, f2], 1)
        d = self.diff(s)
        enhanced = self.fuse(torch.cat([s, d], 1))
        return self.classifier(enhanced), enhanced, d


class TripleEUNet(nn.Module):
    """The reference network: shared optical encoder + neck (A and C), SAR encoder + neck (B), BCA, two heads."""

    def __init__(self, variant: str = "full", opt_bands: int = OPT_BANDS, sar_bands: int = SAR_BANDS):
        super().__init__()
        cfg = REF_VARIANTS[variant]
        widths, neck = cfg["widths"], cfg["neck"]
        self.encoder_opt = RefEncoder(opt_bands, widths)
        self.encoder_sar = RefEncoder(sar_bands, widths)
        self.neck_opt = RefNeck(widths, neck)
        self.neck_sar = RefNeck(widths, neck)
        self.bca = RefBCA(neck, cfg["reduction"])
        self.student_head = RefHead(neck, neck, 2 * neck)
        self.teacher_head = RefHead(neck, neck, 2 * neck)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal (fan-out) convs and linears, unit batch norms (the kit's initialiser); small output convs."""
        from gold.blocks import init_he_normal
        init_he_normal(self)
        for head in (self.student_head, self.teacher_head):
            for conv in (head.diff[-2], head.classifier[-1]):
                nn.init.normal_(conv.weight, std=0.01)

    def _upsample(self, logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        f_a = self.neck_opt(self.encoder_opt(a))
        f_c = self.neck_opt(self.encoder_opt(c))  # a second pass of the shared encoder, as the reference ran it
        f_b = self.neck_sar(self.encoder_sar(b))
        z_s, e_s, _ = self.student_head(*self.bca(f_a, f_b))
        z_t, e_t, _ = self.teacher_head(*self.bca(f_a.detach(), f_c))
        return dict(logits=self._upsample(z_s, a), teacher_logits=self._upsample(z_t, a), student_enhanced=e_s,
                    teacher_enhanced=e_t, f_a=f_a, f_b=f_b, f_c=f_c)


# ---------------------------------------------------------------------------------------------------------------
# The reference loss
# ---------------------------------------------------------------------------------------------------------------
REF_GROUPS: dict[str, tuple[float, ...]] = {"task": (1.0, 0.3, 0.3), "cd": (1.0, 0.4), "distill": (0.7, 0.3),
                                            "att": (0.5, 0.3, 0.2)}


def ref_weighted_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with class weights 0.1 (background) / 0.9 (change)."""
    return F.cross_entropy(logits, target, weight=logits.new_tensor((0.1, 0.9)))


def ref_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """The reference's Dice: change probability against the *background* column of the one-hot target (a defect)."""
    p = logits.softmax(1)[:, 1]
    t = F.one_hot(target, 2).permute(0, 3, 1, 2).float()[:, 0]
    return 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def ref_cd_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted CE + 1.5 * Dice."""
    return ref_weighted_ce(logits, target) + 1.5 * ref_dice(logits, target)


def ref_change_mask(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Distillation pixel weights [B, 1, h, w]: 4 on changed pixels, 0.5 elsewhere (label resized by nearest)."""
    t = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")
    return torch.where(t == 1, 4.0, 0.5)


def ref_feature_distillation(f_s: torch.Tensor, f_t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.7 * masked MSE + 0.3 * (1 - cosine of the pooled features); the teacher is *not* detached."""
    m = ref_change_mask(target, f_s.shape[-2:])
    cos = F.cosine_similarity(f_s.mean((2, 3)), f_t.mean((2, 3)), dim=1).mean()
    return 0.7 * F.mse_loss(f_s * m, f_t * m) + 0.3 * (1 - cos)


def ref_output_distillation(z_s: torch.Tensor, z_t: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)), mean over pixels, teacher detached."""
    log_s = F.log_softmax(z_s / temperature, 1)
    log_t = F.log_softmax(z_t.detach() / temperature, 1)
    return temperature ** 2 * F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(1).mean()


def ref_difference_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """0.5 * (Euclidean distance + cosine distance) over channels, divided by each sample's maximum."""
    dist = torch.sqrt(((a - b) ** 2).sum(1, keepdim=True) + 1e-6)
    d = 0.5 * (dist + 1 - F.cosine_similarity(a, b, dim=1)[:, None])
    return d / d.amax((1, 2, 3), keepdim=True)


def ref_attention_terms(out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """[difference-map, channel-attention, spatial-attention] MSEs between student and (undetached) teacher."""
    d_s = ref_difference_map(out["f_a"], out["f_b"])
    d_t = ref_difference_map(out["f_a"], out["f_c"])
    e_s, e_t = out["student_enhanced"], out["teacher_enhanced"]
    channel = [torch.sigmoid((e.mean((2, 3)) + e.amax((2, 3))) / 2) for e in (e_s, e_t)]
    spatial = [torch.sigmoid(e.mean(1, keepdim=True) + e.amax(1, keepdim=True)) for e in (e_s, e_t)]
    return [F.mse_loss(d_s, d_t), F.mse_loss(*channel), F.mse_loss(*spatial)]


def warmup_alpha(epoch: float, warmup: float = 20.0) -> float:
    """Cosine mix factor: 0 at epoch 0, 1 from `warmup` on."""
    return 0.5 * (1 - math.cos(math.pi * min(max(epoch, 0.0) / warmup, 1.0)))


def clip_task(w: torch.Tensor) -> torch.Tensor:
    """Hold the task weights to cd >= 0.6, distill <= 0.3, att <= 0.2 of their sum, renormalised to that sum."""
    total = w.sum()
    f = w / total
    f = torch.stack([f[0].clamp(min=0.6), f[1].clamp(max=0.3), f[2].clamp(max=0.2)])
    return f / f.sum() * total


class RefLoss(nn.Module):
    """The reference's total loss with the section-3 weights from zero-initialised log-variances (no regulariser)."""

    def __init__(self):
        super().__init__()
        self.s = nn.ParameterDict({g: nn.Parameter(torch.zeros(len(v))) for g, v in REF_GROUPS.items()})

    def group_weights(self, epoch: float) -> dict[str, torch.Tensor]:
        """Every group's weights: the initial ones mixed into the softplus precisions by the warm-up factor."""
        a = warmup_alpha(epoch)
        out = {}
        for g, init in REF_GROUPS.items():
            w0 = self.s[g].new_tensor(init)
            p = F.softplus(-self.s[g])
            w = ((1 - a) * w0 / w0.sum() + a * p / p.sum()) * w0.sum()
            out[g] = clip_task(w) if g == "task" else w
        return out

    def forward(self, out: dict[str, torch.Tensor], target: torch.Tensor, epoch: float) -> torch.Tensor:
        a = warmup_alpha(epoch)
        w = self.group_weights(epoch)
        cd_s, cd_t = ref_cd_loss(out["logits"], target), ref_cd_loss(out["teacher_logits"], target)
        feat = ref_feature_distillation(out["student_enhanced"], out["teacher_enhanced"], target)
        kl = ref_output_distillation(out["logits"], out["teacher_logits"])
        att = ref_attention_terms(out)
        l_cd = w["cd"][0] * cd_s + a * w["cd"][1] * cd_t
        l_distill = w["distill"][0] * feat + w["distill"][1] * kl
        l_att = sum(w["att"][k] * att[k] for k in range(3))
        return w["task"][0] * l_cd + w["task"][1] * a * l_distill + w["task"][2] * l_att


# ---------------------------------------------------------------------------------------------------------------
# One configuration: setup and step
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    """One benchmark configuration, as passed to a child process."""
    design: str  # kit | reference
    variant: str  # full | lightweight
    precision: str  # fp32 | bf16 | auto (auto: the kit's policy)
    device: str = "cpu"
    batch: int = 8
    size: int = 256
    steps: int = 5
    warmup: int = 1
    threads: int | None = None
    epoch: float = 20.0  # past the loss warm-up: every term on with its full weight, in both designs


@dataclass
class Bench:
    """What a configuration needs to run steps: the step itself, its model and a description of its precision."""
    step: Callable[[Phase], float]  # one training step; returns the loss
    model: nn.Module
    precision: str  # what actually ran: fp32, bf16 or fp16
    channels_last: bool
    loss_fn: nn.Module


def random_batch(spec: Spec) -> dict[str, torch.Tensor]:
    """Seed 0, then A and C (3 bands), B (1 band) and a 0/1 label [N, H, W], on the CPU."""
    torch.manual_seed(0)
    n, s = spec.batch, spec.size
    return dict(opt_t1=torch.randn(n, OPT_BANDS, s, s), sar_t2=torch.randn(n, SAR_BANDS, s, s),
                opt_t2=torch.randn(n, OPT_BANDS, s, s), mask=torch.randint(0, 2, (n, s, s)))


def kit_bench(spec: Spec, device: torch.device) -> Bench:
    """The kit's step as `gold.epoch.train_one_epoch` runs it, under the kit's Precision policy."""
    from gold.losses import GoldLoss, ablation_config
    from gold.models import build_model
    from gold.epoch import all_finite, float_output
    from gold.train import OptimConfig, Precision, build_optimizer

    prec = Precision.for_run(device, precision=spec.precision)
    batch = prec.move(random_batch(spec))
    model = build_model(spec.variant, OPT_BANDS, SAR_BANDS, teacher=True).to(device)
    if prec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    loss_fn = GoldLoss(ablation_config("gold")).to(device).train()
    optim_cfg = OptimConfig()
    optimizer, _ = build_optimizer(model, loss_fn, optim_cfg, epochs=1)

    def step(phase: Phase = no_phase) -> float:
        with phase("forward"), prec.autocast():
            out = model(batch["opt_t1"], batch["sar_t2"], batch["opt_t2"])
        with phase("float_cast"):
            out = float_output(out)
        with phase("loss"):
            total, logs = loss_fn(out, batch["mask"], spec.epoch)
        with phase("zero_grad"):
            optimizer.zero_grad(set_to_none=True)
        with phase("finite_check"):
            if not all_finite(total):
                raise FloatingPointError("kit loss is not finite")
        with phase("backward"):
            prec.scaler.scale(total).backward()
        with phase("clip"):
            prec.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.clip_norm)
        with phase("optimizer"):
            prec.scaler.step(optimizer)
            prec.scaler.update()
        return logs["total"]

    return Bench(step, model, prec.name, prec.channels_last, loss_fn)


def reference_bench(spec: Spec, device: torch.device) -> Bench:
    """The reference design's step: fp32 and contiguous tensors, or bf16 autocast + channels_last when asked."""
    if spec.precision not in PRECISIONS:
        raise ValueError(f"the reference runs fp32 or bf16, not {spec.precision!r}")
    bf16 = spec.precision == "bf16"
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    batch = {k: v.to(device, memory_format=fmt) if v.ndim == 4 else v.to(device)
             for k, v in random_batch(spec).items()}
    model = TripleEUNet(spec.variant).to(device, memory_format=fmt).train()
    loss_fn = RefLoss().to(device)
    optimizer = torch.optim.AdamW([{"params": model.parameters()},
                                   {"params": loss_fn.parameters(), "lr": 0.1 * LR}],
                                  lr=LR, weight_decay=WEIGHT_DECAY)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext

    def step(phase: Phase = no_phase) -> float:
        with phase("zero_grad"):
            optimizer.zero_grad(set_to_none=True)
        with phase("forward"), autocast():
            out = model(batch["opt_t1"], batch["sar_t2"], batch["opt_t2"])
        with phase("float_cast"):
            out = {k: v.float() for k, v in out.items()} if bf16 else out
        with phase("loss"):
            total = loss_fn(out, batch["mask"], spec.epoch)
        with phase("backward"):
            total.backward()
        with phase("clip"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        with phase("optimizer"):
            optimizer.step()
        return float(total.detach())  # the per-iteration loss log

    return Bench(step, model, spec.precision, bf16, loss_fn)


def build_bench(spec: Spec, device: torch.device) -> Bench:
    """The step of one design."""
    return (kit_bench if spec.design == "kit" else reference_bench)(spec, device)


def max_rss_mib() -> float:
    """This process's resident-set high-water mark in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_params(module: nn.Module, skip_prefix: str | None = None) -> int:
    """Parameters of `module`, leaving out those whose name starts with `skip_prefix`."""
    return sum(p.numel() for n, p in module.named_parameters() if not (skip_prefix and n.startswith(skip_prefix)))


def run_one(spec: Spec) -> dict:
    """Set up one configuration, time its steps and return its row (meant to run alone in a fresh process)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = torch.device(spec.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    bench = build_bench(spec, device)
    rss_setup = max_rss_mib()
    loss = float("nan")
    for _ in range(spec.warmup):
        loss = bench.step(no_phase)
    sync()
    times = []
    for _ in range(spec.steps):
        t0 = time.perf_counter()
        loss = bench.step(no_phase)
        sync()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times) if times else float("nan")
    row = dict(kind="step", design=spec.design, variant=spec.variant, requested=spec.precision,
               precision=bench.precision, channels_last=bench.channels_last, device=spec.device,
               device_name=torch.cuda.get_device_name(device) if cuda else "cpu", threads=torch.get_num_threads(),
               batch=spec.batch, size=spec.size, steps=spec.steps, warmup=spec.warmup,
               params=count_params(bench.model), seconds_per_step=med, samples_per_s=spec.batch / med,
               step_seconds=times, rss_setup_mib=rss_setup, peak_rss_mib=max_rss_mib(), loss=loss)
    if cuda:
        row["cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def spawn(spec: Spec) -> dict:
    """Run one configuration in a fresh child process of this script and return its row."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", json.dumps(vars(spec))]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # the child's stderr goes to ours
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec.design}/{spec.variant}/{spec.precision} failed (exit {proc.returncode})")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------------------
# Parameter counts, ratios, table
# ---------------------------------------------------------------------------------------------------------------
def param_counts(variants: Sequence[str]) -> list[dict]:
    """Total and student-only parameters of both designs, built on the meta device."""
    from gold.models import build_model
    rows = []
    for v in variants:
        with torch.device("meta"):
            nets = {"kit": build_model(v, OPT_BANDS, SAR_BANDS, teacher=True), "reference": TripleEUNet(v)}
        for design, net in nets.items():
            rows.append(dict(kind="params", design=design, variant=v, total=count_params(net),
                             student=count_params(net, "teacher_")))
    return rows


def kit_auto_choice(device: torch.device) -> tuple[str, bool]:
    """What the kit's Precision policy picks under precision='auto' on this device: (name, channels_last)."""
    from gold.train import Precision
    p = Precision.for_run(device, precision="auto")
    return p.name, p.channels_last


def ratio_rows(rows: list[dict], variants: Sequence[str]) -> list[dict]:
    """kit/reference at equal precision and default-vs-as-run, bf16/fp32 per design, lightweight/full per design."""
    sps = {(r["design"], r["variant"], r["requested"]): r["samples_per_s"] for r in rows}
    out = []

    def add(name: str, variant: str, num: tuple, den: tuple) -> None:
        if num in sps and den in sps:
            out.append(dict(kind="ratio", ratio=name, variant=variant, value=sps[num] / sps[den]))

    for v in variants:
        for p in PRECISIONS:
            add(f"kit/reference {p}", v, ("kit", v, p), ("reference", v, p))
        add("kit default (auto) / reference as it runs (fp32)", v, ("kit", v, "auto"), ("reference", v, "fp32"))
        for d in DESIGNS:
            add(f"{d} bf16/fp32", v, (d, v, "bf16"), (d, v, "fp32"))
    if "full" in variants and "lightweight" in variants:
        for d in DESIGNS:
            for p in PRECISIONS:
                add(f"{d} {p} lightweight/full", "both", (d, "lightweight", p), (d, "full", p))
    return out


def print_report(params: list[dict], rows: list[dict], ratios: list[dict], auto: tuple[str, bool], args) -> None:
    """The parameter counts, the table of steps and the ratios, as text."""
    dev = rows[0]["device_name"] if rows else args.device
    threads = rows[0]["threads"] if rows else "?"
    print(f"# training step (zero_grad, forward with teacher, loss, backward, clip {CLIP_NORM}, AdamW), "
          f"batch {args.batch}, {args.size}x{args.size}, {dev}" + (f" ({threads} threads)" if args.device == "cpu"
                                                                    else "")
          + f", median of {args.steps} steps after {args.warmup} warm-up")
    print("# parameters (M): " + "; ".join(f"{p['design']} {p['variant']} {p['total'] / 1e6:.2f} total / "
                                           f"{p['student'] / 1e6:.2f} student" for p in params))
    cuda = args.device.startswith("cuda")
    mem = "cuda peak GiB" if cuda else "RSS setup/peak MiB"
    print(f"{'design':<10} {'variant':<12} {'precision':<10} {'format':<8} {'params M':>8} {'s/step':>8} "
          f"{'samples/s':>10} {mem:>19} {'loss':>8}")
    for r in rows:
        if r["requested"] == "auto":
            continue
        m = f"{r['cuda_peak_gib']:.2f}" if cuda else f"{r['rss_setup_mib']:.0f}/{r['peak_rss_mib']:.0f}"
        print(f"{r['design']:<10} {r['variant']:<12} {r['precision']:<10} "
              f"{'cl' if r['channels_last'] else 'contig':<8} {r['params'] / 1e6:>8.2f} {r['seconds_per_step']:>8.3f} "
              f"{r['samples_per_s']:>10.2f} {m:>19} {r['loss']:>8.3f}")
    sps = {(r["design"], r["variant"], r["requested"]): r for r in rows}
    print(f"# default policy: kit precision='auto' chose {auto[0]}{' + channels_last' if auto[1] else ''}; "
          "the reference as it runs: fp32, contiguous")
    for v in args.variants:
        k, ref = sps.get(("kit", v, "auto")), sps.get(("reference", v, "fp32"))
        if k and ref:
            same = f" (the kit {k['precision']} run)" if k.get("reused") else ""
            print(f"default    {v:<12} kit {k['samples_per_s']:.2f} samples/s{same} vs reference "
                  f"{ref['samples_per_s']:.2f} samples/s: x{k['samples_per_s'] / ref['samples_per_s']:.2f}")
    print("# ratios of samples/s (> 1: the first is faster)")
    for r in ratios:
        print(f"{r['ratio']:<52} {r['variant']:<12} {r['value']:>6.2f}")


# ---------------------------------------------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------------------------------------------
KIT_LOSS_FUNCTIONS = {"weighted_ce": "loss.ce", "dice_loss": "loss.dice", "change_mask": "loss.mask",
                      "feature_distillation": "loss.feat", "output_distillation": "loss.out",
                      "difference_map": "loss.diff_maps", "attention_transfer": "loss.attention",
                      "region_loss": "loss.region"}
REF_LOSS_FUNCTIONS = {"ref_weighted_ce": "loss.ce", "ref_dice": "loss.dice", "ref_change_mask": "loss.mask",
                      "ref_feature_distillation": "loss.feat", "ref_output_distillation": "loss.out",
                      "ref_difference_map": "loss.diff_maps", "ref_attention_terms": "loss.attention"}
STEP_PHASES = ("zero_grad", "forward", "float_cast", "loss", "finite_check", "backward", "clip", "optimizer")


def record(name: str) -> ContextManager:
    """A profiler range named `name`."""
    return torch.profiler.record_function(name)


def labelled(fn: Callable, name: str) -> Callable:
    """`fn` wrapped in a profiler range."""
    def wrapper(*args, **kwargs):
        with record(name):
            return fn(*args, **kwargs)
    return wrapper


@contextmanager
def labelled_functions(namespace, names: dict[str, str]) -> Iterator[None]:
    """Replace the named functions of a module by labelled wrappers for the duration of the block."""
    saved = {attr: getattr(namespace, attr) for attr in names if hasattr(namespace, attr)}
    try:
        for attr, fn in saved.items():
            setattr(namespace, attr, labelled(fn, names[attr]))
        yield
    finally:
        for attr, fn in saved.items():
            setattr(namespace, attr, fn)


@contextmanager
def labelled_modules(modules: dict[str, nn.Module]) -> Iterator[None]:
    """A profiler range around every forward call of each module (a module may run several times a step)."""
    handles, open_ranges = [], {name: [] for name in modules}
    for name, module in modules.items():
        def pre(_m, _inp, name=name):
            rf = record(name)
            rf.__enter__()
            open_ranges[name].append(rf)

        def post(_m, _inp, _out, name=name):
            open_ranges[name].pop().__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def labelled_methods(obj: object, names: dict[str, str]) -> Iterator[None]:
    """Label some methods of one object (the network's `_upsample`, ...) through instance attributes."""
    present = [attr for attr in names if hasattr(obj, attr)]
    try:
        for attr in present:
            setattr(obj, attr, labelled(getattr(obj, attr), names[attr]))
        yield
    finally:
        for attr in present:
            delattr(obj, attr)


def profile(args) -> None:
    """torch.profiler over 2 steps of one design and variant: top ops by self CPU time and a breakdown by part."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = args.precision
    if args.profile_design == "reference" and precision == "auto":
        precision = "fp32"  # the reference as it runs
    spec = Spec(args.profile_design, args.profile, precision, args.device, args.batch, args.size, 2, args.warmup)
    bench = build_bench(spec, device)
    for _ in range(spec.warmup):
        bench.step(no_phase)
    modules = {f"fwd.{n}": m for n, m in bench.model.named_children()}
    if args.profile_design == "kit":
        import gold.losses
        names, namespace = KIT_LOSS_FUNCTIONS, gold.losses
        loss_modules = {"loss.weights": bench.loss_fn.weights}
        methods = [(bench.loss_fn.weights, {"regulariser": "loss.regulariser"})]
        # the kit's network calls its encoders through `stem_forward` and `stages`, which module hooks do not see
        methods += [(getattr(bench.model, n), {"stem_forward": f"fwd.{n}", "stages": f"fwd.{n}"})
                    for n in ("encoder_opt", "encoder_sar")]
    else:
        names, namespace = REF_LOSS_FUNCTIONS, sys.modules[__name__]
        loss_modules = {}
        methods = [(bench.loss_fn, {"group_weights": "loss.weights"})]
    methods.append((bench.model, {"_upsample": "upsampling"}))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with ExitStack() as stack:
        stack.enter_context(labelled_modules({**modules, **loss_modules}))
        for obj, attrs in methods:
            stack.enter_context(labelled_methods(obj, attrs))
        stack.enter_context(labelled_functions(namespace, names))
        prof = stack.enter_context(torch.profiler.profile(activities=activities))
        for _ in range(spec.steps):
            with record("step"):
                bench.step(record)
            if device.type == "cuda":
                torch.cuda.synchronize()
    averages = prof.key_averages()
    fmt = " + channels_last" if bench.channels_last else ", contiguous"
    print(f"# profile: {spec.design} {spec.variant}, {bench.precision}{fmt}, batch {spec.batch}, "
          f"{spec.size}x{spec.size}, {device.type} ({torch.get_num_threads()} threads), "
          f"{spec.steps} steps after {spec.warmup} warm-up")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    events = {e.key: e for e in averages}
    labels = (["step", *STEP_PHASES] + list(modules) + ["upsampling"]
              + sorted({*names.values(), "loss.weights", "loss.regulariser"}))
    step_ms = events["step"].cpu_time_total / 1e3 / spec.steps if "step" in events else float("nan")
    fwd_ms = events["forward"].cpu_time_total / 1e3 / spec.steps if "forward" in events else float("nan")
    print("# CPU time per step by part (host time; forward parts nested in 'forward', loss terms in 'loss')")
    print(f"{'part':<24} {'ms/step':>10} {'calls/step':>10} {'% step':>7} {'% fwd':>7}")
    for label in labels:
        e = events.get(label)
        if e is None:
            continue
        ms = e.cpu_time_total / 1e3 / spec.steps
        in_fwd = label.startswith("fwd.") or label == "upsampling"
        print(f"{label:<24} {ms:>10.2f} {e.count / spec.steps:>10.1f} {100 * ms / step_ms:>7.1f} "
              f"{(f'{100 * ms / fwd_ms:.1f}' if in_fwd else ''):>7}")


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["full", "lightweight"], choices=list(REF_VARIANTS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="one JSON object per line (params, steps, ratios)")
    p.add_argument("--profile", choices=list(REF_VARIANTS), default=None,
                   help="profile 2 steps of this variant instead of benchmarking")
    p.add_argument("--profile-design", choices=DESIGNS, default="kit")
    p.add_argument("--precision", choices=["auto", *PRECISIONS], default="auto",
                   help="precision of --profile (auto: the kit's policy; the reference then runs fp32)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one JSON Spec, print its row
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict] | None:
    """Benchmark every configuration in child processes (or profile one, or be one child)."""
    args = parse_args(argv)
    if args.one:
        print(json.dumps(run_one(Spec(**json.loads(args.one)))))
        return None
    if args.profile:
        profile(args)
        return None
    common = dict(device=args.device, batch=args.batch, size=args.size, steps=args.steps, warmup=args.warmup,
                  threads=args.threads)
    auto = kit_auto_choice(torch.device(args.device))
    rows = []
    for v in args.variants:
        for design in DESIGNS:
            for prec in PRECISIONS:
                rows.append(spawn(Spec(design, v, prec, **common)))
        same = [r for r in rows if r["design"] == "kit" and r["variant"] == v and r["precision"] == auto[0]
                and r["channels_last"] == auto[1]]
        reuse = {**same[0], "requested": "auto", "reused": True} if same else None
        rows.append(reuse or spawn(Spec("kit", v, "auto", **common)))
    params = param_counts(args.variants)
    ratios = ratio_rows(rows, args.variants)
    if args.json:
        for r in [*params, *rows, *ratios]:
            print(json.dumps(r))
    else:
        print_report(params, rows, ratios, auto, args)
    return rows


if __name__ == "__main__":
    main()
