"""Broker and result-backend URLs: the one parser, driven by a table of schemes.

``parse_url`` runs when a ``Config`` is built and turns a URL into the Redis client's ``Target``,
an ``AmqpTarget`` for RabbitMQ, or None for ``memory://``. Any bad part raises ``ConfigError``
naming the field, the URL (its password redacted) and what to do. The forms::

    redis://[[user]:password@]host[:port][/db]
    rediss://[[user]:password@]host[:port][/db][?ssl_ca_certs=ca.pem&ssl_certfile=c.pem&ssl_keyfile=c.key
                                                  &ssl_cert_reqs=required|optional|none]
    unix://[[user]:password@]/path/to/redis.sock[?db=N]
    redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/db][?sentinel_password=...]
    rediss+sentinel://...  (TLS to the sentinels and the master; the TLS parameters as for rediss://)
    amqp://[user:password@]host[:port][/vhost][?heartbeat=S]      (RabbitMQ; a result backend on Redis)
    amqps://[user:password@]host[:port][/vhost][?heartbeat=S&ssl_ca_certs=...&ssl_cert_reqs=...]
    memory://

``redis://`` and ``rediss://`` also take the database as ``?db=N``. The TLS parameters may be
given as Config fields instead (``Config.ssl_ca_certs``...); a value given in both places that
differs is an error. A scheme is one row of ``SCHEMES``: a later broker adds its row (the planned
ones are there already, refused as not supported yet).
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from aiocelery._redis.connection import Target
from aiocelery._redis.tls import VERIFY_MODES, TLSOptions, VerifyMode, ssl_context
from aiocelery.exceptions import ConfigError

TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
"""The TLS query parameters, named like the Config fields that can give them instead."""
_FILE_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_EXAMPLE = "redis://host:6379/0"
_VERIFY_MODES: dict[str, VerifyMode] = {mode: mode for mode in VERIFY_MODES}


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The Config's TLS fields, which a URL's TLS parameters combine with (defaults: not given)."""

    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"

    def given(self) -> dict[str, str]:
        """The fields set to something other than their default."""
        default = _NO_TLS_SETTINGS
        return {name: value for name in TLS_PARAMS
                if (value := getattr(self, name)) is not None and value != getattr(default, name)}


_NO_TLS_SETTINGS = TLSSettings()


@dataclass(frozen=True, slots=True, repr=False)
class AmqpTarget:
    """Where an AMQP broker (RabbitMQ) is, as an ``amqp://`` or ``amqps://`` URL names it."""

    host: str
    port: int
    vhost: str
    username: str
    password: str
    tls: TLSOptions | None = None
    heartbeat_s: int = 60
    """AMQP heartbeat: a silent connection is dropped (and reopened) after about twice this."""

    def __repr__(self) -> str:
        return f"AmqpTarget({self.host!r}, {self.port}, vhost={self.vhost!r}, user={self.username!r}, tls={self.tls})"


@dataclass(frozen=True, slots=True)
class _Url:
    """A URL being parsed, and how to word an error about it."""

    field: str
    text: str
    scheme: Scheme
    parts: SplitResult
    query: dict[str, str]

    def error(self, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.field} URL {redact_url(self.text)!r} {problem}; {fix}")


@dataclass(frozen=True, slots=True)
class Scheme:
    """One URL scheme: how its URLs become a Target, and the query parameters it takes."""

    name: str
    build: Callable[[_Url, TLSSettings], Target | AmqpTarget | None] | None
    """None: planned, not supported yet."""
    params: tuple[str, ...] = ()
    tls: bool = False
    """Whether its connections use TLS (and so take the TLS parameters)."""
    what: str = ""
    """What it connects to, for the not-supported-yet error."""


