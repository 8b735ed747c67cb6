"""Answer files: every error names the key and its line; the dump loads back to the same plan; the committed
schemas match the models; every documented example loads and fits its schema."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import jsonschema
import pytest

from nbc_tui.backend.answers import (
    AnswerFileError,
    answers_json_schema,
    dump_answers,
    load_answers,
    parse_answers,
    preflight_loc,
    save_answers,
    schema_text,
)
from nbc_tui.backend.answers.lines import locate_json, locate_toml
from nbc_tui.backend.answers.sources import cmdline_answers_value
from nbc_tui.backend.events import (
    CompleteEvent,
    ErrorEvent,
    MessageEvent,
    StepEvent,
    events_json_schema,
    progress_event,
)
from nbc_tui.backend.image.reference import absolute_local_ref
from nbc_tui.backend.plan import Boot, DiskRule, Encryption, ImageSpec, InstallPlan, Layout, System, Target
from nbc_tui.backend.sizes import GiB, MiB

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def problems(text: str, *, is_json: bool = False) -> list[tuple[str, int | None, str, str | None]]:
    with pytest.raises(AnswerFileError) as info:
        parse_answers(text, source="a.toml", is_json=is_json)
    return [(p.key, p.line, p.message, p.hint) for p in info.value.problems]


# -- the line locator -----------------------------------------------------------------------------------


def test_locator_follows_tables_dotted_keys_inline_tables_and_arrays_of_tables() -> None:
    text = "\n".join([
        'version = 1                       # 1',
        'boot.kernel_args = [              # 2',
        '  "quiet",                        # 3',
        '  "console=ttyS0",                # 4',
        ']',
        '[image]                           # 6',
        'ref = """oci:/x                   # 7',
        '[not-a-table]',
        'key = "inside a string"',
        '"""',
        '[ target ]                        # 11',
        "'wipe' = true                     # 12",
        '[[target.match]]                  # 13',
        'model = "A*"                      # 14',
        '[[target.match]]                  # 15',
        'serial = "x"  # [comment] = 1     # 16',
        '[layout]',
        'sizes = { esp = "1G", nested = { root = "2G" } }   # 18',
        'arr = [ { a = 1 },',
        '        { b = 2 } ]               # 20',
    ])
    tomllib.loads(text)  # the fixture itself is valid TOML
    lines = locate_toml(text)
    assert lines[("version",)] == 1
    assert lines[("boot", "kernel_args")] == 2
    assert lines[("boot", "kernel_args", 1)] == 4
    assert lines[("image", "ref")] == 7
    assert ("not-a-table",) not in lines
    assert lines[("target",)] == 11
    assert lines[("target", "wipe")] == 12
    assert lines[("target", "match", 0)] == 13
    assert lines[("target", "match", 0, "model")] == 14
    assert lines[("target", "match", 1, "serial")] == 16
    assert lines[("layout", "sizes", "nested", "root")] == 18
    assert lines[("layout", "arr", 1, "b")] == 20


def test_locator_nested_arrays_of_tables_count_per_parent() -> None:
    text = "[[a]]\n[[a.b]]\nx = 1\n[[a.b]]\nx = 2\n[[a]]\n[[a.b]]\nx = 3\n[a.c]\ny = 4\n"
    tomllib.loads(text)
    lines = locate_toml(text)
    assert lines[("a", 0, "b", 1, "x")] == 5
    assert lines[("a", 1, "b", 0, "x")] == 8
    assert lines[("a", 1, "c", "y")] == 10


def test_locator_json() -> None:
    text = ('{\n  "version": 1,\n  "target": {\n    "match": [\n      {"model": "x"},\n'
            '      {"serial": "y"}\n    ]\n  }\n}')
    lines = locate_json(text)
    assert lines[("target", "match", 1, "serial")] == 6
    assert lines[("version",)] == 2


# -- errors: key, line, and a fix ------------------------------------------------------------------------

GOOD = 'version = 1\n[image]\nref = "oci:/x"\n[target]\nimage_file = "/tmp/x.img"\nimage_size = "40G"\n'


def test_good_file_loads() -> None:
    plan = parse_answers(GOOD).plan
    assert plan.target.image_file == Path("/tmp/x.img") and plan.target.image_size == 40 * GiB


