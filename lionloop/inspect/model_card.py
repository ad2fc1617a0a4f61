"""The model card (README.md) of an exported student: what a run made, read from its pool.

`card_facts` picks the figures (the curve, data per origin, teacher and referee, the metric, how the
data was made); `card_markdown` writes them as a Hugging Face model card. `lionloop export-model`
puts the card beside the merged weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lionloop.errors import RunError
from lionloop.inspect.status import run_figures
from lionloop.rundir import RunDir


def best_round(figures: dict[str, Any]) -> int:
    """The finished round with the best held-out accuracy (the latest of equals)."""
    scored = [(r["eval_accuracy"], r["round"]) for r in figures["rounds"]
              if r["round"] > 0 and r["eval_accuracy"] is not None]
    if not scored:
        raise RunError(f"{figures['run_dir']}: no round has been evaluated yet: nothing to export")
    return max(scored)[1]


def _who(section: Any) -> str:
    if section is None:
        return "the teacher"
    name = section.backend if not section.model else f"{section.backend} · {section.model}"
    return name + (" (the task pack's programmatic expert)" if section.backend == "oracle" else "")


def card_facts(run_dir: Path, round: int | None = None) -> dict[str, Any]:
    """Everything the card says, read-only from the run (safe while it runs)."""
    rd = RunDir(run_dir)
    cfg, run_id = rd.read()
    fig = run_figures(run_dir)
    chosen = best_round(fig) if round is None else round
    rounds = {r["round"]: r for r in fig["rounds"]}
    if chosen not in rounds or chosen < 1 or rounds[chosen]["eval_accuracy"] is None:
        done = sorted(r for r, v in rounds.items() if r > 0 and v["eval_accuracy"] is not None)
        raise RunError(f"{run_dir}: round {chosen} has no evaluated student (evaluated rounds: {done or 'none'})")
    gens = {name: g.share for name, g in cfg.generate.generators.items() if g.enabled}
    return {
        "run_id": run_id,
        "name": cfg.name,
        "round": chosen,
        "chosen_by": "given" if round is not None else "best held-out accuracy",
        "base": str(cfg.student.base) if cfg.student.base else "tiny Llama built from the config (trained from scratch)",
        "lora": cfg.train.lora.model_dump() if cfg.train.lora.enabled else None,
        "train": {k: getattr(cfg.train, k)
                  for k in ("policy", "steps_per_round", "epochs_per_round", "batch_size", "learning_rate")},
        "curve": [(r["round"], r["eval_accuracy"], r.get("train", {}).get("train_loss"))
                  for r in fig["rounds"] if r["round"] > 0],
        "per_skill": rounds[chosen]["eval_per_skill"],
        "by_origin": fig["by_origin"],
        "examples_by_kind": fig["examples_by_kind"],
        "by_split": fig["by_split"],
        "teacher": _who(cfg.teacher),
        "referee": _who(cfg.referee) if cfg.referee else "the teacher",
        "generator_teacher": _who(cfg.generator_teacher) if cfg.generator_teacher else "the teacher",
        "pack": cfg.task.pack,
        "tau": cfg.judge.tau,
        "generators": gens,
        "dedup": cfg.dedup.threshold,
        "case_selection": cfg.generate.case_selection,
        "thinking": cfg.student.thinking,
    }


def card_markdown(f: dict[str, Any], prompt_format: str, eos: str | None) -> str:
    """The card as Markdown with a YAML header (Hugging Face model card format)."""
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             "tags: [lionloop, distillation]", "---", "",
             f"# {f['name']} — round {f['round']} student", "",
             "Distilled by lionloop (Lion-style adversarial distillation), "
             f"run `{f['run_id']}`, round {f['round']} ({f['chosen_by']}). Weights are standalone: "
             + ("the LoRA adapter is merged into the base." if f["lora"] else "no adapter, no base needed."), "",
             "## Use", "", "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer",
             "tok = AutoTokenizer.from_pretrained(PATH)",
             "model = AutoModelForCausalLM.from_pretrained(PATH)",
             'text = tok.apply_chat_template([{"role": "user", "content": "INSTRUCTION"}], add_generation_prompt=True, tokenize=False)',
             "ids = tok(text, return_tensors=\"pt\", add_special_tokens=False)",
             "out = model.generate(**ids)  # greedy; generation_config.json holds the length it was evaluated with",
             "print(tok.decode(out[0, ids['input_ids'].shape[1]:], skip_special_tokens=True))", "```", ""]
    if prompt_format == "chat":
        lines += ["The chat template is the one it was trained with: every training row's prompt went through it, "
                  f"and each answer ends with `{eos}`.", ""]
    else:
        lines += ["It was trained on plain prompts: the instruction, its input on the next line if any, then a "
                  "newline, and the answer; the chat template renders exactly that. lionloop scores the first line "
                  "of what it generates.", ""]
    if f.get("thinking") == "learn":
        lines += ["It thinks before it answers, as the teacher did: `<think>`, its thinking, `</think>`, then the "
                  "answer (trained on the teacher's thinking). lionloop scores what follows the block; give "
                  "`generate` room for both.", ""]
    lines += ["## Held-out accuracy by round", "",
              f"Metric: share of the `{f['pack']}` task pack's held-out eval set answered right by its verifier "
              "(never trained on, never a generation seed).", "",
              "| round | eval accuracy | training loss |", "|---:|---:|---:|"]
    for rnd, acc, loss in f["curve"]:
        mark = " ←" if rnd == f["round"] else ""
        lines.append(f"| {rnd}{mark} | {'-' if acc is None else f'{acc:.1%}'} | {'-' if loss is None else f'{loss:.3f}'} |")
    if f["per_skill"]:
        lines += ["", f"Round {f['round']} per task: " + ", ".join(f"{k} {v:.0%}" for k, v in f["per_skill"].items()) + "."]
    lines += ["", "## Data", "",
              "Instructions in the train and cache pools by origin (eval excluded): "
              + ", ".join(f"{k} {v}" for k, v in f["by_origin"].items()) + ".",
              "Training rows by kind: " + ", ".join(f"{k} {v}" for k, v in f["examples_by_kind"].items()) + ".", "",
              "How it was made: each round the student trained on the teacher's answers for the train pool, "
              "answered the pool and the eval set, the referee scored teacher against student (1-10, both orders; "
              f"hard when the gap is at least {f['tau']:g})"
              + (" and the generators rewrote the hard cases into new instructions"
                 if f["case_selection"] == "referee" else " and the generators expanded instructions drawn uniformly")
              + f" ({', '.join(f'{k} {v:.0%}' for k, v in f['generators'].items())}); candidates within cosine "
              f"{f['dedup']:g} of the pool or the eval set were dropped, the teacher answered the rest.", "",
              f"- teacher: {f['teacher']}", f"- referee: {f['referee']}", f"- rewrites: {f['generator_teacher']}",
              f"- base model: {f['base']}",
              f"- training: {_steps(f['train'])} per round, batch {f['train']['batch_size']}, "
              f"learning rate {f['train']['learning_rate']:g}, policy {f['train']['policy']}"
              + (f"; LoRA rank {f['lora']['rank']}, alpha {f['lora']['alpha']:g}, modules {f['lora']['target_modules']}"
                 if f["lora"] else "; all weights"), ""]
    return "\n".join(lines)


def _steps(train: dict[str, Any]) -> str:
    epochs = train.get("epochs_per_round")  # absent in a card's figures from before the option
    return f"{epochs:g} epochs over the train pool" if epochs else f"{train['steps_per_round']} steps"
