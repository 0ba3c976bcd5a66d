"""`chatstream bench`: a throughput benchmark of our engine against HuggingFace and vLLM baselines.

Owns nothing itself; the pieces are `workload` (the prompts), `protocol` (what the parent and a contender's child
process exchange), `metrics` (timings -> numbers), `contenders` (one module per system under test), `worker` (the
child process entry point), `runner` (orchestration), `report` (table and JSON) and `cli` (the argparse front).
Every module reachable from `worker` without naming a contender is standard-library only, so the vLLM contender
can run under a different interpreter that has vLLM but not our dependencies.
"""