def test_misspelt_key_says_did_you_mean() -> None:
    [(key, line, message, hint)] = problems(GOOD + "overwrit = true\n")
    assert (key, line) == ("target.overwrit", 7)
    assert "unknown key" in message and hint == "did you mean 'overwrite'?"


def test_unknown_section_lists_the_sections() -> None:
    [(key, line, message, hint)] = problems(GOOD + "[network]\nhostname = 'x'\n")
    assert (key, line) == ("network", 7)
    assert "unknown section" in message and "image, target, layout" in (hint or "")


def test_wrong_types() -> None:
    found = problems(GOOD.replace('"40G"', "true") + "overwrite = 'yes'\n[boot]\nkernel_args = 'quiet'\n")
    by_key = {k: (line, msg, hint) for k, line, msg, hint in found}
    assert by_key["target.overwrite"][0] == 7 and "true or false" in by_key["target.overwrite"][2]
    assert by_key["boot.kernel_args"][0] == 9 and "list" in by_key["boot.kernel_args"][2]
    assert by_key["target.image_size"][0] == 6


def test_sizes_are_checked_in_words() -> None:
    [(key, line, message, hint)] = problems(GOOD + '[layout]\nroot_size = "100M"\n')
    assert (key, line, message) == ("layout.root_size", 8, "must be at least 512.0 MB")
    assert hint == "write it like 512M or 2G"
    [(key, line, message, _)] = problems(GOOD + '[layout]\nesp_size = "two gigs"\n')
    assert (key, line) == ("layout.esp_size", 8) and "is not a size" in message


def test_missing_required_key_points_at_its_table() -> None:
    text = 'version = 1\n[image]\nstaged_digest = "sha256:1"\n[target]\ndevice = "/dev/sdz"\n'
    [(key, line, message, hint)] = problems(text)
    assert (key, line, message) == ("image.ref", 2, "missing: this key is required")
    assert hint and hint.startswith("add ref = ... under [image]")


def test_version_is_required_and_must_be_one() -> None:
    [(key, line, _msg, hint)] = problems(GOOD.replace("version = 1\n", ""))
    assert (key, line, hint) == ("version", None, "add version = 1 as the first line")
    [(key, line, _msg, hint)] = problems(GOOD.replace("version = 1", "version = 2"))
    assert (key, line) == ("version", 1) and "version 1" in (hint or "")


def test_model_rules_point_at_their_table() -> None:
    [(key, line, message, _)] = problems(GOOD + 'device = "/dev/sdz"\n')
    assert (key, line) == ("target", 4) and "exactly one" in message


@pytest.mark.parametrize(("section", "key", "instead"), [
    ("encryption", "passphrase", "passphrase_file"), ("system", "root_password", "root_password_file")])
def test_inline_secrets_are_refused(section: str, key: str, instead: str) -> None:
    text = GOOD + f'[{section}]\n{key} = "Hunter2-Hunter2"\n'
    found = problems(text)
    assert [(k, line) for k, line, _, _ in found] == [(f"{section}.{key}", 8)]
    assert f"use {instead} =" in (found[0][3] or "")
    with pytest.raises(AnswerFileError) as info:
        parse_answers(text, source="a.toml")
    assert "Hunter2" not in str(info.value) + json.dumps(info.value.details)


def test_rule_errors_name_the_rule_and_its_line() -> None:
    text = ('version = 1\n[image]\nref = "x"\n[target]\nwipe = true\n[[target.match]]\nmodel = "a"\n'
            '[[target.match]]\nsize = "big"\n')
    [(key, line, message, _)] = problems(text)
    assert (key, line) == ("target.match[1].size", 9) and "'largest' or 'smallest'" in message


def test_syntax_errors_give_the_line() -> None:
    [(key, line, message, _)] = problems(GOOD + "wipe = yes\n")
    assert (key, line) == ("", 7) and message.startswith("not valid TOML")
    [(key, line, message, _)] = problems('{\n "version": 1,\n "image": \n}', is_json=True)
    assert (key, line) == ("", 4) and message.startswith("not valid JSON")


