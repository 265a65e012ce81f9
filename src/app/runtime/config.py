"""Configuration: the seed's environment variables, same names and meanings.

Read from the environment or a `.env` file and validated at start; a bad value stops the
engine with a message naming the variable. Secrets are `SecretStr`, so they never print.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trading_engine.domain.bars import nested
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.values import Exchange, Symbol, Timeframe

DEFAULT_DATABASE_URL = "sqlite:///data/trading-engine.sqlite3"
_SECRETS = frozenset({"API_KEY", "API_SECRET"})


class ConfigError(Exception):
    """The configuration cannot run the engine; the message names each bad variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    REDIS_URL: str = "redis://localhost:6379/0"
    DATABASE_URL: str = DEFAULT_DATABASE_URL
    SYMBOLS: Annotated[list[str], NoDecode] = ["BTC_JPY"]
    STRATEGY_NAME: str = "moving_average_cross"
    ENABLE_STRATEGY: bool = True
    ENABLE_EXECUTION: bool = True
    # /livez, /readyz, /metrics on this port while `run` runs (None: no endpoint).
    HEALTH_PORT: int | None = Field(default=None, ge=0, le=65535)
    HEALTH_HOST: str = "127.0.0.1"
    # Orders to the simulated exchange, filled against the live market data, not to the API.
    PAPER_TRADING: bool = False
    # Keep the orders / executions / positions tables current from the event log (`run`).
    ENABLE_PROJECTIONS: bool = True
    PROJECTION_POLL_INTERVAL_SECONDS: float = Field(default=1.0, gt=0, le=60)
    PROJECTION_BATCH_SIZE: int = Field(default=1000, ge=1, le=100_000)  # events a transaction
    MAX_POSITION_SIZE: Decimal = Field(default=Decimal("0.05"), gt=0)
    MAX_DRAWDOWN_PCT: Decimal = Field(default=Decimal("5"), gt=0, le=100)
    MAX_CONSECUTIVE_LOSSES: int = Field(default=5, ge=1)
    EXCHANGE_NAME: str = "gmo"
    REST_BASE_URL: str = "https://api.coin.z.com"
    API_KEY: SecretStr = SecretStr("")
    API_SECRET: SecretStr = SecretStr("")
    LOG_LEVEL: str = "INFO"
    # How `run` logs to stdout: one JSON object per line, or the human text format.
    LOG_FORMAT: Literal["json", "text"] = "json"
    # The seed's DBLogger: signals, orders, fills, rejections and errors into engine_log.
    LOG_TO_DATABASE: bool = True
    # On SIGTERM, cancel the orders still open at the exchange (else they are left as they
    # are, and followed again at the next start).
    CANCEL_OPEN_ORDERS_ON_STOP: bool = False
    # Redis or PostgreSQL away: `run` waits and retries, doubling the wait up to this.
    RETRY_MAX_BACKOFF_SECONDS: float = Field(default=30.0, gt=0, le=600)
    MA_FAST_WINDOW: int = Field(default=5, ge=1)
    MA_SLOW_WINDOW: int = Field(default=20, ge=2)
    RSI_PERIOD: int = Field(default=14, ge=2)
    RSI_OVERSOLD: Decimal = Field(default=Decimal(30), ge=0, le=100)
    RSI_OVERBOUGHT: Decimal = Field(default=Decimal(70), ge=0, le=100)
    OHLCV_TIMEFRAMES: Annotated[list[str], NoDecode] = ["1s", "1m", "5m"]
    # Beyond the seed (additive): the bars the strategy decides on, shorting, Bollinger
    # parameters, and this process's stable consumer name (its pending entries are its own).
    STRATEGY_TIMEFRAME: str = "1m"
    ENABLE_SHORTING: bool = False
    BB_PERIOD: int = Field(default=20, ge=2)
    BB_STD_DEV: float = Field(default=2.0, gt=0)
    CONSUMER_NAME: str = Field(default="engine-1", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    STRATEGY_BATCH_SIZE: int = Field(default=500, ge=1, le=10_000)
    # A bar also closes when the feed's clock (the latest exchange time seen plus the wall
    # time since that trade entered its stream) passes its end plus this grace (latency
    # jitter); a trade arriving later than that is counted as late.
    BAR_CLOSE_GRACE_SECONDS: float = Field(default=2.0, ge=0, le=3600)
    # A trade stamped further ahead of this host's clock is refused (counted, logged): it
    # would drag the feed's clock, and every bar, into the future. Wider than any clock skew.
    CLOCK_SKEW_TOLERANCE_SECONDS: float = Field(default=300.0, ge=60, le=86_400)
    # A signal whose bar closed longer ago than this on the feed's clock is refused as stale,
    # never sent (live and paper). Unset: 3 lengths of the signal's bar. 0: never refused.
    MAX_SIGNAL_AGE_SECONDS: float | None = Field(default=None, ge=0)
    # Prepended to every stream name (md:trade, signal:gmo, ...): lets tests and parallel
    # paper-trading runs share one Redis without seeing each other's entries.
    STREAM_PREFIX: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]{0,64}$")
    # Execution (beyond the seed): how a signal becomes an order, and the risk window.
    ORDER_TYPE: str = Field(default="MARKET", pattern=r"^(MARKET|LIMIT)$")
    ORDER_SIZE: Decimal = Field(default=Decimal("0.01"), gt=0)
    # Equity the drawdown is measured against (quote currency) and its window in days.
    STARTING_EQUITY: Decimal = Field(default=Decimal("1000000"), gt=0)
    DRAWDOWN_WINDOW_DAYS: int = Field(default=1, ge=1, le=365)
    ORDER_POLL_INTERVAL_SECONDS: float = Field(default=1.0, gt=0, le=60)
    # "Not found" answers in a row before a live order is declared lost.
    LOST_ORDER_AFTER: int = Field(default=3, ge=1, le=100)
    REST_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=120)

    @field_validator("HEALTH_PORT", "MAX_SIGNAL_AGE_SECONDS", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """`HEALTH_PORT=` (as in ops/.env.example): no endpoint; an empty
        `MAX_SIGNAL_AGE_SECONDS=`: the default."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("SYMBOLS", "OHLCV_TIMEFRAMES", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("SYMBOLS")
    @classmethod
    def _symbols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is needed")
        return [_domain_value(Symbol, item) for item in value]

    @field_validator("OHLCV_TIMEFRAMES")
    @classmethod
    def _timeframes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one timeframe is needed")
        timeframes = [_live_timeframe(item) for item in value]
        if not nested([Timeframe(item) for item in timeframes]):
            raise ValueError(
                "each timeframe must divide the next longer one (e.g. 1s,1m,5m,15m,1h): a "
                "restart resumes every timeframe at one moment, which needs shared boundaries"
            )
        return timeframes

    @field_validator("STRATEGY_TIMEFRAME")
    @classmethod
    def _strategy_timeframe(cls, value: str) -> str:
        return _live_timeframe(value)

    @field_validator("EXCHANGE_NAME")
    @classmethod
    def _exchange(cls, value: str) -> str:
        return _domain_value(Exchange, value)

    @field_validator("LOG_LEVEL")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://", "memory://")):
            raise ValueError("expected sqlite:///PATH, postgresql://user@host:port/db or memory://")
        return value

    @field_validator("REST_BASE_URL", "REDIS_URL")
    @classmethod
    def _url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a URL with a scheme, e.g. https://host")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        if self.MA_FAST_WINDOW >= self.MA_SLOW_WINDOW:
            raise ValueError("MA_FAST_WINDOW must be smaller than MA_SLOW_WINDOW")
        if self.RSI_OVERSOLD >= self.RSI_OVERBOUGHT:
            raise ValueError("RSI_OVERSOLD must be smaller than RSI_OVERBOUGHT")
        if self.ORDER_SIZE > self.MAX_POSITION_SIZE:
            raise ValueError(
                f"ORDER_SIZE {self.ORDER_SIZE} is larger than MAX_POSITION_SIZE "
                f"{self.MAX_POSITION_SIZE}: every entry would be refused"
            )
        if self.STRATEGY_TIMEFRAME not in self.OHLCV_TIMEFRAMES:
            raise ValueError(
                f"STRATEGY_TIMEFRAME {self.STRATEGY_TIMEFRAME} must be one of OHLCV_TIMEFRAMES "
                f"({','.join(self.OHLCV_TIMEFRAMES)})"
            )
        return self


def _live_timeframe(text: str) -> str:
    """A timeframe the live engine builds bars in: fixed lengths and weeks, not months."""
    value = _domain_value(Timeframe, text)
    if Timeframe(value).is_monthly:
        raise ValueError(
            f"{value} is calendar months, for bar files (backtest --data) only: live bars are "
            "built in s, m, h, d or w (1M is a month, 1m a minute)"
        )
    return value


def _domain_value(kind: type, text: str) -> str:
    try:
        return str(kind(text))
    except InvalidValue as error:
        raise ValueError(error.reason) from None


def load_settings(**overrides: object) -> Settings:
    """Settings from environment / `.env`, or a `ConfigError` naming every bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            variable = ".".join(str(part) for part in item["loc"]) or "configuration"
            message = item["msg"].removeprefix("Value error, ")
            shown = "" if variable in _SECRETS or not item["loc"] else f" (got {item['input']!r})"
            problems.append(f"  {variable}: {message}{shown}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None
