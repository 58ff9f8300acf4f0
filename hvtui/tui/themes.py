"""Console themes: YAML files mapped onto Textual's ``Theme``.

Where themes come from, later ones overriding earlier ones of the same name:

1. the bundled themes: ``themes/`` at the top of a checkout or editable install, or
   ``<prefix>/share/hvtui/themes`` where a wheel installs them (``data-files`` in
   ``pyproject.toml``);
2. the user theme directory (``Paths.user_themes_dir``, e.g. ``~/.config/hvtui/themes``).

A theme file looks like this (every colour key but ``primary`` is optional)::

    name: hvtui-dark
    dark: true
    primary: "#4f9dde"
    background: "#101418"
    variables:            # hvtui's severity roles and Textual's variables (checked like CSS)
      sev-crit: "#ff5f5f"
      sev-warn: "#ffb454"
      sev-ok: "#6fcf6f"
      sev-muted: "#7a8590"

A broken file never stops the console: ``load_themes`` returns the themes that loaded
and one clear message per file that did not (file, line, key, expected, found).
"""

from __future__ import annotations

import difflib
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from textual.color import Color, ColorParseError
from textual.css.stylesheet import Stylesheet
from textual.theme import Theme

from hvtui.errors import ConfigError
from hvtui.paths import bundled_theme_dirs as bundled_theme_dirs  # one implementation, shared with `hvtui info`

log = logging.getLogger(__name__)

DEFAULT_THEME = "hvtui-dark"

# Custom variables every stylesheet and cell style of hvtui may use.  Each has a default
# derived from the theme's own colour system, so built-in Textual themes work too.
SEVERITY_VARIABLES = ("sev-crit", "sev-warn", "sev-ok", "sev-muted")

COLOUR_KEYS = (
    "primary",
    "secondary",
    "accent",
    "warning",
    "error",
    "success",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
THEME_KEYS = ("name", "dark", *COLOUR_KEYS, "variables", "luminosity_spread", "text_alpha", "description")


@dataclass
class ThemeLoadResult:
    themes: dict[str, Theme] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)  # theme name -> file it came from
    errors: list[str] = field(default_factory=list)




def theme_variable_defaults(theme: Theme) -> dict[str, str]:
    """Values for hvtui's custom variables from a theme's own colour system."""
    system = theme.to_color_system().generate()
    try:
        # Halfway between text and background: readable, clearly secondary, on dark and light.
        muted = Color.parse(system["foreground"]).blend(Color.parse(system["background"]), 0.45).hex
    except (ColorParseError, KeyError):  # ANSI themes use the terminal's own colours
        muted = system.get("foreground", "ansi_default")
    return {
        "sev-crit": system["error"],
        "sev-warn": system["warning"],
        "sev-ok": system["success"],
        "sev-muted": muted,
    }


def _line_of(node: yaml.Node | None, key: str) -> int | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, _value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node.start_mark.line + 1
    return None


def _fail(path: Path, line: int | None, key: str | None, message: str) -> ConfigError:
    where = f"{path}" + (f", line {line}" if line else "")
    what = f"key {key!r}: " if key else ""
    return ConfigError(f"theme file {where}: {what}{message}")