def parse_url(field: str, url: str, tls: TLSSettings = _NO_TLS_SETTINGS) -> Target | AmqpTarget | None:
    """The Target (AmqpTarget for RabbitMQ) that ``url`` (the Config field ``field``) names; None
    for ``memory://``.

    ``tls`` are the Config's TLS fields, combined with the URL's TLS parameters. TLS files must
    exist and load (the SSL context is built here, once). Raises ``ConfigError``.
    """
    if not isinstance(url, str):
        raise ConfigError(f"{field} must be a URL string such as {_EXAMPLE!r}, got {type(url).__name__}")
    name, sep, _ = url.partition("://")
    scheme = SCHEMES.get(name.lower()) if sep else None
    if scheme is None or scheme.build is None:
        raise ConfigError(f"{field} URL {redact_url(url)!r} {_scheme_problem(name if sep else None, scheme)}; "
                          f"use one of {', '.join(s + '://' for s in SUPPORTED)}")
    rest = url[len(name) + 3:]
    if "@" in rest[_authority_end(rest):]:
        raise ConfigError(f"{field} URL {redact_url(url)!r} has an '@' after its host part; percent-encode '/', '?', "
                          "'#' and '@' in a password or file path (%2F, %3F, %23, %40)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"{field} URL {redact_url(url)!r} cannot be read ({exc}); write it as {_EXAMPLE!r} "
                          "(an IPv6 address in brackets: redis://[::1]:6379/0)") from None
    try:
        query = _query(parts.query)
    except ValueError as exc:
        raise ConfigError(f"{field} URL {redact_url(url)!r} has a query that cannot be read ({exc}); write "
                          "parameters as ?name=value&name=value, each once") from None
    u = _Url(field, url, scheme, parts, query)
    if parts.fragment:
        raise u.error(f"has a '#' part ({parts.fragment!r})", "remove it, or percent-encode '#' in a password as %23")
    _check_params(u)
    if not scheme.tls:
        _refuse_tls_settings(u, tls)
    return scheme.build(u, tls)


def _scheme_problem(name: str | None, scheme: Scheme | None) -> str:
    if name is None:
        return "has no scheme (it must start with scheme://)"
    if scheme is not None:
        return f"uses {scheme.name}:// ({scheme.what}), which aiocelery does not support yet"
    return f"has scheme {name + '://'!r}, which aiocelery does not know"


def _query(text: str) -> dict[str, str]:
    """``name=value&...``, percent-decoded ('+' stays '+': it may be part of a file name)."""
    query: dict[str, str] = {}
    for field in text.split("&") if text else ():
        key, equals, value = field.partition("=")
        if not equals:
            raise ValueError(f"{field!r} has no '='")
        key, value = unquote(key), unquote(value)
        if key in query:
            raise ValueError(f"query parameter {key!r} is given twice")
        query[key] = value
    return query


def _check_params(u: _Url) -> None:
    for key, value in u.query.items():
        if key in TLS_PARAMS and not u.scheme.tls:
            raise u.error(f"sets {key}, but {u.scheme.name}:// connections do not use TLS",
                          "use a rediss:// (or amqps://) URL for TLS, or remove the parameter")
        if key not in u.scheme.params:
            takes = (f"{u.scheme.name}:// takes {', '.join(u.scheme.params)}" if u.scheme.params
                     else f"{u.scheme.name}:// takes no query parameters")
            raise u.error(f"has unknown query parameter {key!r}", f"remove it ({takes})")
        if not value:
            raise u.error(f"gives query parameter {key!r} no value", f"write {key}=<value>, or remove it")


def _refuse_tls_settings(u: _Url, tls: TLSSettings) -> None:
    for name, value in tls.given().items():
        raise u.error(f"does not use TLS, but Config.{name} is set ({value!r})",
                      f"use a rediss:// URL for TLS, or leave {name} unset")


# -- the schemes --------------------------------------------------------------------------------


def _tcp(u: _Url, tls: TLSSettings) -> Target:
    """``redis://`` and ``rediss://``."""
    host, port = _host_port(u)
    username, password = _credentials(u)
    return Target(host=host, port=port, db=_db(u, _path_db(u)), username=username, password=password,
                  tls=_tls_options(u, tls) if u.scheme.tls else None)


def _sentinel(u: _Url, tls: TLSSettings) -> Target:
    """``redis+sentinel://`` and ``rediss+sentinel://``: the sentinels (comma-separated, port
    26379 by default), then the master name and the database in the path. The user and password
    are the master's; the sentinels' own are the query's ``sentinel_username``/``sentinel_password``."""
    form = "redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>[/db]"
    hosts = u.parts.netloc.rpartition("@")[2]
    sentinels = []
    for item in hosts.split(","):
        host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        host = host if colon else item
        if not host or (colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)):
            raise u.error(f"has sentinel {item!r}",
                          f"write each sentinel as host:port, comma-separated, as in {form!r}")
        sentinels.append((host.strip("[]"), int(port) if colon else 26379))
    segments = [unquote(seg) for seg in u.parts.path.split("/")[1:]]
    if not segments or not segments[0] or len(segments) > 2:
        raise u.error(f"has path {u.parts.path!r}", f"give the master name the sentinels monitor, as in {form!r}")
    db = _db_number(u, segments[1]) if len(segments) == 2 and segments[1] else 0
    username, password = _credentials(u)
    return Target(sentinels=tuple(sentinels), service=segments[0], db=db, username=username, password=password,
                  sentinel_username=u.query.get("sentinel_username"),
                  sentinel_password=u.query.get("sentinel_password"),
                  tls=_tls_options(u, tls) if u.scheme.tls else None)


