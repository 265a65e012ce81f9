"""`ops/.env.example` documents every setting, and its values are valid as written."""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

from trading_engine.app.runtime.config import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "ops" / ".env.example"


def test_every_setting_is_in_the_example_and_nothing_else() -> None:
    values = dotenv_values(EXAMPLE)
    assert set(values) == set(Settings.model_fields)


def test_the_example_values_load_and_equal_the_defaults() -> None:
    # As written, empty values included: an operator copies the file and changes a few lines.
    values = {k: v for k, v in dotenv_values(EXAMPLE).items() if v is not None}
    from_example = load_settings(**values)
    for name, field in Settings.model_fields.items():
        if name in values and name not in ("API_KEY", "API_SECRET"):
            assert getattr(from_example, name) == field.default, name
