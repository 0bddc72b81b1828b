"""The Markdown report of one `lwm promote`: the decision, then every gated metric."""

from __future__ import annotations

from typing import Any

from lightning_wm.testing.junit import Check

STATUS = {"pass": "ok", "fail": "**REGRESSED**", "skip": "not gated"}


def headline(decision: dict[str, Any]) -> str:
    """One sentence: what the version became and why (also the model version's description)."""
    name, version = decision["name"], decision["version"]
    if decision["champion"] is None:
        return f"**{name} v{version} is the champion**: the first version holding the alias."
    if decision["passed"]:
        return f"**{name} v{version} is the new champion**: no gated metric regressed against {decision['champion']}."
    return (f"**{name} v{version} stays challenger**: {', '.join(decision['failed'])} regressed against the "
            f"champion {decision['champion']}.")


def promotion_markdown(decision: dict[str, Any], info: dict[str, Any], checks: list[Check]) -> str:
    name, version = decision["name"], decision["version"]
    lines = [f"# Promotion of `{info['checkpoint']}`", "", headline(decision), "",
             f"- registered as `models:/{name}/{version}` (alias `{decision['alias']}`), logged model "
             f"`{decision['model_uri']}` in run `{decision['run_name']}`",
             f"- evaluation protocol `{info['protocol_hash']}`: `{info['dataset']}` split `{info['split']}`, "
             f"context {info['context']}, horizons {', '.join(info['horizons'])}, seed {info['protocol']['seed']}",
             f"- training run `{info['training_run_name']}`; implied motion: {info['implied_motion']}"]
    if decision["champion"]:
        lines.append(f"- champion {decision['champion']} measured from {decision['champion_source']}")
    lines += ["", "| metric | verdict | details |", "|---|---|---|"]
    lines += [f"| {c.name} | {STATUS[c.status]} | {c.details if c.status != 'skip' else c.message + '; ' + c.details} |"
              for c in checks]
    return "\n".join(lines) + "\n"
