"""Peak memory of one PPO update: r1rl's shared base vs. the naive set-up, on a MoE preset.

- ``shared`` (r1rl): one frozen base; policy = LoRA adapter, critic = second LoRA adapter plus a
  value head, reference = the base with adapters disabled; AdamW state for the adapters only.
- ``naive``: three full models — a trainable policy, a frozen reference copy and a trainable
  critic (a full model plus value head) — each fine-tuned in full with AdamW.

Each set-up runs in its own subprocess: build, then reference log-probs, one policy and one
critic forward/backward and optimizer step on the same batch. Reported: on the CPU, peak RSS above
the process's RSS after importing torch and transformers; on a GPU (``--device cuda``), the peak
memory torch allocated there. ``--dtype bfloat16`` stores the base (every model of the naive set-up)
in bf16; r1rl's adapters stay fp32.

    python bench/memory.py [--preset base] [--batch 8] [--seq 128] [--device cuda] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(mode: str, preset: str, batch: int, seq: int, device: str = "cpu", dtype: str = "float32") -> dict:
    import torch
    import transformers  # noqa: F401  (counted in the baseline)

    from r1rl.config import LoraConfigModel
    from r1rl.models.factory import build_config, build_model, count_parameters
    from r1rl.train.ppo.roles import ActorCritic, position_ids_from

    torch.set_num_threads(2)
    torch.set_default_device(device)
    baseline = _rss_mb()
    cfg = build_config(preset, 512, pad_token_id=1, eos_token_id=0)
    ids = torch.randint(2, 512, (batch, seq))
    am = torch.ones_like(ids)
    T = seq // 2
    adv = torch.randn(batch, T)
    base = build_model(cfg, seed=0).to(device=device, dtype=getattr(torch, dtype))
    if mode == "shared":
        ac = ActorCritic(base, LoraConfigModel()).to(device)
        params = count_parameters(ac)
        opt_p = torch.optim.AdamW(ac.adapter_parameters("policy"), lr=1e-4)
        opt_v = torch.optim.AdamW(ac.adapter_parameters("critic"), lr=1e-4)
        with torch.no_grad():
            ac.policy_logprobs(ids, am, T, reference=True)
        lp, _, _ = ac.policy_logprobs(ids, am, T)
        (-(lp * adv).mean()).backward()
        opt_p.step()
        ac.values(ids, am, T).pow(2).mean().backward()
        opt_v.step()
    else:
        policy = base
        reference = copy.deepcopy(policy).requires_grad_(False)
        critic = copy.deepcopy(policy).model  # the decoder stack; the LM head is not needed
        head = torch.nn.Linear(cfg.hidden_size, 1, dtype=base.dtype)
        params = sum(count_parameters(m) for m in (policy, reference, critic, head))
        opt_p = torch.optim.AdamW(policy.parameters(), lr=1e-4)
        opt_v = torch.optim.AdamW([*critic.parameters(), *head.parameters()], lr=1e-4)
        pos = position_ids_from(am)
        with torch.no_grad():
            reference(input_ids=ids, attention_mask=am, position_ids=pos)
        logits = policy(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, -T - 1 : -1]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, -T:, None]).squeeze(-1)
        (-(lp * adv).mean()).backward()
        opt_p.step()
        hidden = critic(input_ids=ids, attention_mask=am, position_ids=pos).last_hidden_state
        head(hidden[:, -T - 1 : -1]).pow(2).mean().backward()
        opt_v.step()
    if device == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated() / 2**20, "parameters": params}
    return {"peak_mb": _rss_mb() - baseline, "parameters": params}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="base")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the base's dtype")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print("RESULT " + json.dumps(one(a.one, a.preset, a.batch, a.seq, a.device, a.dtype)))
        return
    res = {}
    for mode in ("shared", "naive"):
        cmd = [sys.executable, __file__, "--one", mode, "--preset", a.preset]
        cmd += ["--batch", str(a.batch), "--seq", str(a.seq), "--device", a.device, "--dtype", a.dtype]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        res[mode] = json.loads(line[7:])
    head = f"preset {a.preset}, batch {a.batch} x {a.seq} tokens, one PPO update (policy + critic)"
    print(f"{head}, base in {a.dtype} on {a.device}")
    peak = "peak GPU memory allocated (MB)" if a.device == "cuda" else "peak RSS above baseline (MB)"
    print(f"| set-up | parameters held | {peak} |")
    print("|---|---|---|")
    for mode, r in res.items():
        print(f"| {mode} | {r['parameters'] / 1e6:.1f}M | {r['peak_mb']:.0f} |")
    ratio = res["naive"]["peak_mb"] / res["shared"]["peak_mb"]
    print(f"naive / shared peak memory: {ratio:.2f}x (target >= 2.5x)")


if __name__ == "__main__":
    main()
