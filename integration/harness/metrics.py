"""Pullgate's /metrics: a strict parser of the Prometheus text format
(version 0.0.4), and the one way the tests read it."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Optional

from .httpclient import http_request

_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"


class PromParseError(AssertionError):
    """The page breaks the exposition format."""


@dataclasses.dataclass
class Family:
    """One metric family: its HELP, TYPE and samples."""
    name: str
    type: Optional[str] = None
    help: Optional[str] = None
    samples: list = dataclasses.field(default_factory=list)  # (name, labels, value)


def _parse_labels(s: str, i: int, line: str) -> tuple[dict, int]:
    """Parse ``{a="x",b="y"}`` starting at s[i] == '{'; returns (labels, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels: dict = {}
    while True:
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(_LABEL_NAME).match(s, i)
        if not m:
            raise PromParseError(f"bad label name at {i} in {line!r}")
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise PromParseError(f"expected =\" after label {name} in {line!r}")
        i += 2
        value = []
        while True:
            if i >= len(s):
                raise PromParseError(f"unterminated label value in {line!r}")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt == "n":
                    value.append("\n")
                elif nxt in ("\\", '"'):
                    value.append(nxt)
                else:
                    raise PromParseError(f"bad escape \\{nxt} in {line!r}")
                i += 2
                continue
            if c == '"':
                i += 1
                break
            value.append(c)
            i += 1
        if name in labels:
            raise PromParseError(f"label {name} twice in {line!r}")
        labels[name] = "".join(value)
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            return labels, i + 1
        else:
            raise PromParseError(f"expected , or }} after label {name} in {line!r}")


def _parse_value(text: str, line: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise PromParseError(f"bad sample value {text!r} in {line!r}") from None


class Metrics:
    """A parsed /metrics page. Strict: HELP/TYPE at most once per family and
    before its samples, every sample belongs to a declared family (with the
    _bucket/_sum/_count suffixes of a histogram), no duplicate series."""

    TYPES = ("counter", "gauge", "histogram", "summary", "untyped")

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Family] = {}
        self.series: dict[tuple, float] = {}
        if text and not text.endswith("\n"):
            raise PromParseError("exposition does not end with a newline")
        seen_samples_for: set[str] = set()
        for line in text.split("\n"):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not re.fullmatch(_METRIC_NAME, name):
                        raise PromParseError(f"bad metric name in {line!r}")
                    fam = self.families.setdefault(name, Family(name))
                    if name in seen_samples_for:
                        raise PromParseError(f"{parts[1]} for {name} after its samples")
                    rest = parts[3] if len(parts) > 3 else ""
                    if parts[1] == "HELP":
                        if fam.help is not None:
                            raise PromParseError(f"second HELP for {name}")
                        fam.help = rest
                    else:
                        if fam.type is not None:
                            raise PromParseError(f"second TYPE for {name}")
                        if rest not in self.TYPES:
                            raise PromParseError(f"unknown type {rest!r} for {name}")
                        fam.type = rest
                continue
            m = re.compile(_METRIC_NAME).match(line)
            if not m:
                raise PromParseError(f"bad sample line {line!r}")
            name = m.group(0)
            i = m.end()
            labels: dict = {}
            if i < len(line) and line[i] == "{":
                labels, i = _parse_labels(line, i, line)
            rest = line[i:].split()
            if len(rest) not in (1, 2):
                raise PromParseError(f"expected value [timestamp] in {line!r}")
            value = _parse_value(rest[0], line)
            fam = self._family_of(name)
            if fam is None:
                raise PromParseError(f"sample {name} has no HELP/TYPE family")
            seen_samples_for.add(fam.name)
            key = (name, tuple(sorted(labels.items())))
            if key in self.series:
                raise PromParseError(f"duplicate series {key}")
            self.series[key] = value
            fam.samples.append((name, labels, value))

    def _family_of(self, sample: str) -> Optional[Family]:
        if sample in self.families:
            return self.families[sample]
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample[:-len(suffix)] if sample.endswith(suffix) else None
            if base and base in self.families and self.families[base].type in ("histogram", "summary"):
                return self.families[base]
        return None

    def value(self, name: str, default: Optional[float] = None, **labels: str) -> float:
        """The value of the series ``name{labels}`` (exact label set)."""
        key = (name, tuple(sorted(labels.items())))
        if key not in self.series:
            if default is not None:
                return default
            raise KeyError(f"no series {name}{labels} in /metrics")
        return self.series[key]

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """A histogram's (le, cumulative count) pairs, sorted by le."""
        out = []
        for sample, labels, value in self.families[name].samples:
            if sample == name + "_bucket":
                out.append((_parse_value(labels["le"], sample), value))
        return sorted(out)


def metrics_url(admin_port: int) -> str:
    """pullgate's /metrics on its admin listener."""
    return f"http://127.0.0.1:{admin_port}/metrics"


class MetricsUnavailable(AssertionError):
    """/metrics did not answer 200 with a text/plain page."""


def scrape_metrics(admin_port: int, timeout: float = 10) -> Metrics:
    """GET /metrics, parsed. Raises MetricsUnavailable unless it answers 200
    with a text/plain page, PromParseError when the page breaks the format,
    OSError when the connection fails."""
    r = http_request("GET", metrics_url(admin_port), timeout=timeout)
    if r.status != 200:
        raise MetricsUnavailable(f"/metrics answered {r.status}: {r.body[:300]!r}")
    ctype = r.header("Content-Type") or ""
    if not ctype.startswith("text/plain"):
        raise MetricsUnavailable(f"/metrics Content-Type {ctype!r}")
    return Metrics(r.body.decode())


def metric_value(admin_port: int, name: str, timeout: float = 5, **labels: str) -> Optional[float]:
    """The value of the series ``name{labels}`` (exact label set), or None
    when /metrics cannot be read (connection failed, not 200) or lacks it:
    for polling (a sampler thread, wait_for). A malformed page still raises
    PromParseError."""
    try:
        metrics = scrape_metrics(admin_port, timeout)
    except (OSError, MetricsUnavailable):
        return None
    return metrics.series.get((name, tuple(sorted(labels.items()))))
