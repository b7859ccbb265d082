"""One prepared GPU measurement (for a session lent a GPU): bge-m3-sized encoding and cached-MNRL training.

    python bench/gpu_check.py --out $OUT/gpu_check.json              # on the GPU machine: XLM-R large, random weights
    python bench/gpu_check.py --tiny --device cpu                    # here: the same code on a toy config

No weights travel: the encoder is XLM-RoBERTa built from BAAI/bge-m3's config numbers (24 layers, 1024 hidden,
16 heads, 8194 positions, 250,002 vocabulary) with random weights, which costs the same compute as the real
model. Texts are random token ids of fixed lengths, so no tokenizer is needed either. Measures
1. encode throughput (tokens/s and passages/s) at lengths 128/512/2048 in fp16 and bf16 (inference);
2. cached MNRL training throughput at mini-batch 64 for a batch of 64 and of 32768 (the card's), length 256,
   bf16 autocast, with peak GPU memory. The GradCache step is written out here (the procedure of
   sentence-transformers' CachedMultipleNegativesRankingLoss) because that loss needs bge-m3's tokenizer,
   which does not travel to the GPU machine; token ids are random instead.
Every step is bounded by --seconds; what did not finish is reported as such.
"""

from __future__ import annotations

import json
import time

import common

BGE_M3 = {"vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
          "intermediate_size": 4096, "max_position_embeddings": 8194}
TINY = {"vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 514}


def build(config: dict, device: str):
    """XLMRobertaModel (bge-m3's encoder class) with random weights; CLS pooling + normalise happen below."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    return XLMRobertaModel(XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **config)).to(device)


def encode_throughput(encoder, vocab: int, device: str, lengths, batch: int, dtype, seconds: float) -> list[dict]:
    import torch

    rows = []
    for length in lengths:
        ids = torch.randint(3, vocab, (batch, length), device=device)
        mask = torch.ones_like(ids)
        done, start = 0, time.perf_counter()
        with torch.inference_mode(), torch.autocast(device_type=device.split(":")[0], dtype=dtype):
            while time.perf_counter() - start < seconds:
                out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
                torch.nn.functional.normalize(out.float(), dim=-1)
                done += batch
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        rows.append({"length": length, "dtype": str(dtype).replace("torch.", ""), "batch": batch,
                     "passages_per_s": round(done / elapsed, 1), "tokens_per_s": round(done * length / elapsed)})
    return rows


def cached_mnrl_throughput(encoder, vocab: int, device: str, batch: int, mini: int, length: int,
                           seconds: float) -> dict:
    """One GradCache step: embed every mini-batch without grad, loss on all embeddings, then re-run each
    mini-batch with grad and backpropagate its slice of the embedding gradient (Gao et al. 2021)."""
    import torch

    dev = device.split(":")[0]
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-5)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    q = torch.randint(3, vocab, (batch, 32), device=device)
    p = torch.randint(3, vocab, (batch, length), device=device)

    def embed(ids, grad):
        with torch.set_grad_enabled(grad), torch.autocast(device_type=dev, dtype=torch.bfloat16):
            out = encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 0]
        return torch.nn.functional.normalize(out.float(), dim=-1)

    reps = []
    for ids in (q, p):
        parts = [embed(ids[i: i + mini], False) for i in range(0, batch, mini)]
        if time.perf_counter() - start > seconds:
            return {"batch": batch, "mini_batch": mini, "length": length, "finished": False}
        reps.append(torch.cat(parts).requires_grad_())
    scores = reps[0] @ reps[1].T * 20.0
    loss = torch.nn.functional.cross_entropy(scores, torch.arange(batch, device=device))
    loss.backward()
    for ids, rep in zip((q, p), reps):
        for i in range(0, batch, mini):
            out = embed(ids[i: i + mini], True)
            out.backward(rep.grad[i: i + mini])
            if time.perf_counter() - start > seconds:
                return {"batch": batch, "mini_batch": mini, "length": length, "finished": False}
    optimizer.step()
    optimizer.zero_grad()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    row = {"batch": batch, "mini_batch": mini, "length": length, "finished": True, "step_s": round(elapsed, 2),
           "pairs_per_s": round(batch / elapsed, 1)}
    if device.startswith("cuda"):
        row["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="toy config, to check the script on a CPU")
    for flag, default, bound in (("--seconds", 20.0, "per measurement"),
                                 ("--train-seconds", 240.0, "of the 32768 step")):
        parser.add_argument(flag, type=float, default=default, help=f"time bound {bound}")
    args = parser.parse_args()

    import torch

    config = TINY if args.tiny else BGE_M3
    encoder = build(config, args.device)
    info = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "config": "tiny" if args.tiny else "bge-m3 (XLM-R large, random weights)"}
    lengths = (32, 64) if args.tiny else (128, 512, 2048)
    enc = []
    for dtype in (torch.float16, torch.bfloat16) if args.device.startswith("cuda") else (torch.bfloat16,):
        enc += encode_throughput(encoder.eval(), config["vocab_size"], args.device, lengths, 64 if not args.tiny else 8,
                                 dtype, args.seconds if not args.tiny else 1.0)
    encoder.train()
    train_rows = [cached_mnrl_throughput(encoder, config["vocab_size"], args.device, 64, 64 if not args.tiny else 8,
                                         256 if not args.tiny else 32, args.seconds),
                  cached_mnrl_throughput(encoder, config["vocab_size"], args.device, 32768 if not args.tiny else 256,
                                         64 if not args.tiny else 8, 256 if not args.tiny else 32, args.train_seconds)]
    result = {"info": info, "encode": enc, "cached_mnrl": train_rows}
    print(json.dumps(result, indent=1))
    common.save(args.out, result)


if __name__ == "__main__":
    main()
