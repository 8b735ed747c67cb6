"""The answer file as a format: its version, sections, the keys that hold paths or must never hold an
inline secret, and its JSON Schema (committed as docs/answers.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from ..plan import InstallPlan

ANSWERS_VERSION = 1
# (section, key) of every path in the plan: relative ones are resolved against the answer file's directory.
PATH_KEYS = (("target", "image_file"), ("encryption", "passphrase_file"), ("encryption", "recovery_key_file"),
             ("system", "root_password_file"), ("image", "cosign_key"), ("image", "signature_policy"),
             ("image", "registries_d"))
# Secrets the model can hold (typed in the TUI) but an answer file must not: the key that replaces each.
INLINE_SECRETS = {("encryption", "passphrase"): "passphrase_file", ("system", "root_password"): "root_password_file"}
SECTIONS = ("image", "target", "layout", "encryption", "boot", "system")
# The same for each table of [[system.users]].
USER_PATH_KEYS = ("password_file",)
USER_INLINE_SECRETS = {"password": "password_file"}


def answers_json_schema() -> dict[str, Any]:
    """The plan's schema as an answer file sees it: ``version`` required, no inline secrets, sizes as
    numbers or strings ("2G")."""
    schema = InstallPlan.model_json_schema(mode="validation")
    for (section, key), _instead in INLINE_SECRETS.items():
        definition = schema["$defs"][section.capitalize()]
        definition["properties"].pop(key, None)
    for key in USER_INLINE_SECRETS:
        schema["$defs"]["User"]["properties"].pop(key, None)
    schema["required"] = sorted({*schema.get("required", []), "version"})
    for definition in [schema, *schema["$defs"].values()]:
        for name, prop in definition.get("properties", {}).items():
            if name.endswith("_size"):
                definition["properties"][name] = _size_schema(prop)
    # Every key described (editors show it): sections whose model has no docstring get one here.
    for name, text in SECTION_DOCS.items():
        schema["$defs"][name].setdefault("description", text)
    schema.setdefault("description", "An unattended install: the plan nbc-tui runs (docs/answers.md).")
    for prop in schema["properties"].values():
        ref = prop.get("$ref", "").rsplit("/", 1)[-1]
        if ref and "description" not in prop:
            prop["description"] = schema["$defs"][ref]["description"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "nbc-tui answer file", **{k: v for k, v in schema.items() if k != "title"}}


SECTION_DOCS = {
    "ImageSpec": "The image to install, and where the installed system gets its updates from.",
    "Boot": "The bootloader and extra kernel arguments.",
    "System": "Who the machine is (host name, time zone, keymap, locale), its users, and root's password (from a "
              "file or as a hash) and SSH keys.",
}
_SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*[KMGTkmgt]?([iI]?[bB])?\s*$"


def _size_schema(prop: dict[str, Any]) -> dict[str, Any]:
    def widen(node: dict[str, Any]) -> dict[str, Any]:
        if node.get("type") == "integer":
            return {"anyOf": [node, {"type": "string", "pattern": _SIZE_PATTERN}]}
        if "anyOf" in node:
            branches = []
            for branch in node["anyOf"]:
                widened = widen(branch)
                branches += widened["anyOf"] if "anyOf" in widened and "anyOf" not in branch else [widened]
            return {**node, "anyOf": branches}
        return node

    meta = {k: v for k, v in prop.items() if k in ("default", "description", "title")}
    body = {k: v for k, v in prop.items() if k not in meta}
    widened = widen(body)
    return {**widened, **meta}


def schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"