def _unix(u: _Url, tls: TLSSettings) -> Target:
    """``unix:///path/to/redis.sock?db=N``."""
    hostport = u.parts.netloc.rpartition("@")[2]
    form = "unix:///path/to/redis.sock?db=0"
    if hostport:
        raise u.error(f"has host {hostport!r} after unix://",
                      f"write the socket's absolute path right after unix://, as in {form!r}")
    path = unquote(u.parts.path)
    if path in ("", "/"):
        raise u.error("has no socket path", f"write the path of Redis's unix socket, as in {form!r}")
    username, password = _credentials(u)
    return Target(path=path, db=_db(u, None), username=username, password=password)


def _amqp(u: _Url, tls: TLSSettings) -> AmqpTarget:
    """``amqp://`` and ``amqps://``: RabbitMQ. The path is the virtual host ('/' when absent or
    ``//`` as Celery writes it; percent-encode a '/' in a name, as ``/%2F`` for the vhost '/').
    Credentials default to RabbitMQ's guest/guest, which RabbitMQ accepts from localhost only."""
    host, port = _host_port(u, 5671 if u.scheme.tls else 5672)
    path = "/%2F" if u.parts.path == "//" else u.parts.path  # Celery's amqp://host// names the vhost '/'
    if path.count("/") > 1:
        raise u.error(f"has path {path!r}", "only the virtual host may follow the host; write a '/' in its name "
                      "as %2F, as in amqp://host:5672/%2F for the vhost '/'")
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    username, password = _credentials(u)
    if username is None and password is not None:
        raise u.error("has a password but no user", "write amqp://user:password@host (RabbitMQ needs both)")
    heartbeat = u.query.get("heartbeat", "60")
    if not (heartbeat.isascii() and heartbeat.isdigit()) or not 0 < int(heartbeat) < 3600:
        raise u.error(f"has heartbeat={heartbeat!r}", "give the AMQP heartbeat in whole seconds, 1 to 3599")
    return AmqpTarget(host, port, vhost, username or "guest", password or "guest",
                      _tls_options(u, tls) if u.scheme.tls else None, int(heartbeat))


def _memory(u: _Url, tls: TLSSettings) -> None:
    """``memory://``: in-process, no Target."""
    if u.parts.netloc or u.parts.path:
        raise u.error("has something after memory://", "write just 'memory://'")


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("redis", _tcp, ("db",), what="Redis"),
    Scheme("rediss", _tcp, ("db", *TLS_PARAMS), tls=True, what="Redis over TLS"),
    Scheme("unix", _unix, ("db",), what="Redis on a unix socket"),
    Scheme("memory", _memory, what="in-process broker"),
    Scheme("redis+sentinel", _sentinel, ("sentinel_username", "sentinel_password"), what="Redis through Sentinel"),
    Scheme("rediss+sentinel", _sentinel, ("sentinel_username", "sentinel_password", *TLS_PARAMS), tls=True,
           what="Redis through Sentinel, over TLS"),
    Scheme("redis+cluster", None, what="Redis Cluster"),
    Scheme("amqp", _amqp, ("heartbeat",), what="RabbitMQ"),
    Scheme("amqps", _amqp, ("heartbeat", *TLS_PARAMS), tls=True, what="RabbitMQ over TLS"),
)}
"""Every scheme aiocelery knows, by name."""
SUPPORTED = tuple(name for name, scheme in SCHEMES.items() if scheme.build is not None)


# -- the parts ----------------------------------------------------------------------------------


def _host_port(u: _Url, default_port: int = 6379) -> tuple[str, int]:
    hostport = u.parts.netloc.rpartition("@")[2]
    after_host = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    _, colon, text = after_host.partition(":")
    host = u.parts.hostname or "localhost"
    if not colon:
        return host, default_port
    fix = f"give the port it listens on (1-65535), or leave it out for {default_port}"
    if ":" in text:
        raise u.error(f"has host {hostport!r} with several ':'", "write an IPv6 address in brackets, as in "
                      "redis://[::1]:6379/0")
    if not (text.isascii() and text.isdigit()):
        raise u.error(f"has port {text!r}, which is not a port number", fix)
    port = int(text)
    if not 0 < port < 65536:
        raise u.error(f"has port {port}", fix)
    return host, port


def _path_db(u: _Url) -> str | None:
    """The database in the path (``/3``), if any."""
    path = u.parts.path
    if path in ("", "/"):
        return None
    segments = path[1:].split("/")
    if len(segments) > 1:
        raise u.error(f"has path {path!r}", f"only a database number may follow the host, as in {_EXAMPLE!r}")
    return segments[0]


