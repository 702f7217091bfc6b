"""Tags as added tokens or as text, for a real BPE model: the measurements behind the choice (SmolLM2 section).

For two synth folders of the same problems and seeds, one tokenized with the base tokenizer (tags as text)
and one with the prepared tokenizer (``train prepare``: tags as added tokens), it reports the tokens per tag,
the row lengths and policy tokens per row (SFT cost is about linear in them), and the base model's loss on
the policy tokens of the same rows before any training (forward passes only): how far each path starts from
the format. Prints one JSON object.

    python scripts/smollm2_tag_paths.py --text runs/smollm2/base runs/smollm2/synth_probe_text \\
        --tokens runs/smollm2/prepared runs/smollm2/synth_probe_tok --rows 24
"""

from __future__ import annotations

import argparse
import json
import time


def measure(model_dir: str, synth_dir: str, rows: int) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asyncthink.protocol import protocol_tags

    tok = AutoTokenizer.from_pretrained(model_dir)
    data = datasets.load_from_disk(f"{synth_dir}/dataset")
    lengths = [len(r) for r in data["input_ids"]]
    policy = [sum(m) for m in data["completion_mask"]]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    started, total, count, tag_total, tag_count = time.perf_counter(), 0.0, 0, 0.0, 0
    tag_ids = {i for t in protocol_tags(8) for i in tok.encode(t, add_special_tokens=False)
               if len(tok.encode(t, add_special_tokens=False)) == 1}
    with torch.no_grad():
        for row in data.select(range(min(rows, len(data)))):
            ids = torch.tensor([row["input_ids"]])
            mask = torch.tensor(row["completion_mask"][1:], dtype=torch.bool)
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
            nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
            total += nll[mask].sum().item()
            count += int(mask.sum())
            is_tag = torch.tensor([t in tag_ids for t in row["input_ids"][1:]]) & mask
            tag_total += nll[is_tag].sum().item()
            tag_count += int(is_tag.sum())
    return {
        "tokens_per_tag": {t: len(tok.encode(t, add_special_tokens=False)) for t in ["<FORK-1>", "<JOIN-1>",
                                                                                     "</JOIN-1>", "<ANSWER>"]},
        "rows": len(data), "mean_row_tokens": sum(lengths) / len(lengths), "max_row_tokens": max(lengths),
        "mean_policy_tokens": sum(policy) / len(policy),
        "initial_policy_loss": total / max(1, count), "initial_loss_on_tag_tokens": tag_total / max(1, tag_count)
        if tag_count else None, "loss_rows": min(rows, len(data)), "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", nargs=2, metavar=("MODEL", "SYNTH"), required=True)
    p.add_argument("--tokens", nargs=2, metavar=("MODEL", "SYNTH"), required=True)
    p.add_argument("--rows", type=int, default=24)
    args = p.parse_args()
    print(json.dumps({"text": measure(*args.text, args.rows), "tokens": measure(*args.tokens, args.rows)}, indent=2))


if __name__ == "__main__":
    main()
