"""Configuration: the seed's variables, validated at start, secrets never shown."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_engine.app.runtime.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Settings read the process environment and ./.env: isolate both.
    monkeypatch.chdir(tmp_path)
    for name in (
        "SYMBOLS",
        "OHLCV_TIMEFRAMES",
        "MAX_POSITION_SIZE",
        "DATABASE_URL",
        "API_SECRET",
        "MA_FAST_WINDOW",
        "MA_SLOW_WINDOW",
        "LOG_LEVEL",
        "ENABLE_STRATEGY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings()
    assert settings.DATABASE_URL.startswith("sqlite:///")
    assert settings.SYMBOLS == ["BTC_JPY"]
    assert Decimal("0.05") == settings.MAX_POSITION_SIZE


def test_lists_and_types_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOLS", "BTC_JPY, ETH_JPY")
    monkeypatch.setenv("OHLCV_TIMEFRAMES", "1s,1m,5m,15m,1h")
    monkeypatch.setenv("ENABLE_STRATEGY", "false")
    settings = load_settings()
    assert settings.SYMBOLS == ["BTC_JPY", "ETH_JPY"]
    assert settings.OHLCV_TIMEFRAMES == ["1s", "1m", "5m", "15m", "1h"]
    assert settings.ENABLE_STRATEGY is False


def test_dotenv_file_is_read(tmp_path) -> None:
    (tmp_path / ".env").write_text("MAX_POSITION_SIZE=0.2\nSYMBOLS=ETH_JPY\n")
    settings = load_settings()
    assert Decimal("0.2") == settings.MAX_POSITION_SIZE
    assert settings.SYMBOLS == ["ETH_JPY"]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("MAX_POSITION_SIZE", "-1", "MAX_POSITION_SIZE: Input should be greater than 0"),
        ("MAX_POSITION_SIZE", "lots", "MAX_POSITION_SIZE"),
        ("SYMBOLS", "btc_jpy", "SYMBOLS: expected upper-case letters and digits"),
        ("SYMBOLS", "BTC_JPY,ETH JPY", "e.g. BTC, BTC_JPY, BTC/USDT:USDT, GOOG, EURUSD_1H (got"),
        ("OHLCV_TIMEFRAMES", "1m,1M", "OHLCV_TIMEFRAMES: 1M is calendar months, for bar files"),
        ("STRATEGY_TIMEFRAME", "1M", "STRATEGY_TIMEFRAME: 1M is calendar months"),
        ("OHLCV_TIMEFRAMES", "1m,7x", "OHLCV_TIMEFRAMES"),
        ("OHLCV_TIMEFRAMES", "1m,3m,5m", "OHLCV_TIMEFRAMES: each timeframe must divide the next"),
        ("CLOCK_SKEW_TOLERANCE_SECONDS", "5", "CLOCK_SKEW_TOLERANCE_SECONDS"),
        ("MAX_SIGNAL_AGE_SECONDS", "-3", "MAX_SIGNAL_AGE_SECONDS"),
        ("BAR_CLOSE_GRACE_SECONDS", "-1", "BAR_CLOSE_GRACE_SECONDS"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("MA_FAST_WINDOW", "30", "MA_FAST_WINDOW must be smaller than MA_SLOW_WINDOW"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert expected in str(refused.value)


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_SECRET", "s3cr3t-value")
    monkeypatch.setenv("MAX_POSITION_SIZE", "-1")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "s3cr3t-value" not in str(refused.value)
    monkeypatch.setenv("MAX_POSITION_SIZE", "1")
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings)
    assert settings.API_SECRET.get_secret_value() == "s3cr3t-value"
