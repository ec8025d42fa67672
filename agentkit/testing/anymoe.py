"""AnyMoE test and benchmark material: three text domains and locally made LoRA adapters.

Scope: `DOMAIN_PROMPTS` (30 prompts each of Python code, French and arithmetic: expert 1, 2 and 0
in `split_rows`), `split_rows` (20 training + 10 held-out per domain, interleaved), and
`write_random_lora` (a PEFT-format adapter directory for a model of the given sizes, with seeded
random low-rank factors: a stand-in for a fine-tuned LoRA, enough to exercise loading, routing and
the serving cost; what the adapter says does not matter for routing, which the gates learn from
the base model's hidden states).

Non-goals: real fine-tuned adapters (none is available offline), quality of their outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["DOMAIN_PROMPTS", "split_rows", "write_random_lora"]

DOMAIN_PROMPTS: dict[str, list[str]] = {
    "arithmetic": [
        "What is 17 + 25?", "Compute 144 / 12.", "What is 9 times 8?", "Calculate 1000 - 357.",
        "What is 23 * 4?", "Add 56 and 78.", "What is the square of 15?", "Divide 81 by 9.",
        "What is 12% of 250?", "Subtract 49 from 120.", "What is 7 + 8 + 9?", "Multiply 13 by 11.",
        "What is 2 to the power of 10?", "Compute 3.5 + 4.25.", "What is half of 86?", "What is 999 + 1?",
        "Calculate 45 * 3 - 10.", "What is the sum of 1, 2, 3 and 4?", "What is 64 divided by 8?",
        "Compute (12 + 8) * 3.", "What is 5 squared plus 3?", "What is 300 - 175?", "Multiply 6 by 7.",
        "What is 18 / 3 + 2?", "Add 250 and 250.", "What is 11 * 12?", "What is 100 minus 37?",
        "Compute 8 * 8 * 2.", "What is 72 / 6?", "What is 19 + 23 - 5?",
    ],
    "python": [
        "Write a Python function that reverses a string.", "def fibonacci(n):\n    # complete this function",
        "How do I read a file line by line in Python?", "Fix this code: for i in range(10) print(i)",
        "Write a list comprehension that squares the numbers in a list.",
        "import json\ndata = json.loads(text)\n# how do I get the keys?",
        "What does the Python keyword yield do?", "Write a Python class for a stack with push and pop.",
        "How do I sort a dict by value in Python?", "def is_prime(n):\n    # return True if n is prime",
        "Explain Python decorators with an example.", "How do I catch an exception in Python?",
        "Write a Python script that counts words in a file.", "What is the difference between a list and a tuple in Python?",
        "import os\n# list all files in a directory", "Write a Python generator that yields even numbers.",
        "How do I use f-strings in Python?", "class Point:\n    def __init__(self, x, y):",
        "Write a Python function to merge two sorted lists.", "How do I install a package with pip?",
        "def flatten(nested):\n    # flatten a nested list", "What does __name__ == '__main__' mean in Python?",
        "Write a Python lambda that adds two numbers.", "How do I open a JSON file in Python?",
        "Write a Python function that checks if a string is a palindrome.",
        "for key, value in d.items():\n    print(key)", "How do I create a virtual environment in Python?",
        "Write a recursive Python function for factorial.", "What is a Python dataclass?",
        "try:\n    x = int(s)\nexcept ValueError:",
    ],
    "french": [
        "Bonjour, comment allez-vous aujourd'hui ?", "Quelle est la capitale de la France ?",
        "Peux-tu me raconter une histoire courte ?", "J'aime beaucoup la cuisine française.",
        "Où se trouve la gare la plus proche ?", "Quel temps fait-il à Paris ?",
        "Je voudrais réserver une table pour deux personnes.", "Pourquoi le ciel est-il bleu ?",
        "Décris-moi ton livre préféré.", "Comment dit-on merci en anglais ?",
        "Nous allons au cinéma ce soir.", "Quelle heure est-il, s'il vous plaît ?",
        "Explique-moi la photosynthèse simplement.", "Mon frère habite à Lyon depuis trois ans.",
        "Quels sont les fromages les plus connus ?", "Écris un petit poème sur la mer.",
        "Je cherche un bon restaurant près d'ici.", "Qui a écrit Les Misérables ?",
        "Comment faire une crêpe ?", "Les enfants jouent dans le jardin.",
        "Pourriez-vous parler plus lentement ?", "Quelle est ta saison préférée et pourquoi ?",
        "Le train part à huit heures du matin.", "Donne-moi des conseils pour apprendre le piano.",
        "Il fait très froid cet hiver.", "Où as-tu passé tes vacances ?",
        "Raconte-moi l'histoire de la tour Eiffel.", "Je suis fatigué après cette longue journée.",
        "Quels fruits pousse-t-on en Provence ?", "Merci beaucoup pour votre aide !",
    ],
}

EXPERT_OF = {"arithmetic": 0, "python": 1, "french": 2}
"""The expert each domain is labelled with (0 = the base model's MLP)."""


def split_rows(n_train: int = 20) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) as `{"prompt", "expert"}` dicts: the first `n_train` prompts of
    each domain train, the rest are held out."""
    train, held = [], []
    for i in range(max(len(p) for p in DOMAIN_PROMPTS.values())):
        for domain, prompts in DOMAIN_PROMPTS.items():
            if i < len(prompts):
                (train if i < n_train else held).append({"prompt": prompts[i], "expert": EXPERT_OF[domain]})
    return train, held


def write_random_lora(path: str | os.PathLike[str], *, layers: list[int], hidden: int, intermediate: int,
                      rank: int = 8, alpha: float = 16.0, seed: int = 0, std: float = 0.02,
                      target_modules: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")) -> str:
    """Write a PEFT LoRA adapter (adapter_model.safetensors + adapter_config.json) to `path`."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    shapes = {"gate_proj": (hidden, intermediate), "up_proj": (hidden, intermediate),
              "down_proj": (intermediate, hidden)}
    tensors = {}
    for i in layers:
        for m in target_modules:
            fan_in, fan_out = shapes[m]
            key = f"base_model.model.model.layers.{i}.mlp.{m}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, fan_in, generator=g) * std
            tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, rank, generator=g) * std
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "target_modules": list(target_modules)}))
    return str(path)
