"""A LockDiff as text (terminal), JSON (machines) or markdown (a pull-request comment). Pure."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from vllm_lock.diffing import LockDiff, PackageChange, github_slug

FORMATS = ("text", "json", "markdown")


def render(diff: LockDiff, fmt: str = "text") -> str:
    if fmt == "text":
        return text(diff)
    if fmt == "json":
        return json.dumps(as_data(diff), indent=2) + "\n"
    if fmt == "markdown":
        return markdown(diff)
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


# ---------------------------------------------------------------- pieces shared by the forms


def _date(iso: str) -> str:
    return iso[:10]


def _torch_side(version: str, date: str | None, channel: str) -> str:
    return f"{version} (nightly {date})" if date else f"{version} ({channel})"


def _days(n: int | None) -> str:
    if n is None:
        return ""
    if n == 0:
        return "same day"
    word = "day" if abs(n) == 1 else "days"
    return f"{n} {word} newer" if n > 0 else f"{-n} {word} older"


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _history_lines(diff: LockDiff) -> list[str]:
    """How the commits relate, in words; [] when the commit did not move."""
    v = diff.vllm
    if not v.moved:
        return []
    h = v.history
    if h is None:
        return ["history: not looked up"]
    if not h.reachable:
        return [f"history: repository not reachable ({h.note}); commit counts unknown"]
    a, b = diff.names
    if h.ahead and h.behind:
        return [f"{b} has {h.ahead} commits {a} lacks, {a} has {h.behind} commits {b} lacks (diverged)"]
    if h.ahead:
        return [f"{h.ahead} new commit{'s' if h.ahead != 1 else ''} from {a} to {b}"]
    if h.behind:
        return [f"{b} is {h.behind} commit{'s' if h.behind != 1 else ''} behind {a}"]
    return []


def _rebuild_line(diff: LockDiff) -> str:
    i = diff.identity
    if i.changed:
        return f"changed ({i.old} -> {i.new}): vLLM must be rebuilt"
    if diff.sources:
        return f"unchanged ({i.old}): same commit and hashes, but fetched from changed sources (see 'sources')"
    return f"unchanged ({i.old}): the same build serves both"


def _md_code(value: Any) -> str:
    text = _value(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _package_counts(diff: LockDiff) -> str:
    return ", ".join(f"{diff.count(k)} {k}" for k in ("changed", "added", "removed", "rebuilt"))


def _old(change: PackageChange) -> str:
    return change.old or "-"


def _new(change: PackageChange) -> str:
    return change.new or "-"


def _md_wheels(change: PackageChange) -> str:
    return "".join(f"<br>`{wheel}`" for wheel in change.wheels)


# ---------------------------------------------------------------- text


def text(diff: LockDiff) -> str:
    a, b = diff.names
    v, t = diff.vllm, diff.torch
    out = [f"{a} ({diff.phases[0]}) -> {b} ({diff.phases[1]}): {'equal' if diff.equal else 'different'}"]
    if diff.sources:
        out.append(f"sources   {len(diff.sources)} changed: where vLLM, its external sources or packages come from")
        for change in diff.sources:
            out.append(f"          ! {change.key}: {_value(change.old)} -> {_value(change.new)}")
    if diff.followed:
        out.append("follows   changed: every later `update` follows the new value (build identity not affected)")
        for change in diff.followed:
            out.append(f"          ! {change.key}: {_value(change.old)} -> {_value(change.new)}")
    if v.moved:
        out.append(f"vLLM      {v.short[0]} ({_date(v.commit_date[0])}) -> {v.short[1]} ({_date(v.commit_date[1])})")
        for line in _history_lines(diff):
            out.append(f"          {line}")
        if v.history is not None:
            for subject in v.history.subjects:
                out.append(f"            {subject}")
        if v.compare_url:
            out.append(f"          compare: {v.compare_url}")
    else:
        out.append(f"vLLM      {v.short[0]} ({_date(v.commit_date[0])}), unchanged")
    if t.version[0] != t.version[1]:
        apart = _days(t.days_apart)
        out.append(
            f"torch     {_torch_side(t.version[0], t.date[0], t.channel[0])} -> "
            f"{_torch_side(t.version[1], t.date[1], t.channel[1])}" + (f", {apart}" if apart else "")
        )
    else:
        out.append(f"torch     {_torch_side(t.version[0], t.date[0], t.channel[0])}, unchanged")
    for c in t.companions:
        out.append(f"          {c.name}: {_old(c)} -> {_new(c)}")
    if diff.packages:
        out.append(f"packages  {_package_counts(diff)}")
        width = max(len(p.name) for p in diff.packages)
        old_width = max(len(_old(p)) for p in diff.packages)
        for p in diff.packages:
            out.append(f"          {p.name:<{width}}  {p.kind:<7}  {_old(p):<{old_width}}  ->  {_new(p)}")
            out += [f"            {wheel}" for wheel in p.wheels]
    else:
        out.append("packages  unchanged")
    settings = diff.settings
    if settings:
        out.append("settings")
        for setting in settings:
            out.append(f"          {setting.key}: {_value(setting.old)} -> {_value(setting.new)}")
    else:
        out.append("settings  build recipe, target and layout unchanged")
    if diff.other:
        out.append("fields")
        for change in diff.other:
            out.append(f"          {change.key}: {_value(change.old)} -> {_value(change.new)}")
    out.append(f"build identity {_rebuild_line(diff)}")
    for reason in diff.identity.reasons:
        out.append(f"          - {reason}")
    for note in diff.notes:
        out.append(f"note      {note}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- markdown


def _md_commit(sha: str, url: str) -> str:
    slug = github_slug(url)
    return f"[`{sha[:9]}`](https://github.com/{slug}/commit/{sha})" if slug else f"`{sha[:9]}`"


def markdown(diff: LockDiff) -> str:
    a, b = diff.names
    v, t = diff.vllm, diff.torch
    i = diff.identity
    out = [f"### vllm-lock diff: `{a}` → `{b}`", ""]
    if diff.equal:
        out.append(f"**Equal**: no locked value changed; build identity `{i.old}`.")
    elif i.changed:
        out.append(f"**Rebuild needed**: build identity `{i.old}` → `{i.new}`.")
    else:
        out.append(f"**No rebuild needed**: build identity `{i.old}` is unchanged.")
    for reason in i.reasons:
        out.append(f"- {reason}")
    if diff.sources:
        out += ["", f"**Source locations changed ({len(diff.sources)})**: check these before merging.", "",
                "| field | old | new |", "|---|---|---|"]
        out += [f"| `{c.key}` | {_md_code(c.old)} | {_md_code(c.new)} |" for c in diff.sources]
    if diff.followed:
        out += ["", "**What `update` follows changed**: every later `update` follows the new value "
                "(build identity not affected).", "", "| field | old | new |", "|---|---|---|"]
        out += [f"| `{c.key}` | {_md_code(c.old)} | {_md_code(c.new)} |" for c in diff.followed]
    out += ["", f"| | `{a}` ({diff.phases[0]}) | `{b}` ({diff.phases[1]}) |", "|---|---|---|"]
    out.append(
        f"| vLLM | {_md_commit(v.commit[0], v.url[0])} ({_date(v.commit_date[0])}) "
        f"| {_md_commit(v.commit[1], v.url[1])} ({_date(v.commit_date[1])}) |"
    )
    out.append(f"| torch | `{t.version[0]}` | `{t.version[1]}` |")
    if t.date[0] or t.date[1]:
        apart = _days(t.days_apart)
        out.append(f"| nightly | {t.date[0] or '-'} | {t.date[1] or '-'}" + (f" ({apart})" if apart else "") + " |")
    out += ["", f"Packages: {_package_counts(diff)}.", ""]
    history = _history_lines(diff)
    if history or v.compare_url:
        out.append("#### vLLM commits")
        out.append("")
        for line in history:
            out.append(line)
        if v.history is not None and v.history.subjects:
            out += ["", "<details><summary>commits</summary>", ""]
            out += [f"- {s}" for s in v.history.subjects]
            out += ["", "</details>"]
        if v.compare_url:
            out += ["", f"Compare: {v.compare_url}"]
        out.append("")
    if t.companions:
        out += ["#### torch companions", "", "| package | old | new |", "|---|---|---|"]
        out += [f"| {c.name} | `{_old(c)}` | `{_new(c)}` |" for c in t.companions]
        out.append("")
    if diff.packages:
        out += ["#### Packages", "", "| package | change | old | new |", "|---|---|---|---|"]
        out += [f"| {p.name} | {p.kind}{_md_wheels(p)} | `{_old(p)}` | `{_new(p)}` |" for p in diff.packages]
        out.append("")
    settings = diff.settings
    if settings:
        out += ["#### Settings", "", "| setting | old | new |", "|---|---|---|"]
        out += [f"| {_md_code(c.key)} | {_md_code(c.old)} | {_md_code(c.new)} |" for c in settings]
        out.append("")
    if diff.other:
        out += ["#### Other changed fields", "", "| field | old | new |", "|---|---|---|"]
        out += [f"| {_md_code(c.key)} | {_md_code(c.old)} | {_md_code(c.new)} |" for c in diff.other]
        out.append("")
    if diff.notes:
        out += ["#### Notes", ""] + [f"- {n}" for n in diff.notes] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


# ---------------------------------------------------------------- json


def as_data(diff: LockDiff) -> dict[str, Any]:
    data = dataclasses.asdict(diff)
    data["equal"] = diff.equal
    data["identity"]["changed"] = diff.identity.changed
    data["vllm"]["moved"] = diff.vllm.moved
    data["torch"]["moved"] = diff.torch.moved
    result: dict[str, Any] = _lists(data)
    return result


def _lists(value: Any) -> Any:
    """Tuples as lists, recursively (json writes both the same; this keeps tests simple)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
