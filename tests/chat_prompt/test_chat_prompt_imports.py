"""The package's public names, the PRESETS table, and that importing it stays free of torch/transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import chatstream.chat_prompt as chat_prompt
from chatstream.chat_prompt import PRESETS, AbstractChatPrompt
from chatstream.chat_prompt import presets as presets_pkg


def test_import_does_not_load_torch_or_transformers() -> None:
    code = (
        "import sys, json, chatstream.chat_prompt, chatstream.chat_prompt.presets; "
        "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_enums_importable_from_their_modules() -> None:
    from chatstream.chat_prompt.prompt_ttl import PromptTTL
    from chatstream.chat_prompt.role_type import RoleType

    assert chat_prompt.PromptTTL is PromptTTL and chat_prompt.RoleType is RoleType
    assert {t.name for t in RoleType} == {"REQUESTER", "RESPONDER", "UNKNOWN"}
    assert {t.name for t in PromptTTL} == {"MULTI_TURN", "SINGLE_TURN"}


def test_presets_table() -> None:
    assert set(PRESETS) == {
        "chat_template", "dolly", "karasu", "line", "llama2", "llama3", "matsuo", "mpt", "nekomata",
        "open_calm", "open_llama", "rakuten", "redpajama", "rinna", "stabilityai_jp", "stockmark",
    }  # fmt: skip
    for name, cls in PRESETS.items():
        assert name == name.lower()
        assert issubclass(cls, AbstractChatPrompt)
        # Every preset is exported by name from both packages.
        assert getattr(chat_prompt, cls.__name__) is cls
        assert getattr(presets_pkg, cls.__name__) is cls
    assert chat_prompt.ChatPromptRinnaJapaneseGPTNeoxInst is chat_prompt.ChatPromptRinnaJpGptNeoxInstSft


def test_all_lists_existing_names() -> None:
    for name in chat_prompt.__all__:
        assert hasattr(chat_prompt, name), name
