"""What code written for the original ChatStream imports from the package, and that mock mode
needs no torch."""

from __future__ import annotations

import subprocess
import sys

ORIGINAL_NAMES = [
    "ChatStream", "AbstractChatPrompt", "AbstractRequestHandler", "SimpleSessionRequestHandler", "LoadTime",
    "TokenSamplerHft", "TokenSamplerIsok", "ChatPromptTogetherRedPajamaINCITEChat", "ChatPromptRinnaJpGptNeoxInstSft",
    "ChatPromptRinnaJapaneseGPTNeoxInst", "ChatPromptCyberAgentOpenCalm", "ChatPromptMetaLlamaLlama2Chat",
    "ChatPromptOpenlmrOpenLlama", "ChatPromptStabilityAiJpGptNeoxInstSft", "ChatPromptStockmarkGptNeoxJp",
    "ChatPromptLineCorpJpLargeLmInstSft", "ChatPromptMatsuoLabJpGptNeoxInstSft", "ChatPromptMosaicmlMptChat",
    "ChatPromptDatabricksDolly", "ChatPromptMetaLlamaLlama3Instruct", "ChatPromptRakutenMistral",
    "ChatPromptLightblueKarasuChatPlus", "ChatPromptRinnaNekomata", "ChatPromptChatTemplate",
]


def test_the_original_names_import_from_the_package():
    import chatstream

    missing = [name for name in ORIGINAL_NAMES if not hasattr(chatstream, name)]
    assert not missing
    from chatstream.chat_prompt.prompt_ttl import PromptTTL  # noqa: F401 - the 0.7 layout
    from chatstream.chat_prompt.role_type import RoleType  # noqa: F401
    from chatstream.mock import MockTransformer  # noqa: F401


def test_mock_mode_starts_without_torch():
    code = ("import sys\nfrom chatstream import ChatStream, ChatPromptTogetherRedPajamaINCITEChat as P\n"
            "ChatStream(use_mock_response=True, chat_prompt_clazz=P)\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
