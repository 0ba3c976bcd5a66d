"""Every module path of the original ChatStream 0.3.0 wheel imports on this package, and re-exports our own
implementation (the same objects, not copies).

Checks: the 68 module paths of the 0.3.0 wheel (its file list); for each, the original's public names we provide and
the object each one is; for the original names without a counterpart, that they are absent (not faked) and that the
module's docstring says what replaced them. Source: the 0.3.0 wheel's module list and the original's examples'
imports (`chatstream.access_control.default_client_role_grant_middleware.DefaultClientRoleGrantMiddleware`,
`chatstream.mock.mock_transformer.MockTransformer`, `chatstream.request_handler.request_handler
.AbstractRequestHandler`, `chatstream.default_finish_token.DEFAULT_FINISH_TOKEN`, ...).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PRESETS = "chatstream.chat_prompt.presets"
TOKEN_SAMPLERS = "chatstream.facade.token_samplers"
NO_PIPELINE = "no counterparts"  # what the token sampler pipeline modules say about their classes

# original module path -> {original name: "our.module:name" it must be}
PROVIDED: dict[str, dict[str, str]] = {
    "chatstream": {
        "ChatStream": "chatstream.facade.chat_stream:ChatStream",
        "AbstractChatPrompt": "chatstream.chat_prompt.abstract_chat_prompt:AbstractChatPrompt",
        "AbstractRequestHandler": "chatstream.facade.request_handler:AbstractRequestHandler",
        "SimpleSessionRequestHandler": "chatstream.facade.session_request_handler:SimpleSessionRequestHandler",
        "LoadTime": "chatstream.loadtime:LoadTime",
        "TokenSamplerHft": f"{TOKEN_SAMPLERS}:TokenSamplerHft",
        "TokenSamplerIsok": f"{TOKEN_SAMPLERS}:TokenSamplerIsok",
        "ChatPromptTogetherRedPajamaINCITEChat": f"{PRESETS}.redpajama:ChatPromptTogetherRedPajamaINCITEChat",
        "ChatPromptDatabricksDolly": f"{PRESETS}.dolly:ChatPromptDatabricksDolly",
    },
    "chatstream.access_control": {},
    "chatstream.access_control.client_role_authorizer_for_agent": {},
    "chatstream.access_control.client_role_authorizer_for_browser": {},
    "chatstream.access_control.client_role_finalizer": {},
    "chatstream.access_control.client_role_verifier": {},
    "chatstream.access_control.client_role_wrapper": {},
    "chatstream.access_control.default_client_role_grant_middleware": {
        "DefaultClientRoleGrantMiddleware": "chatstream.facade.default_routes:DefaultClientRoleGrantMiddleware",
        "CHAT_STREAM_CLIENT_ROLE": "chatstream.facade.client_roles:SESSION_ROLE_KEY",
    },
    "chatstream.access_control.role_def_to_client_role": {},
    "chatstream.chat_core": {},
    "chatstream.chat_process": {"ChatGenerator": "chatstream.facade.chat_generator:ChatGenerator"},
    "chatstream.chat_process_mock": {"ChatGeneratorMock": "chatstream.facade.generator_mock:MockChatGenerator"},
    "chatstream.chat_prompt": {
        "AbstractChatPrompt": "chatstream.chat_prompt.abstract_chat_prompt:AbstractChatPrompt",
        "ChatContent": "chatstream.chat_prompt.chat_content:ChatContent",
        "RoleType": "chatstream.chat_prompt.role_type:RoleType",
        "PromptTTL": "chatstream.chat_prompt.prompt_ttl:PromptTTL",
    },
    "chatstream.chat_prompt_presets": {},
    "chatstream.chat_prompt_presets.chat_prompt_cyberagent_opencalm": {
        "ChatPromptCyberAgentOpenCalm": f"{PRESETS}.open_calm:ChatPromptCyberAgentOpenCalm"},
    "chatstream.chat_prompt_presets.chat_prompt_databricks_dolly": {
        "ChatPromptDatabricksDolly": f"{PRESETS}.dolly:ChatPromptDatabricksDolly"},
    "chatstream.chat_prompt_presets.chat_prompt_linecorp_gpt_neox": {
        "ChatPromptLineCorpJpLargeLmInstSft": f"{PRESETS}.line:ChatPromptLineCorpJpLargeLmInstSft"},
    "chatstream.chat_prompt_presets.chat_prompt_matsuolab_gpt_neox": {
        "ChatPromptMatsuoLabJpGptNeoxInstSft": f"{PRESETS}.matsuo_lab:ChatPromptMatsuoLabJpGptNeoxInstSft"},
    "chatstream.chat_prompt_presets.chat_prompt_metallama_llama2": {
        "ChatPromptMetaLlamaLlama2Chat": f"{PRESETS}.llama2:ChatPromptMetaLlamaLlama2Chat",
        "SYSTEM_PROMPT": f"{PRESETS}.llama2:LLAMA2_DEFAULT_SYSTEM_PROMPT"},
    "chatstream.chat_prompt_presets.chat_prompt_mosaicml_mpt_chat": {
        "ChatPromptMosaicmlMptChat": f"{PRESETS}.mosaicml_mpt:ChatPromptMosaicmlMptChat"},
    "chatstream.chat_prompt_presets.chat_prompt_openlmresearch_open_llama": {
        "ChatPromptOpenlmrOpenLlama": f"{PRESETS}.open_llama:ChatPromptOpenlmrOpenLlama"},
    "chatstream.chat_prompt_presets.chat_prompt_rinna_gpt_neox": {
        "ChatPromptRinnaJpGptNeoxInstSft": f"{PRESETS}.rinna:ChatPromptRinnaJpGptNeoxInstSft"},
    "chatstream.chat_prompt_presets.chat_prompt_stabilityai_gpt_neox": {
        "ChatPromptStabilityAiJpGptNeoxInstSft": f"{PRESETS}.stabilityai_jp:ChatPromptStabilityAiJpGptNeoxInstSft"},
    "chatstream.chat_prompt_presets.chat_prompt_stockmark_gpt_neox": {
        "ChatPromptStockmarkGptNeoxJp": f"{PRESETS}.stockmark:ChatPromptStockmarkGptNeoxJp"},
    "chatstream.chat_prompt_presets.chat_prompt_togethercomputer_redpajama_incite": {
        "ChatPromptTogetherRedPajamaINCITEChat": f"{PRESETS}.redpajama:ChatPromptTogetherRedPajamaINCITEChat"},
    "chatstream.chat_stream": {"ChatStream": "chatstream.facade.chat_stream:ChatStream"},
    "chatstream.chat_stream_api_appender": {},  # append_apis: an adapter with the original's arguments (tested below)
    "chatstream.chat_stream_middleware_appender": {},  # append_middlewares: likewise
    "chatstream.data": {},
    "chatstream.default_api_names": {"DefaultApiNames": "chatstream.facade.default_routes:DefaultApiNames"},
    "chatstream.default_api_names_to_path": {"to_web_api_path": "chatstream.facade.default_routes:to_web_api_path"},
    "chatstream.default_finish_token": {"DEFAULT_FINISH_TOKEN": "chatstream.facade.chat_output:DEFAULT_FINISH_TOKEN"},
    "chatstream.easy_locale": {"EasyLocale": "chatstream.facade.log_locale:EasyLocale"},
    "chatstream.merge_dic": {"merge_dict": "chatstream.facade.generation_params:merge_params"},
    "chatstream.mock": {"MockTransformer": "chatstream.mock.transformer_mock:MockTransformer"},
    "chatstream.mock.chat_core_probe": {},
    "chatstream.mock.mock_def": {},
    "chatstream.mock.mock_model": {},  # MockModel: a function giving the recorded model (tested below)
    "chatstream.mock.mock_token_sampler": {"MockTokenSampler": "chatstream.mock.transformer_mock:MockTokenSampler"},
    "chatstream.mock.mock_tokenizer": {},  # MockTokenizer: a function giving the recorded tokenizer
    "chatstream.mock.mock_transformer": {"MockTransformer": "chatstream.mock.transformer_mock:MockTransformer"},
    "chatstream.mock_response_example_text": {"sample_text_long": "chatstream.facade.generator_mock:LONG_REPLY"},
    "chatstream.request_handler": {},
    "chatstream.request_handler.request_handler": {
        "AbstractRequestHandler": "chatstream.facade.request_handler:AbstractRequestHandler"},
    "chatstream.request_handler.simple_session_request_handler": {
        "SimpleSessionRequestHandler": "chatstream.facade.session_request_handler:SimpleSessionRequestHandler"},
    "chatstream.resource_usage": {},  # get_resource_usage(opts): an adapter (tested below)
    "chatstream.token_samplers": {},
    "chatstream.token_samplers.logits_processor": {},
    "chatstream.token_samplers.presets": {},
    "chatstream.token_samplers.presets.token_sampler_hft": {"TokenSamplerHft": f"{TOKEN_SAMPLERS}:TokenSamplerHft"},
    "chatstream.token_samplers.presets.token_sampler_hft_inverse": {
        "TokenSamplerHftInverse": f"{TOKEN_SAMPLERS}:TokenSamplerHftInverse"},
    "chatstream.token_samplers.presets.token_sampler_isolated_k": {"TokenSamplerIsok": f"{TOKEN_SAMPLERS}:TokenSamplerIsok"},
    "chatstream.token_samplers.processor": {},
    "chatstream.token_samplers.processor.logits_check_processor": {},
    "chatstream.token_samplers.processor.repetition_penalty_processor": {},
    "chatstream.token_samplers.processor.temperature_processor": {},
    "chatstream.token_samplers.sampler": {},
    "chatstream.token_samplers.sampler.isolated_top_k_softmax_sampler": {},
    "chatstream.token_samplers.sampler.softmax_sampler": {},
    "chatstream.token_samplers.sampler.top_k_sampler": {},
    "chatstream.token_samplers.sampler.top_n_sampler_def": {},
    "chatstream.token_samplers.sampler.top_p_sampler": {},
    "chatstream.token_samplers.token_sampler_base": {"TokenSamplerBase": f"{TOKEN_SAMPLERS}:TokenSamplerBase"},
    "chatstream.token_samplers.token_sampler_builder": {},
    "chatstream.util_create_streaming_response": {
        "create_streaming_response": "chatstream.facade.chat_stream_response:fixed_text_response"},
    "chatstream.util_ensure_torch_device": {},  # ensure_torch_device: an adapter (tested below)
    "chatstream.util_request_id": {"req_id": "chatstream.facade.chat_logging:req_id"},
    "chatstream.util_resource_file_response": {},
}

# The original's names that have no counterpart here, and the words the module's docstring uses for what replaced them.
ABSENT: dict[str, tuple[list[str], str]] = {
    "chatstream.access_control.client_role_authorizer_for_agent": (["ClientRoleAuthorizerForAgent"], "role_for"),
    "chatstream.access_control.client_role_authorizer_for_browser": (["ClientRoleAuthorizerForBrowser"], "try_promote"),
    "chatstream.access_control.client_role_finalizer": (["ClientRoleFinalizer"], "role_for"),
    "chatstream.access_control.client_role_verifier": (["ClientRoleVerifier"], "ClientRoles.verify"),
    "chatstream.access_control.client_role_wrapper": (["ClientRoleWrapper"], "client_role_wrapper"),
    "chatstream.access_control.role_def_to_client_role": (["role_def_to_client_role"], "ClientRoles.describe"),
    "chatstream.chat_core": (["process_chat"], "engine"),
    "chatstream.mock.chat_core_probe": (["ChatCoreProbe"], "Recorder"),
    "chatstream.mock.mock_def": (["SAVE_LOGITS_INTO_ONE_FILE"], "one format"),
    "chatstream.mock.mock_model": (["MockModelOutput"], "ReplayModel"),
    "chatstream.mock.mock_tokenizer": (["MockInput"], "real HF tokenizer"),
    "chatstream.token_samplers.logits_processor": (["AbstractLogitsProcessor"], NO_PIPELINE),
    "chatstream.token_samplers.token_sampler_builder": (["TokenSamplerBuilder"], NO_PIPELINE),
    "chatstream.token_samplers.processor.logits_check_processor": (["LogitsCheckProcessor"], NO_PIPELINE),
    "chatstream.token_samplers.processor.repetition_penalty_processor": (["RepetitionPenaltyProcessor"], NO_PIPELINE),
    "chatstream.token_samplers.processor.temperature_processor": (["TemperatureProcessor"], NO_PIPELINE),
    "chatstream.token_samplers.sampler.isolated_top_k_softmax_sampler": (["IsolatedTopKSampler"], NO_PIPELINE),
    "chatstream.token_samplers.sampler.softmax_sampler": (["SoftmaxSampler"], NO_PIPELINE),
    "chatstream.token_samplers.sampler.top_k_sampler": (["TopKSampler"], NO_PIPELINE),
    "chatstream.token_samplers.sampler.top_n_sampler_def": (["BIGGER_NUMBER_TO_FILTER_FP32"], NO_PIPELINE),
    "chatstream.token_samplers.sampler.top_p_sampler": (["TopPSampler"], NO_PIPELINE),
    "chatstream.util_resource_file_response": (["_send_resource"], "chatstream.web.page"),
}


def _ours(spec: str) -> object:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_list_is_the_wheels_68_modules() -> None:
    assert len(PROVIDED) == 68
    assert set(ABSENT) <= set(PROVIDED)


@pytest.mark.parametrize("module", sorted(PROVIDED))
def test_the_original_module_path_imports_and_re_exports_ours(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__doc__, f"{module} says what it is"
    for name, spec in PROVIDED[module].items():
        assert getattr(imported, name) is _ours(spec), f"{module}.{name} is not {spec}"


@pytest.mark.parametrize("module", sorted(ABSENT))
def test_names_without_a_counterpart_are_absent_and_explained(module: str) -> None:
    imported = importlib.import_module(module)
    names, explained_by = ABSENT[module]
    for name in names:
        assert not hasattr(imported, name), f"{module}.{name} exists; list it as provided instead"
    assert explained_by in " ".join(imported.__doc__.split()), f"{module}'s docstring should name {explained_by}"


def test_the_adapters_with_the_originals_arguments() -> None:
    from fastapi import FastAPI

    from chatstream import ChatStream
    from chatstream.chat_stream_api_appender import append_apis
    from chatstream.chat_stream_middleware_appender import append_middlewares
    from chatstream.resource_usage import get_resource_usage
    from chatstream.util_ensure_torch_device import ensure_torch_device

    chat_stream = ChatStream()
    app = FastAPI()
    append_middlewares(chat_stream, app, chat_stream.logger, chat_stream.eloc)
    append_apis(chat_stream, app, {"include": ["get_load"]}, chat_stream.logger, chat_stream.eloc)
    assert [r.path for r in app.routes if getattr(r, "name", "") == "get_load"] == ["/get_load"]
    usage = get_resource_usage({"num_gpus": 0, "device": "cpu"})
    assert usage["cpu"]["total_memory"] > 0 and usage["gpus"] == []
    import torch

    assert ensure_torch_device(None) is None
    assert ensure_torch_device("cpu") == torch.device("cpu")
    assert ensure_torch_device("no-such-device") is None


def test_the_mock_module_functions_give_the_recorded_objects(tmp_path) -> None:
    from chatstream.mock.mock_model import MockModel
    from chatstream.mock.mock_tokenizer import MockTokenizer
    from chatstream.mock.recording import RecordingError

    with pytest.raises(RecordingError):
        MockModel("no-such-recording", parent_dir_path=tmp_path)
    with pytest.raises(RecordingError):
        MockTokenizer("no-such-recording", parent_dir_path=tmp_path)


def test_importing_the_mock_and_prompt_paths_loads_no_torch() -> None:
    # Paths a mock server uses stay light, as the original's mock mode promised.
    code = ("import sys\n"
            "import chatstream.request_handler.request_handler, chatstream.default_finish_token\n"
            "import chatstream.chat_prompt_presets.chat_prompt_togethercomputer_redpajama_incite\n"
            "import chatstream.access_control.default_client_role_grant_middleware, chatstream.easy_locale\n"
            "from chatstream import ChatStream\n"
            "ChatStream(use_mock_response=True, mock_params={'type': 'echo'})\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False"