def test_json_answer_file(tmp_path: Path) -> None:
    path = tmp_path / "answers"  # no suffix: recognised by its content
    path.write_text(json.dumps({"version": 1, "image": {"ref": "oci:/x"},
                                "target": {"device": "/dev/sdz", "wipe": True}}, indent=1))
    assert load_answers(path).target.wipe is True
    path.write_text('{"version": 1,\n "image": {"ref": "oci:/x"},\n "target": {"devise": "/dev/sdz"}}')
    with pytest.raises(AnswerFileError) as info:
        load_answers(path)
    assert info.value.problems[0].key == "target.devise" and info.value.problems[0].line == 3
    assert f"{path}:3: target.devise" in info.value.message


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "answers.toml"
    path.parent.mkdir()
    path.write_text(GOOD.replace("/tmp/x.img", "x.img") + '[system]\nroot_password_file = "secrets/pw"\n')
    plan = load_answers(path)
    assert plan.target.image_file == tmp_path / "sub" / "x.img"
    assert plan.system.root_password_file == tmp_path / "sub" / "secrets" / "pw"


def test_image_trust_keys_load_relative_to_the_file_and_contradictions_point_at_the_key(tmp_path: Path) -> None:
    path = tmp_path / "answers.toml"
    trust = 'cosign_key = "keys/cosign.pub"\nsignature_policy = "policy.json"\nregistries_d = "/etc/regd"\n'
    path.write_text(GOOD.replace('ref = "oci:/x"\n', 'ref = "oci:/x"\n' + trust))
    image = load_answers(path).image
    assert (image.cosign_key, image.signature_policy, image.registries_d) == (
        tmp_path / "keys/cosign.pub", tmp_path / "policy.json", Path("/etc/regd"))
    [(key, line, message, _)] = problems(GOOD.replace('ref = "oci:/x"\n', 'ref = "oci:/x"\ncosign_kye = "k"\n'))
    assert (key, line) == ("image.cosign_kye", 4) and "unknown key" in message
    both = 'ref = "oci:/x"\ncosign_key = "/k"\ninsecure_skip_verify = true\n'
    [(key, _, message, _)] = problems(GOOD.replace('ref = "oci:/x"\n', both))
    assert key.startswith("image") and "contradict" in message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(AnswerFileError, match="cannot read the answer file"):
        load_answers(tmp_path / "missing.toml")


# -- writing: a commented TOML that loads back -----------------------------------------------------------

PLANS = {
    "image-file": InstallPlan(image=ImageSpec(ref="oci:/srv/os:1"),
                              target=Target(image_file=Path("/srv/os.img"), image_size=3 * GiB, overwrite=True),
                              layout=Layout(filesystem="ext4", esp_size=100 * MiB, root_size=GiB,
                                            var_min_size=256 * MiB)),
    "rules": InstallPlan(
        image=ImageSpec(ref="quay.io/x/os:latest", staged_digest="sha256:" + "a" * 64), after="reboot",
        target=Target(match=(DiskRule(transport="nvme", min_size=200 * GiB, size="largest"),
                             DiskRule(model='Odd "quoted"\\model*'), DiskRule(path="ata-X_1")),
                      serial="S1", wipe=True),
        encryption=Encryption(passphrase_file=Path("/root/pp"), tpm2=True, tpm2_pcrs=(7,),
                              recovery_key_file=Path("/root/rk")),
        boot=Boot(bootloader="grub", kernel_args=("console=ttyS0,115200", "quiet", 'x="a b\\c"')),
        system=System(root_password_hash="$6$salt$hash",
                      ssh_authorized_keys=("ssh-ed25519 AAAAC3Nza" + "x" * 60 + " a@b", "ssh-rsa AAAB c@d")),
    ),
    "device": InstallPlan(image=ImageSpec(ref="oci:/x"), target=Target(device=Path("/dev/vda")),
                          system=System(root_password_file=Path("/root/pw"))),
}