def _db(u: _Url, in_path: str | None) -> int:
    in_query = u.query.get("db")
    if in_path is not None and in_query is not None and _db_number(u, in_path) != _db_number(u, in_query):
        raise u.error(f"gives the database twice (/{in_path} and ?db={in_query})", "give it once")
    text = in_path if in_path is not None else in_query
    return 0 if text is None else _db_number(u, text)


def _db_number(u: _Url, text: str) -> int:
    fix = f"Redis numbers its databases from 0: write a number, as in {_EXAMPLE!r}"
    if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise u.error(f"has database {text}, which is negative", fix)
    if not (text.isascii() and text.isdigit()):
        raise u.error(f"has database {text!r}, which is not a number", fix)
    return int(text)


def _credentials(u: _Url) -> tuple[str | None, str | None]:
    username = unquote(u.parts.username) if u.parts.username else None
    password = unquote(u.parts.password) if u.parts.password else None
    if username is not None and password is None:
        alone = "" if u.scheme.name.startswith("amqp") else " (or :password@ alone for the default user)"
        raise u.error(f"has user {username!r} but no password",
                      f"{u.scheme.what} needs both: write {u.scheme.name}://user:password@host{alone}")
    return username, password


def _tls_options(u: _Url, tls: TLSSettings) -> TLSOptions:
    """The URL's TLS parameters combined with the Config's, checked and loaded once."""
    given = tls.given()
    values: dict[str, str] = {}
    for name in TLS_PARAMS:
        in_url, in_config = u.query.get(name), given.get(name)
        if in_url is not None and in_config is not None and in_url != in_config:
            raise u.error(f"sets {name}={in_url!r} but Config.{name} is {in_config!r}",
                          "give it in one place, or the same value in both")
        value = in_url if in_url is not None else in_config
        if value is not None:
            values[name] = value
    verify = _VERIFY_MODES.get(values.get("ssl_cert_reqs", "required"))
    if verify is None:
        raise u.error(f"has ssl_cert_reqs={values['ssl_cert_reqs']!r}", f"use one of {', '.join(VERIFY_MODES)}")
    files = {name: _existing_file(u, name, values[name]) for name in _FILE_PARAMS if name in values}
    cert, key = files.get("ssl_certfile"), files.get("ssl_keyfile")
    if key is not None and cert is None:
        raise u.error("gives ssl_keyfile but no ssl_certfile",
                      "give the client certificate as ssl_certfile too, or remove ssl_keyfile")
    if cert is not None and key is None and not _holds_private_key(cert):
        raise u.error(f"gives ssl_certfile {values['ssl_certfile']!r} without ssl_keyfile, and that file holds no "
                      "private key", "give the certificate's key file as ssl_keyfile")
    options = TLSOptions(files.get("ssl_ca_certs"), cert, key, verify)
    try:
        ssl_context(options)
    except ValueError as exc:  # a passphrase-protected key; says what to do
        raise u.error("names a TLS key that cannot be used", str(exc)) from None
    except (ssl.SSLError, OSError) as exc:
        raise u.error(f"names TLS files that do not load ({exc})",
                      "ssl_ca_certs must be a PEM CA certificate, ssl_certfile and ssl_keyfile a PEM certificate "
                      "and its unencrypted key") from None
    return options


def _existing_file(u: _Url, name: str, value: str) -> str:
    """The absolute path of the file ``value`` names (relative: to the working directory)."""
    path = os.path.abspath(os.path.expanduser(value))
    if not os.path.isfile(path):
        where = "" if os.path.isabs(os.path.expanduser(value)) else f" (looked in {os.getcwd()})"
        raise u.error(f"needs {name} file {value!r}, which does not exist{where}", "give the path of a PEM file")
    return path


def _holds_private_key(path: str) -> bool:
    with open(path, "rb") as f:
        return b"PRIVATE KEY-----" in f.read()


# -- redaction ----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (the user info's, and a ``sentinel_password``
    query parameter's), for logs, banners and errors. When an '@' follows the host part (a
    password with an unencoded '/', '?' or '#'), everything before the last '@' is hidden."""
    url = re.sub(r"(sentinel_password=)[^&#]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    end = _authority_end(rest)
    if "@" in rest[end:]:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    userinfo, _, host = rest[:end].rpartition("@")
    if ":" not in userinfo:
        return url  # a user name alone
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{host}{rest[end:]}"


def _authority_end(rest: str) -> int:
    """Where the ``[userinfo@]host[:port]`` part of a URL (after ``scheme://``) ends."""
    return min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