def _colour(path: Path, node: yaml.Node | None, key: str, value: Any, line: int | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(path, line or _line_of(node, key), key, f"expected a colour such as \"#4f9dde\", found {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise _fail(path, line or _line_of(node, key), key, f"expected a colour such as \"#4f9dde\", found {value!r}") from None
    return value


@functools.cache
def known_variables() -> frozenset[str]:
    """Every variable a theme may set: Textual's (as its colour system generates them) and hvtui's."""
    generated = Theme(name="probe", primary="#4f9dde").to_color_system().generate()
    return frozenset(generated) | frozenset(SEVERITY_VARIABLES)


def _css_value_problem(name: str, value: str) -> str | None:
    """Why Textual's CSS parser refuses ``value`` for variable ``name``, or None.

    Textual's variables are colours (``#4f9dde``, ``red``, ``auto 87%``) except the
    ``*-style*`` ones, which are text styles (``bold``, ``b reverse``, ``none``).
    """
    is_style = "style" in name.split("-")
    prop = "text-style" if is_style else "color"
    sheet = Stylesheet()
    sheet.add_source(f"Widget {{ {prop}: {value}; }}", read_from=("theme", name))
    try:
        sheet.parse()
    except Exception:  # StylesheetParseError and friends: one line is what the user needs
        expected = "a text style such as \"bold\" or \"none\"" if is_style else "a colour such as \"#4f9dde\""
        return f"expected {expected}, found {value!r}"
    return None


def load_theme_file(path: Path) -> Theme:
    """Parse one theme file; raise ``ConfigError`` naming the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _fail(path, None, None, f"cannot be read: {err}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise _fail(path, line, None, f"not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise _fail(path, 1, None, f"expected a mapping of theme keys, found {type(data).__name__}")

    for key in data:
        if key not in THEME_KEYS:
            close = difflib.get_close_matches(str(key), THEME_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(path, _line_of(node, str(key)), str(key), f"unknown key{hint}; expected one of {', '.join(THEME_KEYS)}")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(path, _line_of(node, "name"), "name", f"expected a non-empty theme name, found {name!r}")
    if "primary" not in data:
        raise _fail(path, None, "primary", "missing; every theme needs a primary colour")
    colours = {key: _colour(path, node, key, data[key]) for key in COLOUR_KEYS if data.get(key) is not None}

    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise _fail(path, _line_of(node, "dark"), "dark", f"expected true or false, found {dark!r}")

    variables_raw = data.get("variables") or {}
    if not isinstance(variables_raw, dict):
        raise _fail(path, _line_of(node, "variables"), "variables", f"expected a mapping, found {variables_raw!r}")
    variables: dict[str, str] = {}
    variables_node = None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if getattr(key_node, "value", None) == "variables":
                variables_node = value_node
    known = known_variables()
    for var_name, value in variables_raw.items():
        line = _line_of(variables_node, str(var_name))
        key = f"variables.{var_name}"
        if var_name in SEVERITY_VARIABLES:
            variables[str(var_name)] = _colour(path, variables_node, key, value, line)
            continue
        if var_name not in known:
            close = difflib.get_close_matches(str(var_name), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(path, line, key, f"unknown variable{hint}; the variables are Textual's and {', '.join(SEVERITY_VARIABLES)}")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise _fail(path, line, key, f"expected a value such as a colour, found {value!r}")
        # Checked as the stylesheet will use it: a bad value would otherwise stop the console
        # when the theme is switched to (the stylesheet is rebuilt then, not now).
        problem = _css_value_problem(str(var_name), str(value))
        if problem is not None:
            raise _fail(path, line, key, problem)
        variables[str(var_name)] = str(value)

    extras: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise _fail(path, _line_of(node, key), key, f"expected a number from 0 to 1, found {value!r}")
            extras[key] = float(value)

    theme = Theme(name=name.strip(), dark=dark, variables=variables, **colours, **extras)
    try:
        theme.to_color_system().generate()  # the colour system must build, or the app would fail later
    except Exception as err:  # a bad combination the per-key checks did not catch
        raise _fail(path, None, None, f"colours do not form a theme: {err}") from None
    return theme


def theme_files(directory: Path) -> list[Path]:
    """Theme files in a directory, ``.yaml`` and ``.yml``, in name order."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())


def load_themes(directories: list[Path]) -> ThemeLoadResult:
    """Load every theme file in ``directories`` (later directories override earlier)."""
    result = ThemeLoadResult()
    for directory in directories:
        try:
            files = theme_files(directory)
        except OSError as err:
            result.errors.append(f"theme directory {directory}: cannot be listed: {err}")
            continue
        for path in files:
            try:
                theme = load_theme_file(path)
            except ConfigError as err:
                log.warning("%s", err)
                result.errors.append(str(err))
                continue
            result.themes[theme.name] = theme
            result.sources[theme.name] = path
    return result
