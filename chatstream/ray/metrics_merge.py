"""The ingress's /metrics: every replica's Prometheus text, each sample labelled `replica`.

A replica's /metrics is one `chatstream serve`'s; merged, a family's HELP and TYPE appear once
and its samples from every replica follow them (the text format wants a family's samples
together). The sum over replicas is then `sum without (replica) (...)` in PromQL. The ingress's
own gauges (`chatstream:replica_up`, `chatstream:replica_in_flight`) are appended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class _Family:
    header: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


def _labelled(sample: str, replica: str) -> str:
    label = f'replica="{replica}"'
    name_end = min((i for i in (sample.find("{"), sample.find(" ")) if i >= 0), default=-1)
    if name_end < 0:
        return sample
    if sample[name_end] == "{":
        inner_starts = name_end + 1
        separator = "" if sample[inner_starts] == "}" else ","
        return f"{sample[:inner_starts]}{label}{separator}{sample[inner_starts:]}"
    return f"{sample[:name_end]}{{{label}}}{sample[name_end:]}"


def merge_metrics(texts: Mapping[str, str]) -> str:
    """`texts`: replica name -> its /metrics text. Returns one text with a `replica` label."""
    families: dict[str, _Family] = {}
    for replica, text in texts.items():
        current: _Family | None = None
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                current = families.setdefault(name, _Family())
                if line not in current.header:
                    current.header.append(line)
            elif line.startswith("#"):
                continue
            else:
                if current is None:
                    current = families.setdefault("", _Family())
                current.samples.append(_labelled(line, replica))
    lines: list[str] = []
    for family in families.values():
        lines += family.header + family.samples
    return "\n".join(lines) + "\n"


def replica_gauges(up: Mapping[str, bool], in_flight: Mapping[str, int]) -> str:
    lines = ["# HELP chatstream:replica_up 1 when the ingress routes to the replica (its probe answered).",
             "# TYPE chatstream:replica_up gauge"]
    lines += [f'chatstream:replica_up{{replica="{name}"}} {int(value)}' for name, value in up.items()]
    lines += ["# HELP chatstream:replica_in_flight Requests the ingress has open on the replica.",
              "# TYPE chatstream:replica_in_flight gauge"]
    lines += [f'chatstream:replica_in_flight{{replica="{name}"}} {count}' for name, count in in_flight.items()]
    return "\n".join(lines) + "\n"
