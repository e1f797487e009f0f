"""Config: validation on construction, from_env, URL parsing into Targets, TLS settings, URL
redaction. No network; TLS files are made in a temporary directory with the openssl CLI."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from aiocelery import AioCeleryError, AMQPConfig, Config, ConfigError
from aiocelery._redis.connection import Target
from aiocelery._redis.tls import TLSOptions
from aiocelery.config import redact_url

from .tls_certs import TLSFiles, make_tls_files


def test_defaults_are_valid_and_documented() -> None:
    config = Config()
    assert config.broker == "redis://127.0.0.1:6379/0"
    assert config.result_backend is None and config.backend_url == config.broker
    assert config.default_queue == "aiocelery"
    assert config.result_ttl_s == 86_400.0
    assert not config.is_memory
    assert config.amqp == AMQPConfig()
    assert (config.amqp.exchange, config.amqp.exchange_type, config.amqp.binding_key, config.amqp.prefetch_count) == (
        "aiocelery_exchange", "direct", "aiocelery_task", 0)
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


@pytest.mark.parametrize("url", ["http://h:6379/0", "amqp1://guest@h//", "h:6379", "", "redis+cluster://h/0"])
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


@pytest.mark.parametrize("field", ["result_ttl_s", "send_timeout_s", "shutdown_grace_s", "fetch_block_s",
                                   "socket_timeout_s", "connect_timeout_s"])
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


# -- URLs: one parser, into the client's Target ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", Target()),
        ("redis://us%40r:p%3Ass@example.com:6380/3",
         Target(host="example.com", port=6380, db=3, username="us@r", password="p:ss")),
        ("redis://:pw@h/0", Target(host="h", password="pw")),
        ("redis://h?db=4", Target(host="h", db=4)),
        ("redis://h/4?db=4", Target(host="h", db=4)),
        ("redis://h:1/", Target(host="h", port=1)),
        ("REDIS://H:1/0", Target(host="h", port=1)),
        ("redis://[::1]:6380/2", Target(host="::1", port=6380, db=2)),
        ("redis://:6379/0", Target()),
        ("unix:///run/redis.sock?db=2", Target(path="/run/redis.sock", db=2)),
        ("unix://:s3cr%25t@/tmp/r%20s.sock", Target(path="/tmp/r s.sock", password="s3cr%t")),
        ("rediss://h", Target(host="h", tls=TLSOptions())),
        ("rediss://u:p@h:6380/1?ssl_cert_reqs=none",
         Target(host="h", port=6380, db=1, username="u", password="p", tls=TLSOptions(verify="none"))),
        ("rediss://h?ssl_cert_reqs=optional", Target(host="h", tls=TLSOptions(verify="optional"))),
    ],
)
def test_good_urls_parse_to_the_expected_target(url: str, expected: Target) -> None:
    config = Config(broker=url)
    assert config.broker_target == expected
    assert config.backend_target == expected


def test_memory_has_no_target_and_the_target_is_parsed_once() -> None:
    assert Config(broker="memory://").broker_target is None
    config = Config(broker="redis://:secret@h:6380/2")
    assert config.broker_target is config.backend_target  # the result backend is the broker's Redis
    assert "secret" not in repr(config.broker_target)
    changed = config.replace(broker="redis://h:6381/0")
    assert changed.broker_target == Target(host="h", port=6381)
    assert Config(broker="redis://h/0") == Config(broker="redis://h/0")


def test_result_backend_may_spell_the_same_redis_differently() -> None:
    config = Config(broker="redis://h:6379/0", result_backend="redis://h/0")
    assert config.backend_target == config.broker_target == Target(host="h")


BAD_URLS = [
    ("redis://localhost/abc", "has database 'abc', which is not a number", "redis://host:6379/0"),
    ("redis://h/-1", "has database -1, which is negative", "from 0"),
    ("redis://h/٣", "which is not a number", "from 0"),
    ("redis://h/0/1", "has path '/0/1'", "only a database number may follow the host"),
    ("redis://h/1?db=2", "gives the database twice", "give it once"),
    ("redis://h:0/0", "has port 0", "1-65535"),
    ("redis://h:65536/0", "has port 65536", "1-65535"),
    ("redis://h:x/0", "has port 'x', which is not a port number", "1-65535"),
    ("redis://h:/0", "has port '', which is not a port number", "leave it out for 6379"),
    ("redis://h:-1/0", "has port '-1'", "1-65535"),
    ("redis://::1:6379/0", "several ':'", "IPv6 address in brackets"),
    ("redis://[::1/0", "cannot be read", "IPv6 address in brackets"),
    ("unix://", "has no socket path", "unix:///path/to/redis.sock"),
    ("unix:///", "has no socket path", "unix:///path/to/redis.sock"),
    ("unix://relative/r.sock", "has host 'relative' after unix://", "absolute path"),
    ("unix://:6379/r.sock", "has host ':6379'", "absolute path"),
    ("redis://h/0?foo=1", "has unknown query parameter 'foo'", "redis:// takes db"),
    ("rediss://h/0?ssl_ca=x", "unknown query parameter 'ssl_ca'", "ssl_ca_certs, ssl_certfile"),
    ("memory://?db=1", "unknown query parameter 'db'", "memory:// takes no query parameters"),
    ("redis://h/0?ssl_ca_certs=ca.pem", "sets ssl_ca_certs, but redis:// connections do not use TLS", "rediss://"),
    ("unix:///r.sock?ssl_cert_reqs=none", "unix:// connections do not use TLS", "rediss://"),
    ("redis://h?db=1&db=1", "'db' is given twice", "each once"),
    ("redis://h?db", "has a query that cannot be read ('db' has no '=')", "?name=value"),
    ("redis://h?db=1&", "has a query that cannot be read ('' has no '=')", "?name=value"),
    ("redis://h?db=", "gives query parameter 'db' no value", "db=<value>"),
    ("redis://user@h/0", "has user 'user' but no password", "redis://user:password@host"),
    ("redis://h/0#x", "has a '#' part", "%23"),
    ("memory://x", "has something after memory://", "just 'memory://'"),
    ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs='maybe'", "required, optional, none"),
    ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "ssl_ca_certs file '/nonexistent/ca.pem', which does not exist",
     "path of a PEM file"),
    ("rediss://h?ssl_ca_certs=missing-ca.pem", "does not exist (looked in /", "path of a PEM file"),
    ("redis+cluster://h/0", "redis+cluster:// (Redis Cluster), which aiocelery does not support yet",
     "redis://, rediss://, unix://, memory://"),
    ("redis+sentinel://h1:x/m", "has sentinel 'h1:x'", "host:port, comma-separated"),
    ("redis+sentinel://h1,h2/", "has path '/'", "give the master name"),
    ("redis+sentinel://h1/m/0/1", "has path '/m/0/1'", "give the master name"),
    ("redis+sentinel://h1/m/x", "has database 'x'", "write a number"),
    ("redis+sentinel://h1/m?db=1", "has unknown query parameter 'db'", "sentinel_password"),
    ("amqp://guest@h//", "has user 'guest' but no password", "write amqp://user:password@host"),
    ("amqp://h/a/b", "has path '/a/b'", "%2F"),
    ("amqp://h:0/", "has port 0", "leave it out for 5672"),
    ("amqp://h/?heartbeat=0", "has heartbeat='0'", "whole seconds"),
    ("amqp://h/?db=1", "has unknown query parameter 'db'", "amqp:// takes heartbeat"),
    ("postgres://h/db", "has scheme 'postgres://', which aiocelery does not know", "redis://, rediss://"),
    ("h:6379", "has no scheme", "redis://, rediss://, unix://, memory://"),
]


@pytest.mark.parametrize("field", ["broker", "result_backend"])
@pytest.mark.parametrize(("url", "problem", "fix"), BAD_URLS, ids=[u for u, _, _ in BAD_URLS])
def test_every_bad_url_part_is_a_config_error_that_says_what_to_do(field: str, url: str, problem: str,
                                                                   fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        if field == "broker":
            Config(broker=url)
        else:
            Config(broker="redis://h/0", result_backend=url)
    message = str(info.value)
    assert message.startswith(f"{field} URL {url!r} "), message
    assert problem in message and fix in message, message


@pytest.mark.parametrize("url", [
    "redis://:secret@h:0/0", "redis://u:secret@h/abc", "redis://:secret@h/0?nope=1", "rediss://:secret@h?ssl_ca_certs=x",
    "redis://:top/secret@h/0", "redis://:top#secret@h/0", "redis://:top?secret@h/0", "redis://:secret@[::1/0",
    "postgres://:secret@h/0", "redis+cluster://:secret@h/0", "redis://:secret@h/0#frag",
    "redis+sentinel://:secret@h:x/m", "redis+sentinel://:secret@h/m?sentinel_password=secret&nope=1",
])
def test_no_error_shows_a_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config(broker=url)
    assert "secret" not in str(info.value)
    assert "***@" in str(info.value)


def test_an_unencoded_slash_in_a_password_is_explained() -> None:
    with pytest.raises(ConfigError, match=r"has an '@' after its host part; percent-encode '/'.*%2F"):
        Config(broker="redis://:pa/ss@h:6379/0")


def test_a_non_string_url() -> None:
    with pytest.raises(ConfigError, match="broker must be a URL string such as 'redis://host:6379/0', got int"):
        Config(broker=6379)  # type: ignore[arg-type]


# -- TLS settings: URL parameters and Config fields ------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_tls_fields_default_to_unset_and_timeouts_to_today() -> None:
    config = Config()
    assert (config.ssl_ca_certs, config.ssl_certfile, config.ssl_keyfile, config.ssl_cert_reqs) == (
        None, None, None, "required")
    assert (config.socket_timeout_s, config.connect_timeout_s) == (10.0, 5.0)


def test_tls_files_from_the_url_or_the_config(certs: TLSFiles) -> None:
    expected = TLSOptions(str(certs.ca), str(certs.client_cert), str(certs.client_key), "required")
    by_url = Config(broker=f"rediss://h:6380/0?ssl_ca_certs={certs.ca}&ssl_certfile={certs.client_cert}"
                           f"&ssl_keyfile={certs.client_key}&ssl_cert_reqs=required")
    by_config = Config(broker="rediss://h:6380/0", ssl_ca_certs=str(certs.ca), ssl_certfile=str(certs.client_cert),
                       ssl_keyfile=str(certs.client_key))
    both_same = Config(broker=f"rediss://h:6380/0?ssl_ca_certs={certs.ca}", ssl_ca_certs=str(certs.ca),
                       ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.client_key))
    for config in (by_url, by_config, both_same):
        assert config.broker_target == Target(host="h", port=6380, tls=expected)


def test_a_relative_tls_path_is_taken_from_the_working_directory(certs: TLSFiles,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(certs.ca.parent)
    target = Config(broker="rediss://h?ssl_ca_certs=ca.pem").broker_target
    assert target is not None and target.tls == TLSOptions(ca_file=str(certs.ca))


def test_tls_paths_in_the_query_are_percent_decoded_and_plus_is_kept(certs: TLSFiles, tmp_path: Path) -> None:
    odd = tmp_path / "my ca+1.pem"
    odd.write_bytes(certs.ca.read_bytes())
    target = Config(broker=f"rediss://h?ssl_ca_certs={tmp_path}/my%20ca+1.pem").broker_target
    assert target is not None and target.tls == TLSOptions(ca_file=str(odd))


def test_a_value_given_in_the_url_and_the_config_must_agree(certs: TLSFiles) -> None:
    with pytest.raises(ConfigError, match=r"sets ssl_ca_certs='.*ca.pem' but Config.ssl_ca_certs is '.*other-ca.pem'; "
                                          "give it in one place"):
        Config(broker=f"rediss://h?ssl_ca_certs={certs.ca}", ssl_ca_certs=str(certs.other_ca))
    with pytest.raises(ConfigError, match=r"sets ssl_cert_reqs='none' but Config\.ssl_cert_reqs is 'optional'"):
        Config(broker="rediss://h?ssl_cert_reqs=none", ssl_cert_reqs="optional")
    # the field's default counts as not given: the URL's value is used
    target = Config(broker="rediss://h?ssl_cert_reqs=none").broker_target
    assert target is not None and target.tls == TLSOptions(verify="none")


@pytest.mark.parametrize("broker", ["redis://h/0", "unix:///r.sock", "memory://"])
@pytest.mark.parametrize(("name", "value"), [("ssl_ca_certs", "ca"), ("ssl_certfile", "client_cert"),
                                             ("ssl_keyfile", "client_key"), ("ssl_cert_reqs", "none")])
def test_tls_fields_on_a_scheme_without_tls(certs: TLSFiles, broker: str, name: str, value: str) -> None:
    given = str(getattr(certs, value)) if value != "none" else value
    with pytest.raises(ConfigError, match=rf"^broker URL '{broker}' does not use TLS, but Config.{name} is set "
                                          rf".*use a rediss:// URL for TLS, or leave {name} unset"):
        Config(broker=broker, **{name: given})  # type: ignore[arg-type]


def test_bad_ssl_cert_reqs_field() -> None:
    with pytest.raises(ConfigError, match="ssl_cert_reqs must be one of required, optional, none, got 'CERT_NONE'"):
        Config(broker="rediss://h", ssl_cert_reqs="CERT_NONE")


def test_a_key_without_a_certificate_and_a_certificate_without_its_key(certs: TLSFiles) -> None:
    with pytest.raises(ConfigError, match="gives ssl_keyfile but no ssl_certfile; give the client certificate"):
        Config(broker="rediss://h", ssl_keyfile=str(certs.client_key))
    with pytest.raises(ConfigError, match="without ssl_keyfile, and that file holds no private key; give the "
                                          "certificate's key file as ssl_keyfile"):
        Config(broker="rediss://h", ssl_certfile=str(certs.client_cert))
    target = Config(broker="rediss://h", ssl_certfile=str(certs.client_combined)).broker_target
    assert target is not None and target.tls == TLSOptions(cert_file=str(certs.client_combined))


def test_tls_files_that_do_not_load(certs: TLSFiles, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"names TLS files that do not load \(.*\); ssl_ca_certs must be a PEM CA"):
        Config(broker="rediss://h", ssl_ca_certs=str(not_pem))
    with pytest.raises(ConfigError, match=r"names TLS files that do not load \(.*(KEY_VALUES_MISMATCH|mismatch)"):
        Config(broker="rediss://h", ssl_certfile=str(certs.client_cert), ssl_keyfile=str(certs.server_key))


def test_a_passphrase_protected_key_is_refused_without_prompting(certs: TLSFiles, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(certs.client_key), "-aes256", "-passout", "pass:hunter2",
                    "-out", str(encrypted)], check=True, capture_output=True)
    with pytest.raises(ConfigError, match=r"names a TLS key that cannot be used; the private key in .*encrypted\.key "
                                          r"is protected by a passphrase.*openssl pkey"):
        Config(broker="rediss://h", ssl_certfile=str(certs.client_cert), ssl_keyfile=str(encrypted))


def test_from_env_reads_the_tls_fields_and_timeouts(certs: TLSFiles) -> None:
    config = Config.from_env({
        "AIOCELERY_BROKER": "rediss://h:6380/1",
        "AIOCELERY_SSL_CA_CERTS": str(certs.ca),
        "AIOCELERY_SSL_CERTFILE": str(certs.client_cert),
        "AIOCELERY_SSL_KEYFILE": str(certs.client_key),
        "AIOCELERY_SSL_CERT_REQS": "optional",
        "AIOCELERY_SOCKET_TIMEOUT_S": "2.5",
        "AIOCELERY_CONNECT_TIMEOUT_S": "1",
        "AIOCELERY_BROKER_TARGET": "ignored: computed, not a setting",
    })
    assert config.broker_target == Target(host="h", port=6380, db=1, tls=TLSOptions(
        str(certs.ca), str(certs.client_cert), str(certs.client_key), "optional"))
    assert (config.socket_timeout_s, config.connect_timeout_s) == (2.5, 1.0)
    assert Config.from_env({"AIOCELERY_BROKER": "rediss://h", "AIOCELERY_SSL_CA_CERTS": ""}).ssl_ca_certs is None
    with pytest.raises(ConfigError, match="socket_timeout_s must be a float, got 'soon'"):
        Config.from_env({"AIOCELERY_SOCKET_TIMEOUT_S": "soon"})



@pytest.mark.parametrize(("url", "host", "port", "vhost", "user"), [
    ("amqp://guest:guest@127.0.0.1:5672/", "127.0.0.1", 5672, "/", "guest"),
    ("amqp://h", "h", 5672, "/", "guest"),
    ("amqp://u:p@h//", "h", 5672, "/", "u"),  # Celery's form of the vhost '/'
    ("amqp://u:p@h/%2F", "h", 5672, "/", "u"),
    ("amqp://u:p%40x@h:5999/prod", "h", 5999, "prod", "u"),
    ("amqps://u:p@h/v", "h", 5671, "v", "u"),
])
def test_amqp_urls_name_rabbitmq_and_need_a_redis_result_backend(url: str, host: str, port: int, vhost: str,
                                                                 user: str) -> None:
    config = Config(broker=url, result_backend="redis://r:6380/2")
    target = config.amqp_target
    assert target is not None and (target.host, target.port, target.vhost, target.username) == (host, port, vhost,
                                                                                                  user)
    assert (target.tls is not None) == url.startswith("amqps")
    assert config.is_amqp and not config.is_memory and config.broker_target is None
    assert config.backend_target == Target(host="r", port=6380, db=2)
    assert "p@x" not in repr(target) and "p@x" not in repr(config)


@pytest.mark.parametrize(("backend", "problem"), [
    (None, "set result_backend to a Redis URL"),
    ("memory://", "give a Redis URL"),
    ("amqp://h/", "give a Redis URL"),
])
def test_a_rabbitmq_broker_needs_a_redis_result_backend(backend: str | None, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Config(broker="amqp://h/", result_backend=backend)


def test_a_redis_broker_refuses_an_amqp_result_backend() -> None:
    with pytest.raises(ConfigError, match="RabbitMQ is a broker only"):
        Config(broker="redis://h/0", result_backend="amqp://h/")


@pytest.mark.parametrize(("changes", "problem"), [
    ({"exchange_type": "fanout"}, "a fanout exchange does not do"),
    ({"exchange_type": "headers"}, "use direct or topic"),
    ({"queue_type": "stream"}, "quorum or classic"),
    ({"exchange": ""}, "must not be empty"),
    ({"prefetch_count": -1}, "prefetch_count must be >= 0"),
])
def test_amqp_block_values_are_checked(changes: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        AMQPConfig(**changes)  # type: ignore[arg-type]



@pytest.mark.parametrize(("url", "sentinels", "service", "db"), [
    ("redis+sentinel://127.0.0.1:26379,h2,[::1]:26380/mymaster/2", (("127.0.0.1", 26379), ("h2", 26379),
                                                                     ("::1", 26380)), "mymaster", 2),
    ("redis+sentinel://u:p@s1:1/m", (("s1", 1),), "m", 0),
    ("redis+sentinel://s1/m%2Fx/", (("s1", 26379),), "m/x", 0),
])
def test_sentinel_urls_name_the_sentinels_the_master_and_the_database(url: str, sentinels: tuple[tuple[str, int], ...],
                                                                     service: str, db: int) -> None:
    target = Config(broker=url).broker_target
    assert target is not None
    assert (target.sentinels, target.service, target.db, target.tls) == (sentinels, service, db, None)
    assert "master " + repr(service) in target.where


def test_sentinel_credentials_are_kept_apart_and_redacted() -> None:
    url = "redis+sentinel://app:pw@s1:26379/m?sentinel_username=sen&sentinel_password=spw"
    config = Config(broker=url)
    target = config.broker_target
    assert target is not None
    assert (target.username, target.password, target.sentinel_username, target.sentinel_password) == (
        "app", "pw", "sen", "spw")
    assert "pw" not in redact_url(url).replace("sentinel_password", "") and "spw" not in repr(config)
