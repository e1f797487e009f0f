"""Config: validation on construction, from_env, URL redaction. Pure, no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from aiocelery import AioCeleryError, AMQPConfig, Config, ConfigError
from aiocelery.config import redact_url


def test_defaults_are_valid_and_documented() -> None:
    config = Config()
    assert config.broker == "redis://127.0.0.1:6379/0"
    assert config.result_backend is None and config.backend_url == config.broker
    assert config.default_queue == "aiocelery"
    assert config.result_ttl_s == 86_400.0
    assert not config.is_memory
    assert config.amqp == AMQPConfig()
    assert (config.amqp.exchange, config.amqp.exchange_type, config.amqp.binding_key, config.amqp.prefetch_count) == (
        "aiocelery_exchange", "direct", "aiocelery_task", 1)
    for f in dataclasses.fields(Config):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name


def test_config_is_frozen_and_replace_validates() -> None:
    config = Config(broker="memory://")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.broker = "redis://x"  # type: ignore[misc]
    changed = config.replace(default_queue="emails", max_crashes=5)
    assert (changed.default_queue, changed.max_crashes, changed.broker) == ("emails", 5, "memory://")
    assert config.default_queue == "aiocelery"
    with pytest.raises(ConfigError):
        config.replace(max_crashes=0)


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h/0", "unix:///tmp/redis.sock", "memory://"])
def test_accepted_broker_schemes(url: str) -> None:
    assert Config(broker=url).broker == url


@pytest.mark.parametrize("url", ["http://h:6379/0", "amqp://guest@h//", "h:6379", "", "redis+sentinel://h/0"])
def test_bad_broker_scheme(url: str) -> None:
    with pytest.raises(ConfigError, match="broker") as info:
        Config(broker=url)
    assert isinstance(info.value, ValueError) and isinstance(info.value, AioCeleryError)
    assert "redis://" in str(info.value)  # says what would work


def test_bad_result_backend_scheme() -> None:
    with pytest.raises(ConfigError, match="result_backend"):
        Config(broker="redis://h/0", result_backend="postgres://h/db")


@pytest.mark.parametrize(
    ("broker", "backend"),
    [("memory://", "redis://h:6379/0"), ("redis://h:6379/0", "memory://"),
     ("redis://h:6379/0", "redis://h:6379/1"), ("redis://a:6379/0", "redis://b:6379/0")],
)
def test_result_backend_must_match_the_broker(broker: str, backend: str) -> None:
    with pytest.raises(ConfigError, match=r"result_backend|both"):
        Config(broker=broker, result_backend=backend)


def test_result_backend_may_repeat_the_broker() -> None:
    assert Config(broker="redis://h:6379/0", result_backend="redis://h:6379/0").backend_url == "redis://h:6379/0"
    assert Config(broker="memory://", result_backend="memory://").is_memory


def test_mismatch_error_hides_passwords() -> None:
    with pytest.raises(ConfigError) as info:
        Config(broker="memory://", result_backend="redis://:topsecret@h:6379/0")
    assert "topsecret" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        Config(broker="http://:topsecret@h:6379/0")
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize("field", ["result_ttl_s", "send_timeout_s", "shutdown_grace_s", "fetch_block_s"])
@pytest.mark.parametrize("value", [0, -1, -0.5])
def test_durations_must_be_positive(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["max_payload_bytes", "max_crashes", "max_connections"])
@pytest.mark.parametrize("value", [0, -3])
def test_counts_must_be_at_least_one(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})  # type: ignore[arg-type]
    assert getattr(Config(**{field: 1}), field) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("queue", ["", "a:b", "{q}", "has space", "x}"])
def test_bad_default_queue(queue: str) -> None:
    with pytest.raises(ConfigError, match="default_queue"):
        Config(default_queue=queue)


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_bad_key_prefix(prefix: str) -> None:
    with pytest.raises(ConfigError, match="key_prefix"):
        Config(key_prefix=prefix)


def test_from_env_reads_prefixed_variables_with_types() -> None:
    env = {
        "AIOCELERY_BROKER": "memory://",
        "AIOCELERY_DEFAULT_QUEUE": "emails",
        "AIOCELERY_RESULT_TTL_S": "2.5",
        "AIOCELERY_MAX_CRASHES": "7",
        "AIOCELERY_SEND_TIMEOUT_S": "3",
        "AIOCELERY_AMQP": "ignored",
        "OTHER_BROKER": "redis://ignored/0",
    }
    config = Config.from_env(env)
    assert config.broker == "memory://"
    assert config.default_queue == "emails"
    assert config.result_ttl_s == 2.5 and isinstance(config.result_ttl_s, float)
    assert config.max_crashes == 7 and isinstance(config.max_crashes, int)
    assert config.send_timeout_s == 3.0
    assert config.amqp == AMQPConfig()
    assert config.key_prefix == "aiocelery"  # untouched fields keep their defaults


def test_from_env_with_a_custom_prefix_and_empty_backend() -> None:
    config = Config.from_env({"APP_BROKER": "redis://h:1/0", "APP_RESULT_BACKEND": ""}, prefix="APP_")
    assert config.broker == "redis://h:1/0"
    assert config.result_backend is None


def test_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOCELERY_BROKER", "memory://")
    monkeypatch.setenv("AIOCELERY_KEY_PREFIX", "fromenv")
    config = Config.from_env()
    assert (config.broker, config.key_prefix) == ("memory://", "fromenv")


@pytest.mark.parametrize(("name", "raw"), [("MAX_CRASHES", "three"), ("MAX_CRASHES", "1.5"), ("RESULT_TTL_S", "1d")])
def test_from_env_bad_numbers(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name.lower()) as info:
        Config.from_env({"AIOCELERY_" + name: raw})
    assert raw in str(info.value)


def test_from_env_still_validates() -> None:
    with pytest.raises(ConfigError, match="max_crashes"):
        Config.from_env({"AIOCELERY_MAX_CRASHES": "0"})
    with pytest.raises(ConfigError, match="broker"):
        Config.from_env({"AIOCELERY_BROKER": "http://h/"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:secret@h:6379/2", "redis://user:***@h:6379/2"),
        ("rediss://user:p%40ss@h/0", "rediss://user:***@h/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("memory://", "memory://"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_keeps_ipv6_brackets() -> None:
    assert redact_url("redis://:secret@[::1]:6379/0") == "redis://:***@[::1]:6379/0"


def test_config_repr_hides_the_password() -> None:
    assert "secret" not in repr(Config(broker="redis://:secret@h:6379/0"))
