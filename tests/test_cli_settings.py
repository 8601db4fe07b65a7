"""The settings dataclasses are the one source of the command line's options, defaults and checks."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from skipit.empirical.settings import (
    CertifySettings,
    EvaluateSettings,
    SettingError,
    SkipSettings,
    flag_of,
    settings_from_args,
)

COMMANDS = {"certify": CertifySettings, "evaluate": EvaluateSettings, "skip": SkipSettings}


def _parser(command):
    import importlib

    parser = argparse.ArgumentParser()
    importlib.import_module(f"skipit.commands.{command}").add_parser(parser.add_subparsers(dest="command"))
    return parser


def _options(parser, command):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {opt: action for action in sub._actions for opt in action.option_strings}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_cli_default_is_its_settings_field_default(command):
    """For every command-line field of the command's settings class, the option exists under the
    field's flag and its default (in the option's unit) equals the field's default: a default
    re-typed in the CLI that drifts (``--checkpoint-every`` 8 against 4) fails here."""
    cls = COMMANDS[command]
    options = _options(_parser(command), command)
    checked = 0
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        action = options[flag_of(f.name)]
        if f.metadata.get("required"):
            assert action.required, f.name
            continue
        scale = f.metadata.get("scale") or 1
        want = f.default if f.default is None else (
            list(f.default) if isinstance(f.default, tuple) else
            f.default if isinstance(f.default, (bool, str)) else f.default * scale)
        assert action.default == want, f"{flag_of(f.name)}: CLI default {action.default!r}, field default {want!r}"
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_parsing_no_options_gives_the_default_settings(command):
    """``settings_from_args`` of an empty command line is the dataclass's defaults (required options given)."""
    cls = COMMANDS[command]
    argv = [command] + (["--mode", "late-entry"] if command == "skip" else [])
    args = _parser(command).parse_args(argv)
    assert settings_from_args(cls, args) == cls()


def test_a_bad_setting_names_the_parameter_in_the_library_and_the_flag_on_the_command_line():
    with pytest.raises(SettingError, match=r"^`order_examples` must be in the integers >= 1, got 0$") as err:
        CertifySettings(order_examples=0)
    assert err.value.render(flag_of) == "--order-samples must be in the integers >= 1, got 0"
    assert isinstance(err.value, ValueError)


def test_points_on_the_command_line_are_a_fraction_in_the_settings():
    args = _parser("evaluate").parse_args(["evaluate", "--tolerance", "2.5"])
    assert settings_from_args(EvaluateSettings, args).tolerance == pytest.approx(0.025)
    args = _parser("evaluate").parse_args(["evaluate", "--tolerance", "150"])
    with pytest.raises(SettingError) as err:
        settings_from_args(EvaluateSettings, args)
    assert err.value.render(flag_of) == "--tolerance must be in [0, 100] (points), got 150"


def test_a_switch_renders_as_its_no_flag():
    err = SettingError("add examples or set {verify=False}")
    assert str(err) == "add examples or set `verify=False`"
    assert err.render(flag_of) == "add examples or set --no-verify"


def test_cli_prints_a_setting_error_with_the_flag(capsys):
    from skipit.cli import main

    assert main(["certify", "--checkpoint-every", "0"]) == 2
    assert capsys.readouterr().err.strip() == ("skipit certify: error: --checkpoint-every must be in the integers >= 1, "
                                               "got 0")