@pytest.mark.parametrize("name", PLANS)
def test_dump_loads_back_to_the_same_plan(name: str, tmp_path: Path) -> None:
    plan = PLANS[name]
    text = dump_answers(plan)
    assert parse_answers(text).plan == plan
    path = save_answers(plan, tmp_path / "answers.toml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_answers(path) == plan
    jsonschema.validate(tomllib.loads(text), json.loads((DOCS / "answers.schema.json").read_text()))


def test_a_disk_without_consent_says_so_in_the_file() -> None:
    text = dump_answers(PLANS["device"])
    assert "wipe = false" in text and "refuses to erase the disk" in text


def test_typed_secrets_are_left_out_and_named_by_file() -> None:
    plan = InstallPlan(image=ImageSpec(ref="oci:/x"), target=Target(device=Path("/dev/vda"), wipe=True),
                       encryption=Encryption(passphrase="Typed-Luks-Passphrase"),
                       system=System(root_password="Typed-Root-Password"))
    text = dump_answers(plan)
    assert "Typed-Luks-Passphrase" not in text and "Typed-Root-Password" not in text
    assert '# passphrase_file = "' in text and '# root_password_file = "' in text
    # Loading it back needs the passphrase file the comment asks for: the error says so, at [encryption].
    with pytest.raises(AnswerFileError) as info:
        parse_answers(text)
    [problem] = info.value.problems
    assert problem.key == "encryption" and "passphrase_file" in problem.message
    fixed = text.replace('# passphrase_file = "/root/passphrase"', 'passphrase_file = "/root/passphrase"')
    back = parse_answers(fixed).plan
    assert back.encryption and back.encryption.passphrase_file == Path("/root/passphrase")
    assert back.system.root_password is None


# -- schemas and examples --------------------------------------------------------------------------------

REGENERATE = ("regenerate it: nbc-tui answers schema > docs/answers.schema.json; "
              "nbc-tui answers schema --events > docs/events.schema.json")


def test_committed_answers_schema_matches_the_model() -> None:
    committed = (DOCS / "answers.schema.json").read_text()
    assert committed == schema_text(answers_json_schema()), f"docs/answers.schema.json is stale: {REGENERATE}"


def test_committed_events_schema_matches_the_models() -> None:
    committed = (DOCS / "events.schema.json").read_text()
    assert committed == schema_text(events_json_schema()), f"docs/events.schema.json is stale: {REGENERATE}"


def test_answers_schema_leaves_inline_secrets_out_and_requires_version() -> None:
    schema = answers_json_schema()
    assert "passphrase" not in schema["$defs"]["Encryption"]["properties"]
    assert "root_password" not in schema["$defs"]["System"]["properties"]
    assert "version" in schema["required"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({"version": 1, "image": {"ref": "x"}, "target": {"device": "/dev/x"},
                                   "encryption": {"passphrase": "x"}})


EXAMPLES = sorted((DOCS / "examples").glob("*.toml"))


def test_there_is_an_example_per_common_case() -> None:
    assert {p.stem for p in EXAMPLES} >= {"image-file", "disk-by-serial", "largest-nvme", "encrypted-tpm2",
                                          "offline-staged"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_and_fits_the_schema(path: Path) -> None:
    plan = load_answers(path)
    assert plan.version == 1
    jsonschema.validate(tomllib.loads(path.read_text()), json.loads((DOCS / "answers.schema.json").read_text()))
    assert parse_answers(dump_answers(plan)).plan == plan


def test_events_validate_against_the_committed_schema() -> None:
    schema = json.loads((DOCS / "events.schema.json").read_text())
    events = [StepEvent(step=1, total_steps=2, step_name="x"), progress_event("Extracting", 5, 10, 1.5),
              MessageEvent(message="m"), ErrorEvent(message="e", details={"error": "x"}),
              CompleteEvent(message="done")]
    for event in events:
        jsonschema.validate(json.loads(event.model_dump_json(exclude_none=True)), schema)
    bad = json.loads(StepEvent(step=1, total_steps=2, step_name="x").model_dump_json(exclude_none=True))
    del bad["step_name"]
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)


# -- the kernel command line -----------------------------------------------------------------------------

@pytest.mark.parametrize(("cmdline", "value"), [
    ("BOOT_IMAGE=/vmlinuz quiet", None),
    ("quiet nbc.answers=/run/a.toml splash", "/run/a.toml"),
    ('nbc.answers="LABEL=MY STICK:/nbc/a.toml" ro', "LABEL=MY STICK:/nbc/a.toml"),
    ("nbc.answers=/first nbc.answers=LABEL=X:/second", "LABEL=X:/second"),
    ('unbalanced "quote nbc.answers=/a', "/a"),
])
def test_cmdline_answers_value(cmdline: str, value: str | None) -> None:
    assert cmdline_answers_value(cmdline) == value


def _key_paths(data: object, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(data, dict):
        for key, value in data.items():
            out.append((*prefix, key))
            out += _key_paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += _key_paths(value, (*prefix, index))
    return out


@pytest.mark.parametrize("text", [*(p.read_text() for p in EXAMPLES), *(dump_answers(p) for p in PLANS.values())],
                         ids=[*(p.name for p in EXAMPLES), *PLANS])
def test_locator_finds_the_line_of_every_key(text: str) -> None:
    lines = locate_toml(text)
    source = text.splitlines()
    for path in _key_paths(tomllib.loads(text)):
        assert path in lines, path
        assert str(path[-1]) in source[lines[path] - 1], (path, source[lines[path] - 1])


@pytest.mark.parametrize(("message", "reached", "loc"), [
    ("the image oci:/x has no kernel", True, ("image", "ref")),
    ("the image needs about 2.0 GB but a root slot is 1.0 GB", True, ("layout", "root_size")),
    ("not enough free space in /tmp for the image file (about 2.0 GB needed, 1.0 GB free)", True,
     ("target", "image_file")),
    ("image file /tmp/x.img already exists", False, ("target", "image_file")),
    ("/dev/sdz has serial A, but the plan is pinned to serial B: nothing was written", True, ("target", "serial")),
    ("TPM2 unlock was asked for, but this machine has no TPM", False, ("encryption", "tpm2")),
    ("encryption needs device-mapper with dm-crypt: no", False, ("encryption",)),
    ("blob sha256:abc does not match its digest", True, ("image", "ref")),
    ("image not found in cache", True, ("image", "staged_digest")),
    ("missing tools: sgdisk", False, ()),
])
def test_engine_errors_are_keyed_by_what_they_say(message: str, reached: bool, loc: tuple) -> None:
    assert preflight_loc(message, image_reached=reached) == loc


def test_every_key_of_the_schema_is_described() -> None:
    schema = answers_json_schema()
    for name, definition in [("InstallPlan", schema), *schema["$defs"].items()]:
        assert definition.get("description"), name
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key}"


def test_validate_stopped_by_its_user_is_interrupted_not_a_problem_of_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM during the engine's checks is exit 130, not "image.ref: Interrupted" and exit 2."""
    from nbc_tui.backend.answers.check import check_answers
    from nbc_tui.backend.answers.load import read_answers
    from nbc_tui.backend.errors import Cancelled
    from nbc_tui.backend.operations import install
    from nbc_tui.backend.runner import RunContext

    def stopped(*_args: object, **_kwargs: object) -> None:
        raise Cancelled("Interrupted")

    monkeypatch.setattr(install, "run_install", stopped)
    answers = tmp_path / "a.toml"
    answers.write_text(f'version = 1\n[image]\nref = "oci:{tmp_path}/layout"\n[target]\nimage_file = '
                       f'"{tmp_path}/os.img"\n')
    with pytest.raises(Cancelled):
        check_answers(read_answers(answers), ctx=RunContext())


def test_a_local_image_beside_the_answer_file_is_found_from_anywhere(tmp_path: Path) -> None:
    """oci:layout is the answer file's neighbour (on an answers stick mounted at a random place), and a saved
    file names it absolutely, as its other paths."""
    answers = tmp_path / "stick" / "answers.toml"
    answers.parent.mkdir()
    answers.write_text('version = 1\n[image]\nref = "oci:layout:latest"\n[target]\nimage_file = "os.img"\n')
    plan = load_answers(answers)
    assert plan.image.ref == f"oci:{tmp_path}/stick/layout:latest"
    for ref, base, expected in (("oci:./layout", "/a", "oci:/a/layout"), ("oci-archive:os.tar:v2", "/a",
                                                                          "oci-archive:/a/os.tar:v2"),
                                ("oci:/abs/layout", "/a", "oci:/abs/layout"), ("quay.io/org/os:1", "/a",
                                                                               "quay.io/org/os:1"),
                                ("oci:dir:with/slash", "/a", "oci:/a/dir:with/slash")):
        assert absolute_local_ref(ref, Path(base)) == expected
    saved = tmp_path / "saved.toml"
    save_answers(plan, saved)
    assert f'ref = "oci:{tmp_path}/stick/layout:latest"' in saved.read_text()
