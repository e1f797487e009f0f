"""The Lua prelude every Redis script starts with: its final states are states.READY_STATES, it runs
no Redis command of its own, and every script still compiles with it on a real Redis."""

from __future__ import annotations

import hashlib
import time

import pytest

from aiocelery import states
from aiocelery.brokers.redis.scripts import LUA, PRELUDE, load_script

from .helpers import raw_redis

SCRIPTS = sorted(p.stem for p in LUA.glob("*.lua") if p.stem != "prelude")


async def test_prelude_ready_states_are_the_states_modules(redis_url: str) -> None:
    body = ("local out = {}\n"
            "for state, yes in pairs(READY_STATES) do if yes then out[#out + 1] = state end end\n"
            "return out")
    async with raw_redis(redis_url) as client:
        found = await client.eval(PRELUDE + body, 0)
    assert {s.decode() for s in found} == set(states.READY_STATES)


async def test_prelude_time_ms_is_the_server_clock_in_ms(redis_url: str) -> None:
    async with raw_redis(redis_url) as client:
        seconds, micros = await client.time()
        now_ms = await client.eval(PRELUDE + "return time_ms()", 0)
    before_ms = seconds * 1000 + micros // 1000
    assert before_ms <= now_ms <= before_ms + 5000
    assert abs(now_ms - time.time() * 1000) < 60_000  # ms since the epoch, not seconds or microseconds


async def test_prelude_runs_no_redis_command(redis_url: str) -> None:
    # a local `redis` that fails on use hides the real one from the prelude's top level
    shadow = "local redis = {call = function(...) return error('the prelude ran ' .. tostring(...)) end}\n"
    async with raw_redis(redis_url) as client:
        assert await client.eval(shadow + PRELUDE + "return 1", 0) == 1


def test_prelude_ends_with_a_newline() -> None:
    assert PRELUDE.endswith("\n")  # else a script's first line would join the prelude's last


@pytest.mark.parametrize("name", SCRIPTS)
async def test_script_loads_on_redis(redis_url: str, name: str) -> None:
    script = load_script(name)
    assert script.text.startswith(PRELUDE)
    async with raw_redis(redis_url) as client:
        sha = await client.script_load(script.text)
    assert sha == hashlib.sha1(script.text.encode()).hexdigest()


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_leaves_the_shared_definitions_to_the_prelude(name: str) -> None:
    text = (LUA / f"{name}.lua").read_text("utf-8")
    assert "redis.call('TIME')" not in text
    assert "SUCCESS = true" not in text
