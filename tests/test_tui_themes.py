"""Themes: the bundled YAML files, broken files reported (not fatal), runtime switching."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.color import Color
from tui_support import SIZE, make_app, make_core, screen_text, settle

from hvtui.errors import ConfigError
from hvtui.model import Severity
from hvtui.tui.themes import (
    SEVERITY_VARIABLES,
    bundled_theme_dirs,
    load_theme_file,
    load_themes,
)


def test_bundled_themes_load_and_define_the_severity_roles(repo_root: Path) -> None:
    dirs = bundled_theme_dirs()
    assert dirs == [repo_root / "themes"]
    result = load_themes(dirs)
    assert result.errors == []
    assert {"hvtui-dark", "hvtui-light", "hvtui-high-contrast"} <= set(result.themes)
    assert result.themes["hvtui-light"].dark is False
    for theme in result.themes.values():
        for variable in SEVERITY_VARIABLES:
            Color.parse(theme.variables[variable])  # every role is a real colour
    contrast = result.themes["hvtui-high-contrast"]
    assert Color.parse(contrast.background).brightness < 0.05 and Color.parse(contrast.foreground).brightness > 0.95


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: x\nprimary: '#112233'\nbackgroud: '#000000'\n", "line 3: key 'backgroud': unknown key (did you mean 'background'?)"),
        ("name: x\nprimary: notacolour\n", "line 2: key 'primary': expected a colour"),
        ("name: x\nprimary: '#112233'\nvariables:\n  sev-crit: 12\n", "line 4: key 'variables.sev-crit': expected a colour"),
        ("name: x\nprimary: '#112233'\ndark: maybe\n", "line 3: key 'dark': expected true or false"),
        # Textual's own variables are checked as the stylesheet will use them (a bad one used
        # to load fine and stop the console when switched to).
        (
            "name: x\nprimary: '#112233'\nvariables:\n  block-cursor-background: bogus colour\n",
            "line 4: key 'variables.block-cursor-background': expected a colour such as \"#4f9dde\", found 'bogus colour'",
        ),
        (
            "name: x\nprimary: '#112233'\nvariables:\n  link-style: blinky\n",
            "line 4: key 'variables.link-style': expected a text style",
        ),
        (
            "name: x\nprimary: '#112233'\nvariables:\n  sev-critical: '#ff0000'\n",
            "line 4: key 'variables.sev-critical': unknown variable (did you mean 'sev-crit'?)",
        ),
        ("primary: '#112233'\n", "key 'name': expected a non-empty theme name"),
        ("name: x\n", "key 'primary': missing"),
        ("name: [x\nprimary: 1\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_broken_theme_files_give_specific_errors(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_theme_file(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_user_themes_override_and_broken_ones_do_not_stop_the_rest(tmp_path: Path, repo_root: Path) -> None:
    user = tmp_path / "themes"
    user.mkdir()
    (user / "mine.yml").write_text("name: mine\nprimary: '#ff8800'\nvariables:\n  sev-crit: '#123456'\n")
    (user / "dark-again.yaml").write_text("name: hvtui-dark\nprimary: '#00ff00'\n")
    (user / "broken.yaml").write_text("name: broken\nprimary: nope\n")
    (user / "notes.txt").write_text("not a theme")
    result = load_themes([repo_root / "themes", user])
    assert "mine" in result.themes and result.themes["mine"].variables["sev-crit"] == "#123456"
    assert result.themes["hvtui-dark"].primary == "#00ff00"  # the user's file wins
    assert result.sources["hvtui-dark"] == user / "dark-again.yaml"
    assert len(result.errors) == 1 and "broken.yaml" in result.errors[0]
    assert "broken" not in result.themes


async def test_broken_user_theme_is_reported_in_the_console(shared_demo_lab: Path, paths, caplog) -> None:
    paths.user_themes_dir.mkdir(parents=True)
    (paths.user_themes_dir / "oops.yaml").write_text("name: oops\nprimary: '#123456'\ncolour: red\n")
    (paths.user_themes_dir / "ok.yaml").write_text("name: site-theme\nprimary: '#884400'\n")
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        text = screen_text(app)
        # The toast wraps the long path: look for its parts.
        assert "Theme problem" in text and "line 3: key 'colour': unknown key" in text
        assert any("oops.yaml" in message for message in app.theme_errors)
        assert app.theme == "hvtui-dark"
        assert "site-theme" in app.available_themes
        assert app.snapshot is not None and app.snapshot.rows  # the console works regardless
    assert any("oops.yaml" in record.getMessage() and record.levelname == "WARNING" for record in caplog.records)


def test_textual_variables_that_parse_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: x\nprimary: '#112233'\nvariables:\n  block-cursor-background: '#223344'\n"
        "  link-color: auto 80%\n  link-style-hover: bold not underline\n  footer-key-foreground: red\n"
    )
    theme = load_theme_file(path)
    assert theme.variables["block-cursor-background"] == "#223344"
    assert theme.variables["link-style-hover"] == "bold not underline"


async def test_a_theme_with_a_bad_textual_variable_never_reaches_the_console(shared_demo_lab: Path, paths) -> None:
    paths.user_themes_dir.mkdir(parents=True)
    (paths.user_themes_dir / "sneaky.yaml").write_text(
        "name: sneaky\nprimary: '#4f9dde'\nvariables:\n  block-cursor-background: bogus colour\n"
    )
    app = make_app(make_core(shared_demo_lab, paths))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert "sneaky" not in app.available_themes
        assert any("sneaky.yaml" in message and "block-cursor-background" in message for message in app.theme_errors)
        await pilot.press("colon", *"theme", "space", *"sneaky", "enter")
        await settle(pilot)
        assert app.is_running and app.theme == "hvtui-dark"
        assert "no theme 'sneaky'" in screen_text(app)


async def test_theme_switches_at_runtime_and_recolours_severities(shared_demo_lab: Path, paths) -> None:
    core = make_core(shared_demo_lab, paths)
    core.theme = "hvtui-high-contrast"  # --theme / the config key
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert app.theme == "hvtui-high-contrast"
        crit_key = next(key for key, row in app.snapshot.rows.items() if row.health == Severity.CRIT)
        high_contrast_crit = app.snapshot.rows[crit_key].texts[0].style.color

        await pilot.press("colon", *"theme", "space", *"hvtui-light", "enter")
        await settle(pilot)
        assert app.theme == "hvtui-light"
        light_crit = app.snapshot.rows[crit_key].texts[0].style.color
        assert light_crit != high_contrast_crit
        assert light_crit.triplet.hex.lower() == app.available_themes["hvtui-light"].variables["sev-crit"].lower()
        table = app.screen.table
        assert table.get_cell(crit_key, "health").style.color == light_crit  # the table shows it

        await pilot.press("ctrl+t")  # cycles to the next hvtui theme
        await settle(pilot)
        assert app.theme != "hvtui-light" and app.theme in app.hvtui_themes

        # A built-in Textual theme lacks hvtui's variables: the defaults fill them in.
        app.switch_theme("textual-light")
        await settle(pilot)
        assert app.theme == "textual-light"
        assert app.theme_variables["sev-crit"]
        assert "CRIT" in screen_text(app)

        assert app.switch_theme("no-such-theme") is False
        await settle(pilot)
        assert app.theme == "textual-light"
        assert "no theme 'no-such-theme'" in screen_text(app)


async def test_unknown_configured_theme_falls_back(shared_demo_lab: Path, paths) -> None:
    core = make_core(shared_demo_lab, paths)
    core.theme = "does-not-exist"
    app = make_app(core)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        assert app.theme == "hvtui-dark"
        assert "does-not-exist" in screen_text(app)
